"""contrib/grafana/patchwave.json: a valid dashboard whose every query names metrics patchwave exports,
and that shows every metric it exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from orchestrator.metrics.exposition import render_metrics
from tests.support.fleet import NOW, populate_fleet

DASHBOARD = Path(__file__).resolve().parents[3] / "contrib" / "grafana" / "patchwave.json"
PANEL_TYPES = {"row", "stat", "timeseries", "bargauge", "heatmap"}
METRIC = re.compile(r"\bpatchwave_[a-z_]+\b")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Family name -> the sample names (with _bucket/_sum/_count for the histogram) and label names."""
    fleet = populate_fleet(tmp_path_factory.mktemp("facts") / "facts.db")
    try:
        families = text_string_to_metric_families(render_metrics(fleet.store, NOW, grace_s=30 * 86400))
        return {
            f.name: {s.name for s in f.samples} | {k for s in f.samples for k in s.labels} for f in families
        }
    finally:
        fleet.store.close()


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def queries(board: dict) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p.get("targets", ())]


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    board = dashboard()
    assert board["title"] == "patchwave" and board["uid"] and isinstance(board["schemaVersion"], int)
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["type"] in PANEL_TYPES and panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("x", "y", "w", "h")) and grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"} and panel["targets"]
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_every_query_names_only_metrics_patchwave_exports(exported: dict[str, set[str]]) -> None:
    samples = set().union(*exported.values()) - {"le"}
    for expr in queries(dashboard()):
        names = set(METRIC.findall(expr))
        assert names, expr
        assert names <= samples, (expr, names - samples)


def test_every_exported_metric_has_a_panel(exported: dict[str, set[str]]) -> None:
    shown = {name for expr in queries(dashboard()) for name in METRIC.findall(expr)}
    for family, names in exported.items():
        assert shown & names, f"no panel shows {family}"
