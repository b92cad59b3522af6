"""The latest inventory per site in the fact store (migration 5): what a discovery records, what stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.context import Context
from orchestrator.facts import inventory as inventory_module
from orchestrator.facts.inventory import InventoryMachine, InventoryStore
from orchestrator.facts.store import FactStore
from providers.base import HostInfo, HostRef, HostState, Inventory, PowerState, VmInfo, VmRef
from tests.support.clock import FakeClock
from tests.support.fleet import NOW


def site(name: str, vms: int) -> Inventory:
    host = HostInfo(HostRef(name, "h1", "host-1"), HostState.CONNECTED, "rack-1", version="8.0", build="1")
    guests = tuple(
        VmInfo(VmRef(name, f"id-{i}", f"vm-{i}"), PowerState.RUNNING, host=host.ref) for i in range(vms)
    )
    return Inventory(name, (host,), guests)


def test_a_discovery_replaces_its_sites_machines_only(store_at, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory_module, "KEEP_SNAPSHOTS", 3)
    facts = FactStore(store_at(), clock=FakeClock(NOW))
    store = InventoryStore(facts)
    try:
        store.record(site("a", 2), lambda vm: ("web", "canary"))
        store.record(site("b", 1), lambda vm: ("db", "main"))
        for _ in range(5):
            store.record(site("a", 3), lambda vm: ("web", "main"))
        assert [(s.site, s.hosts, s.vms, s.taken_at) for s in store.current()] == [
            ("a", 1, 3, NOW.isoformat(timespec="microseconds")), ("b", 1, 1, NOW.isoformat(timespec="microseconds"))]  # fmt: skip
        assert len(store.history("a", limit=100)) == 3  # headers kept per site
        vms = store.machines(kind="vm")
        assert [(m.site, m.name, m.group, m.ring) for m in vms] == [
            ("a", "vm-0", "web", "main"), ("a", "vm-1", "web", "main"), ("a", "vm-2", "web", "main"),
            ("b", "vm-0", "db", "main")]  # fmt: skip
        assert store.machines(kind="host")[0] == InventoryMachine("host", "a", "h1", "host-1", "connected",
                                                                  version="8.0", build="1")  # fmt: skip
        rows = facts._db().execute("SELECT COUNT(*) FROM inventory_machines").fetchone()[0]
        assert rows == 4 + 2  # only the current snapshots keep machine rows
    finally:
        facts.close()


def config(tmp_path: Path) -> Path:
    path = tmp_path / "patchwave.toml"
    path.write_text(
        f'[state]\ndir = "{tmp_path / "state"}"\n[providers.lab]\nkind = "libvirt"\nuri = "test:///default"\n'
        '[[groups]]\nname = "tests"\nring = "canary"\nmatch = { names = ["test"] }\n'
        '[rings]\norder = ["canary", "default"]\n'
    )
    return path


def test_context_discover_records_each_site_with_its_configured_groups(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path), environ={})
    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        ctx.discover()
        [vm] = InventoryStore(facts).machines(kind="vm")
        assert (vm.site, vm.name, vm.group, vm.ring, vm.state) == (
            "lab",
            "test",
            "tests",
            "canary",
            "running",
        )
    finally:
        ctx.close()
        facts.close()


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def info(self, event: str, **kw) -> None:
        self.events.append((event, kw))

    warning = info


def test_a_failed_record_is_logged_and_never_fails_discovery(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path), environ={})
    facts = FactStore(settings.state.facts_path)
    facts._db().execute("DROP TABLE inventory_machines")  # any database error on the way
    log = Log()
    ctx = Context(settings, facts, log=log)
    try:
        [found] = ctx.discover()
    finally:
        ctx.close()
        facts.close()
    assert [vm.ref.name for vm in found.vms] == ["test"]
    assert ("inventory_record_failed", "lab") in [(e, kw.get("site")) for e, kw in log.events]
