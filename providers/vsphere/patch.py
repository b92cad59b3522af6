"""Host patching through the host's HostPatchManager: scan, stage (where present), install.

ESXi reports the new build only after the reboot that the install asks for, so ``build_after`` is
what the host runs when the install finished (usually still ``build_before``) and
``reboot_required`` says whether a reboot must follow.
"""

from __future__ import annotations

from typing import Any

import structlog

from providers.base import HostPatchResult, HostPatchSpec
from providers.errors import CapabilityMissing, OperationRefused
from providers.vsphere.inventory import read_one
from providers.vsphere.session import Session
from providers.vsphere.tasks import wait_task

log = structlog.get_logger("patchwave.providers.vsphere")


def split_urls(urls: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(metaUrls, bundleUrls): offline bundles are .zip files, everything else is depot metadata."""
    bundles = [u for u in urls if u.lower().split("?")[0].endswith(".zip")]
    return [u for u in urls if u not in bundles], bundles


def _statuses(result: Any) -> list[Any]:
    return list(getattr(result, "status", None) or [])


def patch_host(
    session: Session, host: Any, spec: HostPatchSpec, *, timeout: float, target: str
) -> HostPatchResult:
    clock = session.clock
    deadline = clock.monotonic() + timeout

    def remaining() -> float:
        return max(1.0, deadline - clock.monotonic())

    props = read_one(
        session,
        host,
        ["configManager.patchManager", "summary.config.product", "runtime.inMaintenanceMode"],
        target=target,
    )
    manager = props.get("configManager.patchManager")
    if manager is None:
        raise CapabilityMissing(f"{target} has no HostPatchManager", target=target, code="capability")
    before = str(getattr(props.get("summary.config.product"), "build", "") or "")
    meta, bundles = split_urls(spec.depot_urls)

    scan = wait_task(
        session,
        session.call(
            lambda c: manager.ScanHostPatchV2_Task(metaUrls=meta or None, bundleUrls=bundles or None),
            target=target,
        ),
        timeout=remaining(),
        what="host patch scan",
        target=target,
    )
    pending = [s for s in _statuses(scan) if s.applicable and not s.installed]
    if spec.bulletins:
        wanted = set(spec.bulletins)
        missing = wanted - {s.id for s in _statuses(scan)}
        if missing:
            raise OperationRefused(
                f"bulletins not in the depot: {', '.join(sorted(missing))}",
                target=target,
                code="patch_not_found",
            )
        pending = [s for s in pending if s.id in wanted]
    if not pending:
        return HostPatchResult(changed=False, reboot_required=False, build_before=before, build_after=before,
                               detail="nothing applicable")  # fmt: skip
    if any(s.vmOffRequired for s in pending) and not props.get("runtime.inMaintenanceMode"):
        raise OperationRefused(
            f"{target} must be in maintenance mode to install {', '.join(s.id for s in pending)}",
            target=target,
            code="not_in_maintenance",
        )
    if hasattr(manager, "StageHostPatch_Task"):
        try:
            wait_task(
                session,
                session.call(
                    lambda c: manager.StageHostPatch_Task(metaUrls=meta or None, bundleUrls=bundles or None),
                    target=target,
                ),
                timeout=remaining(),
                what="host patch stage",
                target=target,
            )
        except CapabilityMissing:
            log.info("host_patch_stage_unsupported", host=target)
    install = wait_task(
        session,
        session.call(
            lambda c: manager.InstallHostPatchV2_Task(metaUrls=meta or None, bundleUrls=bundles or None),
            target=target,
        ),
        timeout=remaining(),
        what="host patch install",
        target=target,
    )
    installed = _statuses(install) or pending
    after_props = read_one(session, host, ["summary.config.product"], target=target)
    after = str(getattr(after_props.get("summary.config.product"), "build", "") or "")
    result = HostPatchResult(
        changed=True,
        reboot_required=any(s.restartRequired for s in installed),
        build_before=before,
        build_after=after,
        detail=", ".join(s.id for s in installed),
    )
    log.info(
        "host_patch_installed", host=target, reboot_required=result.reboot_required, patches=result.detail
    )
    return result
