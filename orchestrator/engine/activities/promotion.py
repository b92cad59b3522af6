"""Pinned promotion inside ``vm_patch`` (``[policy] promotion = "pinned"``, the default).

The run's rings come from its recorded plan (the ring of each wave, in order). With more than one:

* a VM of the **first** ring patches as its policy says; once its patch is verified, what it
  installed (name -> version) and its OS release are recorded (``pin_tested``) before the PATCH result;
* a VM of a **later** ring gets the run's pin set (frozen on first use from the first ring's
  patched-and-healthy VMs: :meth:`orchestrator.facts.pins.PinStore.freeze`) and installs exactly the
  pins of its OS release (:func:`orchestrator.promotion.pins.promote`) through the same detached job;
  every pending version it does not get is recorded as held back (``pin_held``) and logged.

Nothing happens for ``promotion = "latest"``, a single-ring run, or a VM whose ``updates = "pinned"``
(its pins are explicit already).
"""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.context import Context
from orchestrator.engine.payloads import VmTask
from orchestrator.facts.pins import PinStore
from orchestrator.guests.packages.base import UpdateSelection
from orchestrator.guests.patcher import Assessment, GuestPatcher
from orchestrator.model import UpdateMode
from orchestrator.promotion.pins import os_key, promote


class Promotion:
    def __init__(self, ctx: Context, task: VmTask, patcher: GuestPatcher) -> None:
        self.ctx, self.task, self.patcher = ctx, task, patcher
        self.store = PinStore(ctx.facts)
        enabled = (
            ctx.settings.policy.promotion == "pinned"
            and task.step.policy.update_mode is not UpdateMode.PINNED
        )
        rings = self.store.rings(task.run_id) if enabled else ()
        self.first = rings[0] if len(rings) > 1 else ""

    @property
    def tests(self) -> bool:
        """This VM's versions define the pin set (a VM of the first ring)."""
        return bool(self.first) and self.task.step.ring == self.first

    @property
    def pinned(self) -> bool:
        """This VM installs only the pin set (a VM of a later ring)."""
        return bool(self.first) and self.task.step.ring != self.first

    def record_tested(self, installed: Mapping[str, str]) -> None:
        if self.tests:
            key = os_key(self.patcher.os_info())
            self.store.record_tested(
                self.task.run_id, self.task.step.step_id, ring=self.first, os_key=key, packages=installed
            )

    def select(self, assessment: Assessment, selection: UpdateSelection) -> UpdateSelection | None:
        """The exact pins this later-ring VM installs (None: nothing), held-back versions recorded."""
        run_id, step_id, vm = self.task.run_id, self.task.step.step_id, self.task.step.vm
        pin_set = self.store.freeze(run_id, self.first)
        key = os_key(assessment.os)
        updates = [u for u in assessment.updates if selection.mode != "security" or u.security]
        chosen = promote(
            updates, pin_set.for_os(key), key=key, ring=self.first, manager=self.patcher.package_manager.name
        )
        self.store.record_held(run_id, step_id, vm=vm.name, os_key=key, held=chosen.held)
        for held in chosen.held:
            self.ctx.log.info(
                "package_held_back", run=run_id, vm=str(vm), package=held.name, candidate=held.candidate,
                pinned=held.pinned, reason=held.reason, pin_set=pin_set.pin_set_id,
            )  # fmt: skip
        return UpdateSelection(mode="pinned", pins=chosen.pins) if chosen.pins else None
