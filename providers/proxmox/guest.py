"""A located Proxmox guest (where it runs right now) and the snapshot-tree question a rollback asks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def newer_snapshots(entries: Sequence[Mapping[str, Any]], target: Mapping[str, Any]) -> list[str]:
    """Snapshots taken after ``target``: later ``snaptime`` or descendants in the parent chain."""
    parents = {str(s["name"]): str(s.get("parent") or "") for s in entries}

    def descends(name: str) -> bool:
        seen: set[str] = set()
        while name and name not in seen:
            seen.add(name)
            name = parents.get(name, "")
            if name == target["name"]:
                return True
        return False

    stamp = int(target.get("snaptime") or 0)
    return sorted(
        str(s["name"])
        for s in entries
        if s["name"] != target["name"] and (int(s.get("snaptime") or 0) > stamp or descends(str(s["name"])))
    )


@dataclass(frozen=True, slots=True)
class Guest:
    """Where a guest is right now (from ``/cluster/resources``)."""

    kind: str  # "qemu" | "lxc"
    vmid: int
    node: str
    resource: Mapping[str, Any]

    @property
    def path(self) -> str:
        return f"nodes/{self.node}/{self.kind}/{self.vmid}"

    @property
    def running(self) -> bool:
        return self.resource.get("status") == "running"
