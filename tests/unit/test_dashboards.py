"""The Grafana dashboards in deploy/grafana: exactly what the generator makes, laid out on the
grid without overlaps, every query valid PromQL (promtool parses it) that selects the ``job``
variable and reads only recordings that deploy/prometheus/rules.yml defines."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from cityhub.streams.devtools.observability.dashboards import DASHBOARDS, main, rendered
from cityhub.streams.devtools.observability.grafana import (
    Dashboard,
    Panel,
    Query,
    Row,
    dashboard_json,
    expand,
    panels_of,
)

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "deploy" / "grafana"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"


def all_queries() -> list[tuple[str, str, str]]:
    return [
        (name, panel.title, query.expr)
        for name, dashboard in DASHBOARDS.items()
        for panel in panels_of(dashboard)
        for query in panel.queries
    ]


def test_the_committed_dashboards_are_what_the_generator_makes() -> None:
    committed = {path.name: path.read_text() for path in FOLDER.glob("*.json")}
    assert committed == rendered(), (
        "regenerate: python -m cityhub.streams.devtools.observability.dashboards deploy/grafana"
    )


def test_the_command_writes_every_dashboard(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == rendered()


def test_the_four_dashboards_each_have_panels_with_queries() -> None:
    assert set(DASHBOARDS) == {
        "cityhub-pipeline.json",
        "cityhub-subscriptions.json",
        "cityhub-registry-api.json",
        "cityhub-history.json",
    }
    for name, dashboard in DASHBOARDS.items():
        doc = json.loads(rendered()[name])
        assert doc["uid"] == dashboard.uid == name.removesuffix(".json")
        panels = [p for p in doc["panels"] if p["type"] != "row"]
        assert len(panels) >= 8, name
        for panel in panels:
            assert panel["targets"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        variables = {v["name"] for v in doc["templating"]["list"]}
        assert variables == {"datasource", "job"}


def test_panels_fit_the_grid_and_never_overlap() -> None:
    for dashboard in DASHBOARDS.values():
        taken: set[tuple[int, int]] = set()
        ids = []
        for panel in dashboard_json(dashboard)["panels"]:
            ids.append(panel["id"])
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            cells = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not cells & taken, f"{dashboard.uid}: {panel['title']} overlaps"
            taken |= cells
        assert len(ids) == len(set(ids))


def test_the_layout_wraps_and_rows_start_a_line() -> None:
    dashboard = Dashboard(
        "t",
        "t",
        "",
        (
            Panel("a", (Query("up"),), width=16),
            Panel("b", (Query("up"),), width=16),
            Row("r"),
            Panel("c", (Query("up"),), width=8, height=4),
        ),
    )
    positions = [p["gridPos"] for p in dashboard_json(dashboard)["panels"]]
    assert positions == [
        {"x": 0, "y": 0, "w": 16, "h": 8},
        {"x": 0, "y": 8, "w": 16, "h": 8},
        {"x": 0, "y": 16, "w": 24, "h": 1},
        {"x": 0, "y": 17, "w": 8, "h": 4},
    ]


def test_every_query_selects_the_job_variable() -> None:
    for name, title, expr in all_queries():
        for selector in re.findall(r"\{[^{}]*\}", expr):
            assert 'job=~"$job"' in selector, f"{name} / {title}: {expr}"


def test_every_recording_a_panel_reads_is_defined_by_the_rules() -> None:
    rules = yaml.safe_load(RULES.read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    for name, title, expr in all_queries():
        for record in re.findall(r"cityhub:[a-z_0-9:]+", expr):
            assert record in recorded, f"{name} / {title}: {record} is not recorded"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule's expression), offline."""
    rules = [
        {"record": f"panel:query_{i}", "expr": expand(expr, {"job": ".*"})}
        for i, (_, _, expr) in enumerate(all_queries())
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: run deploy/system-deps.sh"
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_expand_replaces_both_spellings_of_a_variable() -> None:
    assert expand('up{job=~"$job", x="${job}"}', {"job": "a|b"}) == 'up{job=~"a|b", x="a|b"}'
