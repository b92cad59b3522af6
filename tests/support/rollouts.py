"""One rollout on Temporal's time-skipping test server: the testbed's settings, fact store and Context
(one libvirt connection), and the request of a run id. Shared by the time-skipping engine tests, each
of which adds what it asserts with; :func:`made` is the body of their ``rollout_factory`` fixtures
(every rollout made is closed after the test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from temporalio.testing import WorkflowEnvironment

from orchestrator.config.loader import load_settings
from orchestrator.context import Context, open_site
from orchestrator.facts.store import FactStore
from orchestrator.model import RunRequest, vm_step_id
from providers.base import VmRef
from tests.support.guest_disks import DiskBridge
from tests.support.testbed import DriverBed


class Rollout:
    """Workers for one testbed on the test server's client. With ``bridge``, a revert in libvirt brings
    the fake guest's "disk" back, as a real VM's would."""

    def __init__(
        self, env: WorkflowEnvironment, bed: DriverBed, run_id: str, *, bridge: DiskBridge | None = None
    ) -> None:
        self.env, self.bed, self.bridge = env, bed, bridge
        self.settings = load_settings(bed.config)
        self.facts = FactStore(self.settings.state.facts_path)
        self.ctx = Context(self.settings, self.facts, opener=bridge.opener if bridge else open_site)
        self.request = RunRequest(run_id=run_id, config_digest=self.settings.digest, requested_by="test")

    def close(self) -> None:
        self.ctx.close()
        self.facts.close()

    def vm(self, name: str) -> VmRef:
        return VmRef("td", self.bed.uuids[name], name)

    def step_id(self, name: str) -> str:
        return vm_step_id(self.vm(name))

    def snapshots(self, name: str) -> list:
        return self.ctx.provider("td").list_snapshots(self.vm(name))


R = TypeVar("R", bound=Rollout)


def made(make: Callable[[DriverBed], R]) -> Iterator[Callable[[DriverBed], R]]:
    """Yield a maker of rollouts; close every rollout it made afterwards (a fixture's body)."""
    rollouts: list[R] = []

    def maker(bed: DriverBed) -> R:
        rollouts.append(make(bed))
        return rollouts[-1]

    yield maker
    for rollout in rollouts:
        rollout.close()
