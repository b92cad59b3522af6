"""The HTML compliance report, loaded in headless Chromium: the rendered DOM shows the key figures.

The report comes from a real fact store (tests/fleet); Chromium (Debian's package, installed by
.ci/setup-report.sh) loads the file offline with networking features off, and we read its
``--dump-dom`` output and take a screenshot of the page.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from orchestrator.report import build_report
from orchestrator.report_render import render
from tests.fleet import NOW, populate

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

    assert figures.cards == {"machines": "5", "ok": "1", "attention": "3", "unknown": "1", "security": "4",
                             "critical": "1", "reboot": "1", "failed": "2", "oldest-snapshot": "5d 16h"}  # fmt: skip
    web2 = figures.machines["dc1/web-2"]
    assert (web2["status"], web2["critical"], web2["important"], web2["moderate"], web2["other"]) == (
        "attention", "1", "2", "1", "1")  # fmt: skip
    assert (web2["pending"], web2["cves"], web2["last-patched"]) == ("5", "3", "never")
    assert web2["last-result"].startswith("rolled back") and "HTTP 503" in web2["last-result"]
    assert figures.machines["dc1/db-1"]["reboot"] == "yes"
    assert figures.machines["dc1/web-1"]["last-patched"] == "2026-11-25 21:15:00 UTC 14h 45m ago"
    assert figures.machines["dc2/legacy-<b>1</b>"]["status"] == "unknown"  # escaped in the page, text in the DOM
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
