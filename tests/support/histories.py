"""What Temporal itself recorded for a run: events and the largest payload per workflow.

Read from the server's own histories (``fetch_history``, one execution at a time: a continued-as-new
``PatchRun`` is several executions) and listed through its visibility (``list_workflows``). A payload
is every ``temporal.api.common.v1.Payload`` anywhere in an event (inputs, results, memos, failures'
details), measured as the server stores it (``ByteSize``: data + metadata).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecution, WorkflowHistory


def payload_sizes(message: Message) -> Iterator[int]:
    """The size of every Payload inside ``message`` (recursively)."""
    if isinstance(message, Payload):
        yield message.ByteSize()
        return
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            items = list(value.values())
        elif isinstance(value, Message):
            items = [value]
        else:  # a repeated field
            items = list(value)
        for item in items:
            if isinstance(item, Message):
                yield from payload_sizes(item)


@dataclass
class TypeStats:
    """One workflow type's executions: how many, the longest history, the largest payload."""

    executions: int = 0
    max_events: int = 0
    total_events: int = 0
    max_payload: int = 0
    largest: str = ""  # "workflow id: event type" of the largest payload
    activities: Counter[str] = field(default_factory=Counter)  # activity type -> times scheduled
    activity_s: Counter[str] = field(default_factory=Counter)  # activity type -> seconds, schedule to close

    def add(self, workflow_id: str, history: WorkflowHistory) -> None:
        self.executions += 1
        self.max_events = max(self.max_events, len(history.events))
        self.total_events += len(history.events)
        scheduled: dict[int, tuple[str, float]] = {}
        for event in history.events:
            at = event.event_time.ToDatetime().timestamp()
            if event.HasField("activity_task_scheduled_event_attributes"):
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                self.activities[name] += 1
                scheduled[event.event_id] = (name, at)
            elif event.HasField("activity_task_completed_event_attributes"):
                name, since = scheduled[event.activity_task_completed_event_attributes.scheduled_event_id]
                self.activity_s[name] += at - since
            size = max(payload_sizes(event), default=0)
            if size > self.max_payload:
                self.max_payload = size
                self.largest = f"{workflow_id}: {event.WhichOneof('attributes')}"


@dataclass
class RunHistories:
    types: dict[str, TypeStats] = field(default_factory=dict)

    @property
    def activities(self) -> Counter[str]:
        """Activity type -> times scheduled, over every execution."""
        return sum((t.activities for t in self.types.values()), Counter())

    @property
    def activity_s(self) -> Counter[str]:
        """Activity type -> seconds from scheduled to completed, summed over every execution."""
        return sum((t.activity_s for t in self.types.values()), Counter())

    @property
    def max_events(self) -> int:
        return max((t.max_events for t in self.types.values()), default=0)

    @property
    def max_payload(self) -> int:
        return max((t.max_payload for t in self.types.values()), default=0)

    def table(self) -> str:
        rows = [(f"{'workflow type':<12} {'executions':>10} {'max events':>10} {'avg events':>10} "
                f"{'largest payload':>16}")]  # fmt: skip
        for name, t in sorted(self.types.items()):
            avg = t.total_events / max(1, t.executions)
            rows.append(
                f"{name:<12} {t.executions:>10} {t.max_events:>10} {avg:>10.0f} {t.max_payload:>14} B"
            )
        return "\n".join(rows)


def run_executions(client: Client, run_id: str) -> AsyncIterator[WorkflowExecution]:
    """Every execution of run ``run_id``: its workflow id is ``run_id`` or starts with ``run_id/`` (its
    batches, and the VMs' children of an older run), through Temporal's visibility."""
    return client.list_workflows(f"WorkflowId = '{run_id}' OR WorkflowId STARTS_WITH '{run_id}/'")


async def run_histories(client: Client, run_id: str) -> RunHistories:
    """Every execution whose workflow id is ``run_id`` or starts with ``run_id/`` (its batches, and
    the VMs' children of an older run), each history read."""
    found = RunHistories()
    async for execution in run_executions(client, run_id):
        stats = found.types.setdefault(execution.workflow_type, TypeStats())
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        stats.add(execution.id, await handle.fetch_history())
    return found


@dataclass
class SlotSpans:
    """When each VM held a concurrency slot, per ``WaveBatch`` execution (batches in start order, each
    one's spans in start order), read from the histories: from its ``vm_patch`` start to its
    ``vm_verify_health`` end (the VM decoded from the activity's input); and the run's first and last
    event."""

    batches: list[list[tuple[float, float]]] = field(default_factory=list)
    run_started: float = float("inf")
    run_ended: float = 0.0

    def most_at_once(self) -> int:
        """The most VMs holding a slot at the same moment, across every batch of the run."""
        return most_at_once(span for batch in self.batches for span in batch)


def most_at_once(spans: Iterable[tuple[float, float]]) -> int:
    """The most of ``spans`` (start, end) open at the same moment (one ending as another starts: not
    both)."""
    moments = sorted((at, change) for a, b in spans for at, change in ((a, 1), (b, -1)))
    busy = most = 0
    for _, change in moments:
        busy += change
        most = max(most, busy)
    return most


async def slot_spans(client: Client, run_id: str) -> SlotSpans:
    """The run's :class:`SlotSpans` (patched inline: ``vm_patch`` and ``vm_verify_health`` are the
    batch's own activities)."""
    found = SlotSpans()
    async for execution in run_executions(client, run_id):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        if execution.workflow_type == "PatchRun":
            found.run_started = min(found.run_started, history.events[0].event_time.ToDatetime().timestamp())
            found.run_ended = max(found.run_ended, history.events[-1].event_time.ToDatetime().timestamp())
        if execution.workflow_type != "WaveBatch":
            continue
        names: dict[int, tuple[str, str]] = {}  # scheduled event id -> (activity, vm)
        spans: dict[str, list[float]] = {}  # vm -> [slot start, slot end]
        for event in history.events:
            at = event.event_time.ToDatetime().timestamp()
            if event.HasField("activity_task_scheduled_event_attributes"):
                attrs = event.activity_task_scheduled_event_attributes
                if attrs.activity_type.name in ("vm_patch", "vm_verify_health"):
                    task = json.loads(attrs.input.payloads[0].data)
                    names[event.event_id] = (attrs.activity_type.name, json.dumps(task["step"]["vm"]))
            elif event.HasField("activity_task_started_event_attributes"):
                scheduled = event.activity_task_started_event_attributes.scheduled_event_id
                name, vm = names.get(scheduled, ("", ""))
                if name == "vm_patch":
                    span = spans.setdefault(vm, [at, at])
                    span[0] = min(span[0], at)
            elif event.HasField("activity_task_completed_event_attributes"):
                scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
                name, vm = names.get(scheduled, ("", ""))
                if name == "vm_verify_health" and vm in spans:
                    spans[vm][1] = max(spans[vm][1], at)
        if spans:
            found.batches.append(sorted((a, b) for a, b in spans.values()))
    found.batches.sort()
    return found
