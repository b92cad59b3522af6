"""Can a PVE node's running guests move? The pure capacity model of providers/proxmox/capacity.py."""

from __future__ import annotations

from typing import Any

import pytest

from providers.proxmox.capacity import evacuation_refusal, least_loaded, node_free, strict_nodes

MIB = 1024 * 1024


def guest(
    vmid: int, mib: int, *, node: str = "pve1", ha: bool = False, status: str = "running"
) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "qemu", "vmid": vmid, "name": f"vm-{vmid}", "node": node,
                             "status": status, "maxmem": mib * MIB}  # fmt: skip
    return {**entry, "hastate": "started"} if ha else entry


def refusal(guests: list[dict[str, Any]], free_mib: dict[str, int], **kw: Any) -> str:
    free = {n: m * MIB for n, m in free_mib.items()}
    kw.setdefault("batch_target", min(free) if free else "")
    kw.setdefault("ha_moves_own", True)
    return evacuation_refusal("pve1", guests, free, **kw)


def test_nothing_running_never_needs_room() -> None:
    assert refusal([guest(100, 4096, status="stopped")], {}) == ""


def test_running_guests_and_no_other_node() -> None:
    assert "no other online node" in refusal([guest(100, 1024)], {})


def test_migrateall_guests_must_fit_on_its_one_target_together() -> None:
    guests = [guest(100, 2048), guest(101, 2048)]
    assert refusal(guests, {"pve2": 4096, "pve3": 64 * 1024}, batch_target="pve3") == ""
    why = refusal(guests, {"pve2": 3072, "pve3": 64 * 1024}, batch_target="pve2")
    assert "need 4096 MiB on pve2" in why and "3072 MiB available" in why


def test_ha_guests_go_largest_first_to_the_node_with_most_room() -> None:
    guests = [guest(100, 3072, ha=True), guest(101, 2048, ha=True), guest(102, 1024, ha=True)]
    assert refusal(guests, {"pve2": 3072, "pve3": 3072}) == ""  # 3072 | 2048 + 1024
    why = refusal([*guests, guest(103, 1024, ha=True)], {"pve2": 3072, "pve3": 3072})
    assert "HA resource vm:103" in why and "needs 1024 MiB" in why


def test_migrate_mode_sends_ha_guests_with_the_rest() -> None:
    guests = [guest(100, 2048), guest(101, 2048, ha=True)]
    assert refusal(guests, {"pve2": 3072, "pve3": 3072}, batch_target="pve2", ha_moves_own=True) == ""
    why = refusal(guests, {"pve2": 3072, "pve3": 3072}, batch_target="pve2", ha_moves_own=False)
    assert "its 2 running guest(s) need 4096 MiB on pve2" in why


RULES = [
    {
        "rule": "db",
        "type": "node-affinity",
        "resources": "vm:101,ct:300",
        "nodes": "pve2:2,pve1",
        "strict": 1,
    },
    {"rule": "soft", "type": "node-affinity", "resources": "vm:102", "nodes": "pve2", "strict": 0},
    {
        "rule": "off",
        "type": "node-affinity",
        "resources": "vm:103",
        "nodes": "pve1",
        "strict": 1,
        "disable": 1,
    },
    {"rule": "apart", "type": "resource-affinity", "resources": "vm:101,vm:102", "affinity": "negative"},
]


@pytest.mark.parametrize(
    ("sid", "nodes"),
    [("vm:101", {"pve2", "pve1"}), ("ct:300", {"pve2", "pve1"}), ("vm:102", None), ("vm:103", None)],
)
def test_only_enabled_strict_node_affinity_rules_restrict(sid: str, nodes: set[str] | None) -> None:
    assert strict_nodes(sid, RULES)[0] == nodes


def test_a_strict_rule_narrows_where_an_ha_guest_may_go() -> None:
    guests = [guest(101, 1024, ha=True)]
    assert refusal(guests, {"pve2": 2048, "pve3": 64 * 1024}, rules=RULES) == ""
    why = refusal(guests, {"pve2": 512, "pve3": 64 * 1024}, rules=RULES)
    assert "none of the nodes it may move to (pve2)" in why
    why = refusal(guests, {"pve3": 64 * 1024}, rules=RULES)
    assert "may only run on pve1, pve2 (strict node-affinity rule 'db')" in why


def test_least_loaded_counts_running_guests_then_names() -> None:
    resources = [
        guest(1, 1, node="pve2"),
        guest(2, 1, node="pve3", status="stopped"),
        guest(3, 1, node="pve3"),
    ]
    assert least_loaded(["pve3", "pve2"], resources) == "pve2"
    assert least_loaded(["pve3", "pve4"], resources) == "pve4"


def test_node_free_prefers_available_memory() -> None:
    assert node_free({"memory": {"total": 10, "used": 4, "free": 1, "available": 5}}) == 5
    assert node_free({"memory": {"total": 10, "used": 4, "free": 6}}) == 6
    assert node_free({"memory": {"total": 10, "used": 4}}) == 6
