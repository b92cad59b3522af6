"""Can the running guests of a PVE node move to the rest of its cluster? (pure; memory only)

Checked before a node is put into maintenance with ``evacuate`` (read-only, by the engine's host
preflight through ``maintenance_refusal``, and again by ``enter_maintenance`` itself), so a node whose
guests have nowhere to go is refused before anything is touched — the check vSphere's adapter makes
with its cluster's memory (``providers/vsphere/inventory.py``).

The model follows what the evacuation does (:mod:`providers.proxmox.hosts`):

* **memory**: a guest needs its configured memory (``maxmem`` in ``/cluster/resources``), a node
  offers what it reports available (``memory.available`` of ``/nodes/{node}/status``, else ``free``);
* guests that ``migrateall`` moves (every running guest with ``maintenance = "migrate"``, the ones HA
  does not manage with ``"ha"``) all go to **one** node — the least loaded one :func:`least_loaded`
  picks, as the evacuation does — and must fit there together;
* with ``"ha"``, the HA manager moves its own services (``hastate``); each goes, largest first, to the
  node with the most memory left among those it may run on: every candidate, narrowed by the enabled
  *strict* node-affinity rules (``/cluster/ha/rules``, PVE 9; PVE migrates HA groups into them) that
  name it. A non-strict rule only states a preference.

Candidates are the other online nodes outside maintenance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MIB = 1024 * 1024


def least_loaded(candidates: Iterable[str], resources: Iterable[Mapping[str, Any]]) -> str:
    """The node ``migrateall`` sends guests to: the fewest running guests, then the name."""
    load = dict.fromkeys(candidates, 0)
    if not load:
        raise ValueError("no candidate node")
    for r in resources:
        if r.get("node") in load and r.get("status") == "running":
            load[r["node"]] += 1
    return min(load, key=lambda name: (load[name], name))


def node_free(status: Mapping[str, Any]) -> int:
    """Bytes a node offers to incoming guests (``/nodes/{node}/status``)."""
    memory = status.get("memory") or {}
    for key in ("available", "free"):
        if isinstance(memory.get(key), int):
            return int(memory[key])
    return max(0, int(memory.get("total") or 0) - int(memory.get("used") or 0))


def sid_of(guest: Mapping[str, Any]) -> str:
    """The HA resource id of a ``/cluster/resources`` guest: ``vm:100`` / ``ct:101``."""
    return f"{'vm' if guest.get('type') == 'qemu' else 'ct'}:{guest.get('vmid')}"


def strict_nodes(sid: str, rules: Sequence[Mapping[str, Any]]) -> tuple[set[str] | None, str]:
    """The nodes ``sid`` may run on by the enabled strict node-affinity rules naming it (None = any),
    and the names of those rules."""
    allowed: set[str] | None = None
    names = []
    for rule in rules:
        if rule.get("type") != "node-affinity" or rule.get("disable") or not rule.get("strict"):
            continue
        if sid not in str(rule.get("resources") or "").split(","):
            continue
        nodes = {entry.split(":", 1)[0] for entry in str(rule.get("nodes") or "").split(",") if entry}
        allowed = nodes if allowed is None else allowed & nodes
        names.append(str(rule.get("rule", "")))
    return allowed, ", ".join(repr(n) for n in names)


def evacuation_refusal(
    node: str,
    guests: Sequence[Mapping[str, Any]],
    free: Mapping[str, int],
    *,
    batch_target: str,
    ha_moves_own: bool,
    rules: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Why the running ``guests`` of ``node`` cannot move ("" = they can).

    ``free``: candidate node -> bytes available; ``batch_target``: where ``migrateall`` sends its
    guests (ignored when ``free`` is empty); ``ha_moves_own``: HA maintenance moves the HA-managed
    guests itself (``maintenance = "ha"``); ``rules``: ``/cluster/ha/rules`` entries.
    """
    running = [g for g in guests if g.get("status") == "running" and not g.get("template")]
    if not running:
        return ""
    if not free:
        return f"{len(running)} running guest(s) and no other online node outside maintenance to take them"
    left = dict(free)
    ha = [g for g in running if ha_moves_own and g.get("hastate")]
    batch = [g for g in running if not (ha_moves_own and g.get("hastate"))]
    if batch:
        need = sum(_memory(g) for g in batch)
        if need > left[batch_target]:
            return (
                f"its {len(batch)} running guest(s) need {need // MIB} MiB on {batch_target} (where the "
                f"evacuation moves them), which has {left[batch_target] // MIB} MiB available"
            )
        left[batch_target] -= need
    for guest in sorted(ha, key=lambda g: (-_memory(g), str(g.get("vmid")))):
        why = _place(guest, left, rules)
        if why:
            return why
    return ""


def _place(guest: Mapping[str, Any], left: dict[str, int], rules: Sequence[Mapping[str, Any]]) -> str:
    """Book ``guest`` on the allowed node with the most memory left; why it fits nowhere ("" = booked)."""
    sid, need = sid_of(guest), _memory(guest)
    allowed, named = strict_nodes(sid, rules)
    options = [n for n in left if allowed is None or n in allowed]
    label = f"HA resource {sid} ({guest.get('name', '?')})"
    if not options:
        return (
            f"{label} may only run on {', '.join(sorted(allowed or ()))} (strict node-affinity rule "
            f"{named}) and none of them is online outside maintenance"
        )
    best = max(options, key=lambda n: (left[n], n))
    if need > left[best]:
        return (
            f"{label} needs {need // MIB} MiB and none of the nodes it may move to "
            f"({', '.join(sorted(options))}) has that much available (most: {best}, {left[best] // MIB} MiB)"
        )
    left[best] -= need
    return ""


def _memory(guest: Mapping[str, Any]) -> int:
    return int(guest.get("maxmem") or 0)
