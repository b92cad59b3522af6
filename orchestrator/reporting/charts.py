"""The report's charts as inline SVG, drawn here (no script, no library, no network: the page opens offline).

* :func:`trend_machines` — stacked bars per day: compliant / non-compliant / never assessed machines;
* :func:`trend_updates` — lines per day: pending security updates, critical ones among them;
* :func:`run_timeline` — one run as a Gantt chart: a row per VM, a bar per step (snapshot, patch,
  reboot, health, rollback) from the journal's intent and result times.

Every chart is ``role="img"`` with a ``<title>`` and a ``<desc>`` (``aria-labelledby``) that say in
words what it shows, every mark has a ``<title>`` (the tooltip, and what a screen reader reads), and
every text is escaped. ``data-chart`` / ``data-kind`` / ``data-day`` / ``data-vm`` let tools and tests
find the marks.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import datetime

from orchestrator.facts.records import utc
from orchestrator.reporting.timelines import Bar, RunTimeline, TimelineRow
from orchestrator.reporting.trend import TrendPoint

WIDTH = 960
COLORS = {"compliant": "#2da44e", "noncompliant": "#cf222e", "unassessed": "#afb8c1", "security": "#bc4c00",
          "critical": "#a40e26", "snapshot": "#0969da", "patch": "#8250df", "reboot": "#d4a72c",
          "health": "#1a7f37", "rollback": "#e16f24", "failed": "#82071e", "outcome": "#8c959f",
          "unfinished": "#8c959f", "axis": "#57606a", "grid": "#d8dee4"}  # fmt: skip
MACHINE_SERIES = (
    ("compliant", "compliant"),
    ("noncompliant", "non-compliant"),
    ("unassessed", "never assessed"),
)
BAR_KINDS = ("snapshot", "patch", "reboot", "health", "rollback")
_TIME_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _svg(
    kind: str, ident: str, height: int, title: str, desc: str, body: Sequence[str], extra: str = ""
) -> str:
    return (
        f'<svg class="chart" data-chart="{kind}"{extra} role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'aria-labelledby="{ident}-title {ident}-desc"><title id="{ident}-title">{_e(title)}</title>'
        f'<desc id="{ident}-desc">{_e(desc)}</desc>{"".join(body)}</svg>'
    )


def _ticks(top: float, count: int = 4) -> list[float]:
    """0 and nice round steps (1, 2, 5 x 10^k) up to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(top / step) + 1)]


def _legend(items: Sequence[tuple[str, str]], x: int, y: int) -> str:
    parts = []
    for key, label in items:
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{COLORS[key]}"/>'
                     f'<text x="{x + 14}" y="{y}" class="legend">{_e(label)}</text>')  # fmt: skip
        x += 24 + 7 * len(label)
    return "".join(parts)


def _y_axis(ticks: Sequence[float], left: int, right: int, y_of: Callable[[float], float]) -> str:
    lines = []
    for t in ticks:
        y = y_of(t)
        lines.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{COLORS["grid"]}"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{t:g}</text>')  # fmt: skip
    return "".join(lines)


# ------------------------------------------------------------------------------------------- trend
def trend_machines(points: Sequence[TrendPoint]) -> str:
    height, left, right, top, bottom = 260, 52, WIDTH - 12, 28, 226
    ticks = _ticks(max((p.machines for p in points), default=0))
    scale = (bottom - top) / ticks[-1]
    slot = (right - left) / max(1, len(points))
    body = [_legend(MACHINE_SERIES, left, 16), _y_axis(ticks, left, right, lambda v: bottom - v * scale)]
    for i, p in enumerate(points):
        x, y = left + i * slot + slot * 0.1, float(bottom)
        parts = [f'<g data-day="{_e(p.day)}">']
        for key, label in MACHINE_SERIES:
            count = getattr(p, key)
            if count:
                h = count * scale
                y -= h
                parts.append(f'<rect data-kind="{key}" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" '
                             f'height="{h:.1f}" fill="{COLORS[key]}"><title>{_e(p.day)}: {count} {label}'
                             f"</title></rect>")  # fmt: skip
        body.append("".join(parts) + "</g>")
    body.append(_day_labels(points, left, slot, bottom + 16))
    last = points[-1] if points else None
    desc = (f"{len(points)} days from {points[0].day} to {last.day}. On {last.day}: {last.compliant} compliant, "
            f"{last.noncompliant} non-compliant, {last.unassessed} never assessed." if last else "No days to show.")  # fmt: skip
    return _svg("trend-machines", "trend-machines", height, "Machines by compliance, per day", desc, body)


