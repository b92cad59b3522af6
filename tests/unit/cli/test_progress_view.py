"""The live view's pieces without an engine: the ETA from learned durations, the table, the pipe lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

from rich.console import Console

from orchestrator.cli import render
from orchestrator.engine.payloads import RunProgress, VmProgress
from orchestrator.model import StepStatus

NOW = datetime(2026, 12, 4, 22, 0, tzinfo=UTC)


def vm(name: str, *, started_s_ago: int = 0, est_s: int = 600, stage: str = "patch") -> VmProgress:
    started = (NOW - timedelta(seconds=started_s_ago)).isoformat()
    return VmProgress(name, "pve", "main", StepStatus.RUNNING, step_id=f"step-{name}", channel="agent",
                      started=started, est_s=est_s, stage=stage, since=started)  # fmt: skip


def progress(**kw: object) -> RunProgress:
    base: dict[str, object] = {
        "run_id": "run-1",
        "phase": "guests",
        "ring": "main",
        "total": 10,
        "est_s": 1000,
    }
    return RunProgress(**{**base, **kw})  # type: ignore[arg-type]


def test_the_eta_is_the_undone_share_of_the_learned_estimate() -> None:
    p = progress(counts={"succeeded": 4, "pending": 6})
    assert p.eta(NOW) == NOW + timedelta(seconds=600)  # 6 of 10 VMs left of 1000 s


def test_a_vm_in_flight_counts_by_the_share_of_its_own_estimate_it_has_run() -> None:
    half = progress(counts={"succeeded": 4, "running": 1, "pending": 5}, vms=(vm("a", started_s_ago=300),))
    assert half.eta(NOW) == NOW + timedelta(seconds=550)  # 5.5 of 10 left
    overdue = progress(counts={"succeeded": 9, "running": 1}, vms=(vm("a", started_s_ago=9999),))
    assert overdue.eta(NOW) == NOW + timedelta(seconds=5)  # never "done" before it is: 5 % of it left


def test_a_window_wait_comes_before_the_remaining_work_and_no_estimate_means_no_eta() -> None:
    opens = NOW + timedelta(hours=3)
    waiting = progress(counts={"pending": 10}, window_until=f"weekend until {opens.isoformat()}")
    assert waiting.eta(NOW) == opens + timedelta(seconds=1000)
    assert progress(est_s=0, counts={"pending": 10}).eta(NOW) is None
    assert progress(counts={"succeeded": 10}).eta(NOW) is None


def test_the_table_has_a_row_per_vm_in_flight_with_stage_times_channel_and_the_title_says_waits() -> None:
    p = progress(counts={"succeeded": 2, "running": 1, "pending": 7}, vms=(vm("app-1", started_s_ago=75),),
                 waiting_for="", soak_until="", hosts_total=3, hosts_done=3)  # fmt: skip
    out = StringIO()
    Console(file=out, width=400, color_system=None).print(render.progress_table(p, now=NOW))
    text = " ".join(out.getvalue().split())  # the title wraps at the table's width
    assert "pve/app-1" in text and "patch" in text and "1:15 / 10:00" in text and "agent" in text
    assert "VMs 2/10 done (pending 7 · running 1 · succeeded 2)" in text and "hosts 3/3" in text
    assert "ETA " in text and "learned durations" in text


def test_pipe_lines_say_each_stage_change_once_and_each_vm_that_concluded() -> None:
    seen: dict[str, str] = {}
    first = render.vm_lines(progress(vms=(vm("a", stage="snapshot"), vm("b", stage="patch"))), seen)
    assert first == ["pve/a [main] snapshot via agent", "pve/b [main] patch via agent"]
    assert render.vm_lines(progress(vms=(vm("a", stage="snapshot"), vm("b", stage="patch"))), seen) == []
    assert render.vm_lines(progress(vms=(vm("a", stage="patch"),)), seen) == [
        "pve/a [main] patch via agent",
        "pve/b concluded",
    ]


def test_stage_view_in_a_pipe_prints_a_line_per_stage_and_keeps_their_durations() -> None:
    out = StringIO()
    view = render.StageView("lab up")
    view._console = Console(file=out, width=200, color_system=None)  # a pipe: not a terminal
    with view:
        view("guest image")
        view("starting pw-lab-1")
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["lab up: guest image", "lab up: starting pw-lab-1"]
    assert [name for name, _s in view.stages] == ["starting", "guest image", "starting pw-lab-1"]


def test_stage_view_on_a_terminal_draws_a_spinner_with_the_stage_and_its_time() -> None:
    out = StringIO()
    view = render.StageView("lab up")
    view._console = Console(file=out, width=200, force_terminal=True, color_system=None)
    with view:
        view("package repository")
        text = " ".join(
            Console(file=StringIO(), width=200).render_str(str(view.__rich__().text)).plain.split()
        )
    assert text.startswith("lab up: package repository (0:00, total 0:00)")
