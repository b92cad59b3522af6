"""The HTML compliance report, loaded in headless Chromium: the rendered DOM shows the key figures and the
charts, and a screenshot shows them drawn.

The report comes from a real fact store (tests/support/fleet.py: ``populate``, and ``populate_fleet`` for the
whole fleet with its history); Chromium (Debian's package, installed by .ci/setup-report.sh) loads the file
offline with networking features off, and we read its ``--dump-dom`` output and take screenshots, decoded
with tests/support/png.py (zlib + struct) to check what they show.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from orchestrator.reporting.charts import BAR_KINDS, COLORS
from orchestrator.reporting.compliance import build_report
from orchestrator.reporting.render import render
from tests.support import png
from tests.support.fleet import NOW, populate, populate_fleet

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars")  # fmt: skip


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed: run .ci/setup-report.sh (Debian package `chromium`)")
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip


class Figures(HTMLParser):
    """Collects the text of elements carrying data-figure / data-field, per card, group and machine row."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, str] = {}
        self.groups: dict[str, dict[str, str]] = {}
        self.machines: dict[str, dict[str, str]] = {}
        self._row: dict[str, str] | None = None
        self._field: str | None = None
        self._card: str | None = None
        self._depth = 0
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-machine"):
            self._row = self.machines.setdefault(a["data-machine"] or "", {})
        elif tag == "tr" and a.get("data-group"):
            self._row = self.groups.setdefault(a["data-group"] or "", {})
        if a.get("data-figure"):
            self._card = a["data-figure"]
        if self._card and tag == "span" and a.get("class") == "value":
            self._field, self._text = "card", []
        elif self._row is not None and a.get("data-field") and self._field is None:
            self._field, self._text, self._depth = a["data-field"], [], 0
        elif self._field is not None:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._field is not None and self._depth > 0:
            self._depth -= 1
            return
        if self._field == "card" and tag == "span":
            self.cards[self._card or ""] = "".join(self._text).strip()
            self._field, self._card = None, None
        elif self._field is not None and self._row is not None:
            self._row[self._field] = " ".join(" ".join(self._text).split())
            self._field = None
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._field is not None:
            self._text.append(data)


@pytest.fixture
def page(tmp_path: Path) -> Path:
    fleet = populate(tmp_path / "facts.db")
    try:
        html = render(build_report(fleet.store, NOW), "html")
    finally:
        fleet.store.close()
    path = tmp_path / "compliance.html"
    path.write_text(html, encoding="utf-8")
    return path


def test_chromium_renders_the_key_figures(page: Path, tmp_path: Path) -> None:
    dom = chromium(["--dump-dom", page.as_uri()], tmp_path / "profile").stdout
    assert "<title>patchwave compliance report</title>" in dom
    figures = Figures()
    figures.feed(dom)

    assert figures.cards == {"machines": "5", "ok": "1", "noncompliant": "1", "attention": "3", "unknown": "1",
                             "security": "4", "critical": "1", "reboot": "1", "old-libraries": "0", "failed": "2", "oldest-snapshot": "5d 16h",
                             "hosts-in-maintenance": "0"}  # fmt: skip
    web2 = figures.machines["dc1/web-2"]
    assert (web2["status"], web2["critical"], web2["important"], web2["moderate"], web2["other"]) == (
        "attention", "1", "2", "1", "1")  # fmt: skip
    assert web2["compliance"] == "non-compliant"
    assert (web2["pending"], web2["cves"], web2["last-patched"]) == ("5", "3", "never")
    assert web2["last-result"].startswith("rolled back") and "HTTP 503" in web2["last-result"]
    assert figures.machines["dc1/db-1"]["reboot"] == "yes"
    assert figures.machines["dc1/web-1"]["last-patched"] == "2026-11-25 21:15:00 UTC 14h 45m ago"
    assert (
        figures.machines["dc2/legacy-<b>1</b>"]["status"] == "never assessed"
    )  # escaped in the page, text in the DOM
    assert figures.machines["dc2/legacy-<b>1</b>"]["critical"] == "?"
    web = figures.groups["web"]
    assert (web["machines"], web["ok"], web["attention"], web["pending"], web["never-patched"]) == (
        "2", "1", "1", "5", "1")  # fmt: skip
    assert figures.groups["all"]["machines"] == "5" and figures.groups["all"]["failed"] == "2"


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", header[16:24])


