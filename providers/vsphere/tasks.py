"""Waiting on vSphere tasks and properties through the PropertyCollector, with deadlines.

Each wait uses a private PropertyCollector (so concurrent waits on the shared session never steal
each other's updates) and ``WaitForUpdatesEx`` bounded by the remaining time. Tasks are watched on
``info.state``, ``info.error`` and ``info.result`` only: never pyVim's ``WaitForTask``, which
deserialises the whole ``info`` (vcsim's snapshot tasks break that) and has no deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog
from pyVmomi import vim, vmodl

from providers.errors import NotFound, ProviderTimeout
from providers.vsphere.session import Session, translate

log = structlog.get_logger("patchwave.providers.vsphere")
TASK_PATHS = ("info.state", "info.error", "info.result")
MAX_WAIT_S = 20  # one WaitForUpdatesEx call; well below the socket timeout


def _filter_spec(obj: Any, paths: Sequence[str]) -> Any:
    PC = vmodl.query.PropertyCollector
    return PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=obj, skip=False)],
        propSet=[PC.PropertySpec(type=type(obj), all=False, pathSet=list(paths))],
    )


def watch(
    session: Session,
    obj: Any,
    paths: Sequence[str],
    done: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    what: str,
    target: str = "",
) -> dict[str, Any]:
    """Watch ``paths`` of ``obj`` until ``done(props)``; raise ProviderTimeout at the deadline."""
    clock = session.clock
    deadline = clock.monotonic() + timeout
    max_wait = max(1, min(MAX_WAIT_S, int(session.settings.connect_timeout) - 5))
    props: dict[str, Any] = {}
    collector: Any = None
    generation = -1
    version = ""
    spec = _filter_spec(obj, paths)
    try:
        while True:
            if collector is None or generation != session.generation:
                # (re)create after a re-login: collectors belong to the session that made them
                generation = session.generation
                collector = session.call(
                    lambda c: c.propertyCollector.CreatePropertyCollector(), target=target
                )
                session.call(
                    lambda c, pc=collector: pc.CreateFilter(spec, partialUpdates=False),  # type: ignore[misc]  # lambda binding a loop variable: python/mypy#15459
                    target=target,
                )
                version = ""
            remaining = deadline - clock.monotonic()
            options = vmodl.query.PropertyCollector.WaitOptions(
                maxWaitSeconds=max(0, min(max_wait, int(remaining)))
            )
            try:
                update = session.call(
                    lambda c, pc=collector, v=version, o=options: pc.WaitForUpdatesEx(v, o),  # type: ignore[misc]  # lambda binding a loop variable: python/mypy#15459
                    target=target,
                )
            except NotFound:
                if generation == session.generation:
                    raise
                collector = None  # the session was renewed: its collector went with the old one
                continue
            if update is not None:
                version = update.version
                for filter_update in update.filterSet or ():
                    for object_update in filter_update.objectSet or ():
                        if object_update.kind == "leave":
                            raise NotFound(f"{what}: the object disappeared", target=target, code="not_found")
                        for change in object_update.changeSet or ():
                            props[change.name] = (
                                None if change.op in ("remove", "indirectRemove") else change.val
                            )
            if done(props):
                return props
            if clock.monotonic() >= deadline:
                raise ProviderTimeout(f"timed out after {timeout:.0f}s waiting for {what}", target=target)
    finally:
        if collector is not None:
            try:
                collector.DestroyPropertyCollector()
            except Exception as exc:  # noqa: BLE001 - best effort; the session may be gone
                log.debug("vsphere_collector_leaked", target=target, error=type(exc).__name__)


def wait_task(session: Session, task: Any, *, timeout: float, what: str, target: str = "") -> Any:
    """Wait for a Task to end; return ``info.result`` or raise its fault translated by class."""
    props = watch(
        session,
        task,
        TASK_PATHS,
        lambda p: p.get("info.state") in (vim.TaskInfo.State.success, vim.TaskInfo.State.error),
        timeout=timeout,
        what=f"{what} (task {task._moId})",
        target=target,
    )
    if props.get("info.state") == vim.TaskInfo.State.error:
        # pyVmomi turns a LocalizedMethodFault into the fault itself, with msg = localizedMessage
        error = props.get("info.error")
        fault = error if isinstance(error, vmodl.MethodFault) else getattr(error, "fault", None)
        if fault is None:
            fault = vmodl.fault.SystemError(reason="task failed without a fault")
        mapped = translate(fault, target=target, message=getattr(fault, "msg", "") or "")
        assert mapped is not None
        raise mapped
    return props.get("info.result")


def run_task(session: Session, start: Callable[[], Any], *, timeout: float, what: str, target: str) -> Any:
    """Start a task with ``start()`` (a translated, non-retried call) and wait for it to end."""
    task = session.call(lambda c: start(), target=target)
    return wait_task(session, task, timeout=timeout, what=what, target=target)
