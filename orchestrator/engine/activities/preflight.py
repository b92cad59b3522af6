"""``host_preflight``: every precondition of a host's patch, checked read-only before the host is touched.

HostPhase calls it before ``host_enter_maintenance``; a failed precondition skips the host with the
reason (nothing was touched) instead of discovering it with the host in maintenance and its guests
moved away. Checked, in this order:

1. the platform answers for the host (reachability and credentials of the provider API) and the host
   is connected (or already in maintenance);
2. ``[hosts] patch = "ssh"``: the host's SSH channel opens and runs a no-op (reachability, host key,
   credentials) — the channel ``host_patch`` will use;
3. the platform would let the host enter maintenance (``maintenance_refusal``): the memory of the
   guests that must move fits on the rest of the cluster, a channel the platform's maintenance needs
   (PVE's node shell for ``ha-manager``) accepts us.

A check that *refuses* (a permanent error: host key rejected, login refused, no capacity) is a
finding, returned as ``HostPreflight(ok=False, reason)``; one that could not be made (unreachable,
timeout) raises and is retried, and HostPhase skips the host when it still cannot run. A host this run
already put into maintenance (a resumed run) passes: it is touched already and must be finished.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from orchestrator.context import Context
from orchestrator.engine.activities.heartbeat import heartbeating
from orchestrator.engine.activities.translation import translated
from orchestrator.engine.names import ActivityName
from orchestrator.engine.payloads import HostPreflight, HostTask
from providers.base import Capability, HostState
from providers.errors import ProviderError

NOOP_TIMEOUT_S = 30.0


class PreflightActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def all(self) -> list[Callable[..., Any]]:
        return [self.host_preflight]

    @activity.defn(name=ActivityName.HOST_PREFLIGHT)
    @translated
    def host_preflight(self, task: HostTask) -> HostPreflight:
        host, run_id = task.step.host, task.run_id
        if any(r.run_id == run_id and r.host.id == host.id for r in self.ctx.facts.hosts_in_maintenance()):
            return HostPreflight(ok=True, reason="in maintenance for this run already (resumed)")
        try:
            with heartbeating(f"checking the preconditions of {host}"):
                reason = self._refusal(task)
        except ProviderError as exc:
            if exc.retryable:
                raise  # not checked: try again (HostPhase skips the host when it never could)
            reason = str(exc)  # checked and refused: host key, credentials, not found ...
        if reason:
            self.ctx.log.warning("host_preflight_failed", run=run_id, host=str(host), reason=reason)
            return HostPreflight(ok=False, reason=reason)
        self.ctx.log.info("host_preflight_passed", run=run_id, host=str(host))
        return HostPreflight(ok=True)

    def _refusal(self, task: HostTask) -> str:
        """The first precondition that fails ("" = none)."""
        host = task.step.host
        info = self.ctx.provider(host.site).get_host(host)
        if info.state not in (HostState.CONNECTED, HostState.MAINTENANCE):
            return f"{host} is {info.state.value}"
        if task.step.patch == "ssh" and (why := self._ssh_refusal(task, info.address)):
            return why
        provider = self.ctx.require(host.site, Capability.HOST_MAINTENANCE)
        return provider.maintenance_refusal(host, evacuate=task.step.evacuate)

    def _ssh_refusal(self, task: HostTask, address: str) -> str:
        """Open the SSH channel ``host_patch`` will use and run a no-op (host key, login, shell)."""
        channel = self.ctx.host_channel(task.step.host, address)
        try:
            result = channel.run("true", timeout=NOOP_TIMEOUT_S)
        finally:
            channel.close()
        if not result.ok:
            return f"a no-op over SSH to {task.step.host} exited {result.exit_code}: {result.stderr.strip()}"
        return ""