def test_chromium_takes_a_screenshot_of_the_report(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium([f"--screenshot={shot}", "--window-size=1500,1100", page.as_uri()], tmp_path / "profile")
    assert png_size(shot) == (1500, 1100)
    assert shot.stat().st_size > 20_000  # a blank page compresses to a few hundred bytes


# ------------------------------------------------------------------------------------------- the charts
class Charts(HTMLParser):
    """The SVG charts of the DOM: per chart, its attributes, its marks by data-kind, its days and rows."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[dict] = []
        self.hosts: list[str] = []
        self._chart: dict | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg" and a.get("data-chart"):
            self._chart = {"attrs": a, "kinds": Counter(), "days": [], "vms": [], "title": ""}
            self.charts.append(self._chart)
        elif tag == "tr" and a.get("data-host"):
            self.hosts.append(a["data-host"] or "")
        if self._chart is None:
            return
        if a.get("data-kind") and tag in ("rect", "circle", "polyline"):
            self._chart["kinds"][(tag, a["data-kind"])] += 1
        if tag == "g" and a.get("data-day"):
            self._chart["days"].append(a["data-day"])
        if tag == "g" and a.get("data-vm"):
            self._chart["vms"].append(a["data-vm"])
        self._in_title = tag == "title" and not self._chart["title"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title and self._chart is not None:
            self._chart["title"] += data


@pytest.fixture
def fleet_page(tmp_path: Path) -> Path:
    fleet = populate_fleet(tmp_path / "facts.db")
    try:
        html = render(build_report(fleet.store, NOW), "html")
    finally:
        fleet.store.close()
    path = tmp_path / "fleet.html"
    path.write_text(html, encoding="utf-8")
    return path


def test_chromium_builds_every_chart_of_the_fleet_report(fleet_page: Path, tmp_path: Path) -> None:
    dom = chromium(["--dump-dom", fleet_page.as_uri()], tmp_path / "profile").stdout
    parsed = Charts()
    parsed.feed(dom)
    charts = {c["attrs"]["data-chart"] + (":" + c["attrs"].get("data-run", "") if "data-run" in c["attrs"] else ""): c
              for c in parsed.charts}  # fmt: skip
    assert set(charts) == {"trend-machines", "trend-updates", "timeline:run-0", "timeline:run-1", "timeline:run-2",
                           "timeline:run-3"}  # fmt: skip
    for chart in parsed.charts:
        assert chart["attrs"]["role"] == "img" and len(chart["attrs"]["aria-labelledby"].split()) == 2
        assert chart["title"]
    machines = charts["trend-machines"]
    assert len(machines["days"]) == 30 and machines["days"][-1] == "2026-11-26"
    assert machines["kinds"][("rect", "noncompliant")] == 7  # 11-20 .. 11-26
    updates = charts["trend-updates"]
    assert updates["kinds"][("polyline", "security")] == 1 and updates["kinds"][("circle", "critical")] == 30
    run1 = charts["timeline:run-1"]
    assert run1["vms"] == ["dc1/canary-1", "dc1/db-1", "dc1/web-1", "dc1/web-2"]
    bars = {kind: n for (tag, kind), n in run1["kinds"].items() if tag == "rect" and kind in BAR_KINDS}
    assert bars == {"snapshot": 4, "patch": 4, "reboot": 3, "health": 9, "rollback": 1}
    assert parsed.hosts == ["dc1/esx-1", "dc1/esx-2", "dc2/kvm-1"]


def test_a_screenshot_shows_the_charts_drawn(fleet_page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "fleet.png"
    chromium([f"--screenshot={shot}", "--window-size=1500,3400", "--force-color-profile=srgb", fleet_page.as_uri()],
             tmp_path / "profile")  # fmt: skip
    image = png.read(shot)
    assert (image.width, image.height) == (1500, 3400)
    colours = image.pixels()
    _, most = colours.most_common(1)[0]
    assert len(colours) > 200 and most < 0.8 * image.width * image.height, "a blank or single-colour page"
    # every series of the charts is on screen, in its own colour
    drawn = {key: sum(n for c, n in colours.items() if _near(c, png.hex_rgb(COLORS[key])))
             for key in ("compliant", "noncompliant", "unassessed", "security", "snapshot", "patch", "reboot",
                         "health", "rollback", "failed")}  # fmt: skip
    assert all(n >= 30 for n in drawn.values()), drawn


def _near(colour: tuple[int, int, int], target: tuple[int, int, int], tolerance: int = 3) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, target, strict=True))
