"""PVE node maintenance (HA node-maintenance over SSH, or migrate-all) and node reboots.

* ``maintenance = "ha"``: ``ha-manager crm-command node-maintenance enable <node>`` over SSH (there
  is no REST endpoint). The state is read back structurally from
  ``GET /cluster/ha/status/manager_status`` (``node_status.<node> == "maintenance"``). The LRM shows
  maintenance *before* the HA services have left, so with ``evacuate`` we then wait until no running
  guest remains; running guests that HA does not manage are moved with a ``migrateall`` limited to
  them (HA never moves those).
* ``maintenance = "migrate"``: ``POST /nodes/{node}/migrateall`` to the least loaded other online
  node. The task may end ``WARNINGS: n`` for skipped guests, so every guest's node is re-read from
  ``/cluster/resources`` afterwards. PVE has no maintenance flag for this mode: the provider
  remembers the evacuated node in-process (the orchestrator's fact store is the durable record).
* ``reboot``: ``POST /nodes/{node}/status command=reboot`` returns ``null`` (no task). Done when
  the node is online again with an uptime that started after our request (and it was seen offline
  or its uptime went down): a node that "comes back" without rebooting is not accepted.

"Left the node" means: no *running* guest and no HA-managed guest is on it. Stopped guests that
are not HA-managed may stay (``migrateall`` moves them too; HA maintenance does not).

Before maintenance (``refusal``, read-only; ``enter`` checks the capacity again before it asks for
maintenance): the node is online, the node shell answers a no-op (``"ha"``: the HA command needs it;
a rejected host key or login is a refusal), and with ``evacuate`` the running guests fit on the
other nodes (:mod:`providers.proxmox.capacity`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from providers.errors import (
    AuthenticationFailed,
    CapabilityMissing,
    HostKeyRejected,
    NotFound,
    OperationRefused,
    PermanentProviderError,
    ProviderError,
    ProviderTimeout,
    TransientProviderError,
)
from providers.proxmox.capacity import evacuation_refusal, least_loaded, node_free
from providers.proxmox.node_shell import NodeShell
from providers.proxmox.session import PveSession, flag
from providers.proxmox.settings import ProxmoxSettings
from providers.proxmox.tasks import TaskWaiter

GUEST_TYPES = ("qemu", "lxc")


def blocks_node(resource: dict[str, Any]) -> bool:
    """A guest that must leave a node before it may be rebooted."""
    return resource.get("status") == "running" or bool(resource.get("hastate"))


class NodeOps:
    def __init__(self, session: PveSession, tasks: TaskWaiter, settings: ProxmoxSettings) -> None:
        self.session = session
        self.tasks = tasks
        self.settings = settings
        self._marked: set[str] = set()
        self._lock = threading.Lock()

    # -- reading state ----------------------------------------------------------------------

    def ha_maintenance_nodes(self) -> set[str]:
        try:
            status = self.session.get("cluster/ha/status/manager_status")
        except PermanentProviderError:
            return set()  # HA stack not configured on this cluster
        node_status = ((status or {}).get("manager_status") or {}).get("node_status") or {}
        return {node for node, state in node_status.items() if state == "maintenance"}

    def maintenance_nodes(self) -> set[str]:
        if self.settings.maintenance == "ha":
            return self.ha_maintenance_nodes()
        with self._lock:
            return set(self._marked)

    def guests_on(self, node: str) -> list[dict[str, Any]]:
        resources = self.session.get("cluster/resources", type="vm")
        return [
            r
            for r in resources
            if r.get("type") in GUEST_TYPES and r.get("node") == node and not r.get("template")
        ]

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {str(n["node"]): n for n in self.session.get("nodes")}

    # -- maintenance --------------------------------------------------------------------------

    def enter(self, node: str, *, evacuate: bool, timeout: float) -> None:
        mode = self.settings.maintenance
        if mode == "none":
            raise CapabilityMissing(
                "maintenance = 'none' in the provider settings", target=node, code="capability"
            )
        self._require_node(node)
        deadline = self.session.clock.monotonic() + timeout
        if evacuate and node not in self.maintenance_nodes():
            if not self._candidates(node):  # nowhere to go at all: say so before any capacity sum
                raise OperationRefused(
                    f"no other online node outside maintenance to evacuate {node} to",
                    target=node,
                    code="no_target",
                )
            refusal = self.capacity_refusal(node)
            if refusal:
                raise OperationRefused(
                    f"cannot evacuate {node}: {refusal}", target=node, code="evacuation_impossible"
                )
        if mode == "ha":
            if node not in self.ha_maintenance_nodes():
                self._ha_command("enable", node, timeout)
            self._poll(
                lambda: node in self.ha_maintenance_nodes(), deadline, f"HA maintenance mode on {node}", node
            )
        else:
            with self._lock:
                self._marked.add(node)
        if evacuate:
            self._evacuate(node, deadline)

    def exit(self, node: str, *, timeout: float) -> None:
        mode = self.settings.maintenance
        if mode == "none":
            raise CapabilityMissing(
                "maintenance = 'none' in the provider settings", target=node, code="capability"
            )
        deadline = self.session.clock.monotonic() + timeout
        if mode == "ha" and node in self.ha_maintenance_nodes():
            self._ha_command("disable", node, timeout)
            self._poll(
                lambda: node not in self.ha_maintenance_nodes(),
                deadline,
                f"{node} leaving HA maintenance",
                node,
            )
        with self._lock:
            self._marked.discard(node)

    def _evacuate(self, node: str, deadline: float) -> None:
        movable = [r for r in self.guests_on(node) if blocks_node(r)]
        if self.settings.maintenance == "ha":
            movable = [r for r in movable if not r.get("hastate")]  # HA moves its own services
        if movable:
            target = self._pick_target(node)
            upid = self.session.post(
                f"nodes/{node}/migrateall",
                target=target,
                vms=",".join(str(r["vmid"]) for r in movable),
                **{"max-workers": self.settings.migrate_max_workers},
                **({"with-local-disks": flag(True)} if self.settings.migrate_local_disks else {}),
            )
            self.tasks.wait(upid, timeout=max(1.0, deadline - self.session.clock.monotonic()), target=node)
        remaining: list[dict[str, Any]] = []

        def drained() -> bool:
            remaining[:] = [r for r in self.guests_on(node) if blocks_node(r)]
            return not remaining

        self._poll(drained, deadline, f"guests leaving {node}", node, detail=lambda: _names(remaining))

    def _candidates(self, node: str) -> list[str]:
        """The other online nodes outside maintenance (where evacuated guests may go)."""
        busy = self.maintenance_nodes()
        return [
            name
            for name, entry in self.nodes().items()
            if name != node and entry.get("status") == "online" and name not in busy
        ]

    def _pick_target(self, node: str) -> str:
        candidates = self._candidates(node)
        if not candidates:
            raise OperationRefused(
                f"no other online node outside maintenance to evacuate {node} to",
                target=node,
                code="no_target",
            )
        return least_loaded(candidates, self.session.get("cluster/resources", type="vm"))

    # -- before maintenance -------------------------------------------------------------------

    def refusal(self, node: str, *, evacuate: bool) -> str:
        """Why maintenance on ``node`` would be refused now ("" = nothing stands in the way); read-only."""
        if self.settings.maintenance == "none":
            raise CapabilityMissing(
                "maintenance = 'none' in the provider settings", target=node, code="capability"
            )
        status = self._require_node(node).get("status")
        if status != "online":
            return f"node {node} is {status}, not online"
        if self.settings.maintenance == "ha" and (why := self._shell_refusal()):
            return why
        if not evacuate or node in self.maintenance_nodes():
            return ""
        why = self.capacity_refusal(node)
        return f"cannot evacuate {node}: {why}" if why else ""

    def capacity_refusal(self, node: str) -> str:
        """Why the running guests of ``node`` would not fit on the other nodes ("" = they fit)."""
        guests = self.guests_on(node)
        candidates = self._candidates(node)
        free = {n: node_free(self.session.get(f"nodes/{n}/status")) for n in candidates}
        resources = self.session.get("cluster/resources", type="vm")
        ha = self.settings.maintenance == "ha"
        return evacuation_refusal(
            node,
            guests,
            free,
            batch_target=least_loaded(candidates, resources) if candidates else "",
            ha_moves_own=ha,
            rules=self._affinity_rules() if ha else (),
        )

    def _affinity_rules(self) -> list[dict[str, Any]]:
        """The HA node-affinity rules (PVE 9); none where the cluster has no rules endpoint (PVE 8)."""
        try:
            return list(self.session.get("cluster/ha/rules", type="node-affinity") or [])
        except PermanentProviderError:
            return []

    def _shell_refusal(self) -> str:
        """The node shell (``ha-manager`` runs there) must answer a no-op; a rejected host key or login
        is a refusal, an unreachable shell raises (transient)."""
        shell = NodeShell(self.settings.ssh, self.settings.ssh_host, connect_timeout=self.settings.timeout)
        try:
            result = shell.run("true", timeout=max(30.0, self.settings.timeout))
        except (HostKeyRejected, AuthenticationFailed) as exc:
            return f"the node shell {shell.target} (needed for HA maintenance) refuses us: {exc}"
        if result.exit_code != 0:
            return f"the node shell {shell.target} (needed for HA maintenance) ran `true` with exit {result.exit_code}"
        return ""

    def _ha_command(self, action: str, node: str, timeout: float) -> None:
        shell = NodeShell(self.settings.ssh, self.settings.ssh_host, connect_timeout=self.settings.timeout)
        result = shell.run(f"ha-manager crm-command node-maintenance {action} {node}", timeout=timeout)
        if result.exit_code != 0:
            raise PermanentProviderError(
                f"ha-manager node-maintenance {action} {node} failed (exit {result.exit_code}): "
                f"{(result.stderr or result.stdout).strip()}",
                target=shell.target,
                code="ha_command_failed",
            )

    # -- reboot -------------------------------------------------------------------------------

    def reboot(self, node: str, *, timeout: float) -> None:
        before = self._require_node(node)
        if before.get("status") != "online":
            raise OperationRefused(
                f"node {node} is {before.get('status')}, not online", target=node, code="offline"
            )
        blocking = [r for r in self.guests_on(node) if r.get("status") == "running"]
        if blocking:
            raise OperationRefused(
                f"node {node} still runs guests ({_names(blocking)}); enter maintenance with evacuate first",
                target=node,
                code="guests_running",
            )
        clock = self.session.clock
        uptime_before = int(before.get("uptime") or 0)
        requested = clock.monotonic()
        self.session.post(f"nodes/{node}/status", command="reboot")
        seen_offline = False

        def back() -> bool:
            nonlocal seen_offline
            entry = self._node_entry(node)
            if entry is None or entry.get("status") != "online":
                seen_offline = True
                return False
            uptime = int(entry.get("uptime") or 0)
            booted_since_request = uptime <= clock.monotonic() - requested + 1
            return booted_since_request and (seen_offline or uptime < uptime_before) and self._answers(node)

        self._poll(
            back,
            requested + timeout,
            f"{node} to reboot and come back online",
            node,
            detail=lambda: "it was seen offline" if seen_offline else "it never went offline",
        )

    def _node_entry(self, node: str) -> dict[str, Any] | None:
        try:
            return self.nodes().get(node)
        except TransientProviderError:
            return None

    def _answers(self, node: str) -> bool:
        try:
            self.session.get(f"nodes/{node}/status", retry=False)
        except ProviderError:
            return False
        return True

    def _require_node(self, node: str) -> dict[str, Any]:
        entry = self.nodes().get(node)
        if entry is None:
            raise NotFound(f"no such cluster node {node!r}", target=node, code="not_found")
        return entry

    def _poll(
        self,
        probe: Callable[[], bool],
        deadline: float,
        what: str,
        target: str,
        *,
        detail: Callable[[], str] = lambda: "",
    ) -> None:
        clock = self.session.clock
        while not probe():
            if clock.monotonic() >= deadline:
                extra = detail()
                raise ProviderTimeout(
                    f"timed out waiting for {what}" + (f": {extra}" if extra else ""), target=target
                )
            clock.sleep(max(0.0, min(self.settings.poll_interval, deadline - clock.monotonic())))


def _names(resources: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r.get('name', '?')} ({r.get('id')})" for r in resources)
