"""The hypervisor hosts in the compliance report: state and build (latest inventory), last patch (latest
host outcome), pending updates when a read-only assessment listed them, and maintenance mode.

Hosts shown: those of every site's latest inventory; at a site never inventoried, those with an
outcome on record; and, wherever they are, hosts patchwave put in maintenance and never took out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.facts import history
from orchestrator.facts.inventory import InventoryMachine
from orchestrator.facts.store import FactStore


@dataclass(frozen=True)
class HostCompliance:
    site: str
    name: str
    host_id: str
    state: str = (
        ""  # connected | maintenance | disconnected | unknown, as last discovered; "" = not inventoried
    )
    version: str = ""
    build: str = ""
    last_patched: str = ""  # ISO UTC, the latest succeeded host outcome; "" = never
    last_result: str = ""
    last_run: str = ""
    last_error: str = ""
    detail: str = ""  # the latest outcome's note (e.g. "report only: ...")
    assessed_at: str = ""  # the latest read-only assessment; "" = pending updates unknown
    pending: int | None = None
    security: int | None = None
    reboot_required: bool | None = None
    in_maintenance: bool = False  # as last discovered, or left there by a patchwave run
    maintenance_run: str = ""  # the run that entered maintenance and never exited it

    @property
    def status(self) -> str:
        """``attention`` (maintenance, last result failed, security updates or a reboot pending), ``ok``,
        or ``unknown`` (never patched nor assessed by patchwave)."""
        if self.in_maintenance or self.last_result == "failed" or self.security or self.reboot_required:
            return "attention"
        return "ok" if self.last_result or self.assessed_at else "unknown"


def build_hosts(
    facts: FactStore, inventory: Sequence[InventoryMachine], inventoried: set[str], run_ids: Sequence[str]
) -> tuple[HostCompliance, ...]:
    """``inventory``: the latest inventory's hosts; ``inventoried``: its sites; ``run_ids``: recent runs
    (whose journals hold the read-only assessments)."""
    found: dict[tuple[str, str], HostCompliance] = {
        (h.site, h.id): HostCompliance(h.site, h.name, h.id, h.state, h.version, h.build,
                                       in_maintenance=h.state == "maintenance")
        for h in inventory
    }  # fmt: skip
    outcomes = history.latest_host_outcomes(facts)
    patched = history.latest_host_outcomes(facts, patched=True)
    for (site, host_id), (_, _, outcome) in outcomes.items():
        if site not in inventoried:
            found.setdefault((site, host_id), HostCompliance(site, outcome.host.name, host_id))
    for record in facts.hosts_in_maintenance():
        key = (record.host.site, record.host.id)
        host = found.get(key, HostCompliance(record.host.site, record.host.name, record.host.id))
        found[key] = replace(host, in_maintenance=True, maintenance_run=record.run_id)
    assessed = history.host_assessments(facts, run_ids)
    hosts = []
    for key, host in found.items():
        values: dict[str, Any] = {}
        if key in outcomes:
            run_id, _, outcome = outcomes[key]
            values.update(last_result=str(outcome.status), last_error=outcome.error, detail=outcome.detail,
                          last_run=run_id)  # fmt: skip
        if key in patched:
            values["last_patched"] = patched[key][2].finished_at or patched[key][1]
        if (note := assessed.get(f"host:{key[0]}:{key[1]}")) is not None:
            values.update(_assessment(*note))
        hosts.append(replace(host, **values))
    return tuple(sorted(hosts, key=lambda h: (h.site, h.name, h.host_id)))


def _assessment(recorded_at: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "assessed_at": recorded_at,
        "pending": len(detail.get("pending", ())),
        "security": len(detail.get("security", ())),
        "reboot_required": bool(detail.get("reboot_required", False)),
    }