def trend_updates(points: Sequence[TrendPoint]) -> str:
    height, left, right, top, bottom = 210, 52, WIDTH - 12, 28, 176
    ticks = _ticks(max((p.security for p in points), default=0))
    scale = (bottom - top) / ticks[-1]
    slot = (right - left) / max(1, len(points))
    body = [_legend((("security", "pending security updates"), ("critical", "critical")), left, 16),
            _y_axis(ticks, left, right, lambda v: bottom - v * scale)]  # fmt: skip
    for key, label in (("security", "pending security updates"), ("critical", "critical updates")):
        coords = [(left + (i + 0.5) * slot, bottom - getattr(p, key) * scale) for i, p in enumerate(points)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        body.append(
            f'<polyline data-kind="{key}" points="{path}" fill="none" stroke="{COLORS[key]}" stroke-width="2"/>'
        )
        body.extend(
            f'<circle data-kind="{key}" data-day="{_e(p.day)}" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLORS[key]}">'
            f"<title>{_e(p.day)}: {getattr(p, key)} {label}</title></circle>"
            for (x, y), p in zip(coords, points, strict=True)
        )
    body.append(_day_labels(points, left, slot, bottom + 16))
    last = points[-1] if points else None
    desc = (f"On {last.day}: {last.security} security updates pending on the fleet, {last.critical} of them critical."
            if last else "No days to show.")  # fmt: skip
    return _svg("trend-updates", "trend-updates", height, "Pending security updates, per day", desc, body)


def _day_labels(points: Sequence[TrendPoint], left: float, slot: float, y: float) -> str:
    every = max(1, math.ceil(len(points) / 10))
    return "".join(
        f'<text x="{left + (i + 0.5) * slot:.1f}" y="{y:.1f}" text-anchor="middle" class="tick">{_e(p.day[5:])}</text>'
        for i, p in enumerate(points)
        if i % every == 0 or i == len(points) - 1
    )


# ------------------------------------------------------------------------------------------- run timelines
def run_timeline(run: RunTimeline, index: int = 0) -> str:
    """``index``: the chart's position on the page (its element ids must be unique)."""
    label_w, row_h, axis_h = 190, 22, 34
    left, right = label_w, WIDTH - 12
    rows = run.rows
    height = axis_h + max(1, len(rows)) * row_h + 12
    moments = [utc(t) for r in rows for b in r.bars for t in (b.start, b.end)]
    t0 = min(moments) if moments else utc(run.created_at)
    span = max(60.0, (max(moments) - t0).total_seconds() if moments else 60.0)

    def x_of(iso: str) -> float:
        return left + (utc(iso) - t0).total_seconds() / span * (right - left)

    legend = _legend([(k, k) for k in BAR_KINDS] + [("failed", "failed check")], left, 14)
    body = [legend, _time_axis(t0, span, left, right, axis_h, height)]
    for i, row in enumerate(rows):
        body.append(_row(row, axis_h + i * row_h, row_h, label_w, x_of))
    ident = f"timeline-{index}"
    shown = f"{len(rows)} of {run.vms} VMs" if run.vms > len(rows) else f"{len(rows)} VMs"
    desc = (f"Run {run.run_id} ({run.status}): {shown}, one row each, from {t0.strftime('%Y-%m-%d %H:%M')} UTC over "
            f"{_duration(span)}; bars for snapshot, patch, reboot, health checks and rollback.")  # fmt: skip
    return _svg(
        "timeline",
        ident,
        height,
        f"Timeline of run {run.run_id}",
        desc,
        body,
        f' data-run="{_e(run.run_id)}"',
    )


def _time_axis(t0: datetime, span: float, left: float, right: float, axis_h: int, height: int) -> str:
    step = next((s for s in _TIME_STEPS if span / s <= 8), _TIME_STEPS[-1])
    first = math.ceil(t0.timestamp() / step) * step
    parts = []
    tick = first
    while tick <= t0.timestamp() + span:
        x = left + (tick - t0.timestamp()) / span * (right - left)
        label = datetime.fromtimestamp(tick, tz=t0.tzinfo).strftime("%H:%M")
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_h - 6}" y2="{height - 8}" stroke="{COLORS["grid"]}"/>'
                     f'<text x="{x:.1f}" y="{axis_h - 9}" text-anchor="middle" class="tick">{label}</text>')  # fmt: skip
        tick += step
    return "".join(parts)


def _row(row: TimelineRow, y: float, row_h: int, label_w: int, x_of: Callable[[str], float]) -> str:
    name = row.vm if len(row.vm) <= 26 else row.vm[:25] + "…"
    status = row.status.replace("_", " ")
    why = f"{_e(row.vm)}: {_e(status)}" + (f": {_e(row.error)}" if row.error else "")
    parts = [
        f'<g data-vm="{_e(row.vm)}" data-status="{_e(row.status)}">',
        f'<text x="8" y="{y + row_h * 0.68:.1f}" class="row-label"><title>{why}</title>{_e(name)}</text>',
    ]
    if not row.bars:
        parts.append(
            f'<text x="{label_w + 4}" y="{y + row_h * 0.68:.1f}" class="tick">{_e(status)}: no step recorded</text>'
        )
    parts.extend(_bar(bar, y + 4, row_h - 8, x_of, row.vm) for bar in row.bars)
    return "".join(parts) + "</g>"


def _bar(bar: Bar, y: float, h: float, x_of: Callable[[str], float], vm: str) -> str:
    x0, x1 = x_of(bar.start), x_of(bar.end)
    fill = COLORS["failed"] if bar.ok is False else COLORS["unfinished" if bar.ok is None else bar.kind]
    dash = ' stroke="#57606a" stroke-dasharray="3 2"' if bar.ok is None else ""
    seconds = (utc(bar.end) - utc(bar.start)).total_seconds()
    state = {False: ", failed", None: ", no result recorded"}.get(bar.ok, "")
    when = f"{utc(bar.start).strftime('%H:%M:%S')}–{utc(bar.end).strftime('%H:%M:%S')} UTC"
    return (f'<rect data-kind="{_e(bar.kind)}" x="{x0:.1f}" y="{y:.1f}" width="{max(2.0, x1 - x0):.1f}" height="{h:.1f}" '
            f'rx="2" fill="{fill}"{dash}><title>{_e(vm)}: {_e(bar.action)} {when} ({_duration(seconds)}{state})</title></rect>')  # fmt: skip


def _duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"
