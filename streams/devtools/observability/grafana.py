"""Pure: a small typed builder of Grafana dashboard JSON (time series and stat panels on one
Prometheus data source).

Why our own and not ``grafana-foundation-sdk``: cityhub's four dashboards need time series and
stat panels, rows, a data-source variable and a ``job`` variable. That is a few dataclasses
here, against a new dependency that follows Grafana's schema versions. The output is plain
dashboard JSON (schemaVersion 39) that Grafana imports from a file or provisions from a folder.

Panels flow left to right on Grafana's 24-column grid and wrap; a :class:`Row` starts a new
line. Every query's data source is the ``${datasource}`` variable, and every query should
select ``job=~"$job"`` so that one dashboard serves several hubs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

GRID_COLUMNS = 24
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JOB_QUERY = "label_values(cityhub_component_ready, job)"
"""The ``job`` variable's values: every cityhub process exports cityhub_component_ready."""


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL query of a panel and how its series are named in the legend."""

    expr: str
    legend: str = ""


@dataclass(frozen=True, slots=True)
class Panel:
    """A time series (the default) or a stat panel."""

    title: str
    queries: tuple[Query, ...]
    description: str = ""
    unit: str = "short"
    kind: Literal["timeseries", "stat"] = "timeseries"
    width: int = 12
    height: int = 8


@dataclass(frozen=True, slots=True)
class Row:
    """A heading across the dashboard; the panels after it start on a new line."""

    title: str


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    items: tuple[Panel | Row, ...]
    tags: tuple[str, ...] = ("cityhub",)
    refresh: str = "30s"
    time_from: str = "now-6h"


def panels_of(dashboard: Dashboard) -> list[Panel]:
    """The dashboard's panels (rows left out), in order."""
    return [item for item in dashboard.items if isinstance(item, Panel)]


def expand(expr: str, variables: Mapping[str, str]) -> str:
    """``expr`` with the dashboard variables (``$job``) replaced by ``variables``' values, as
    Grafana sends it: for running a panel's query outside Grafana."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", variables[name]).replace(f"${name}", variables[name])
    return expr


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    """The Grafana JSON model of ``dashboard``: panel ids 1, 2, … in order, grid positions
    laid out left to right."""
    panels: list[dict[str, Any]] = []
    x = y = line_height = 0
    for number, item in enumerate(dashboard.items, start=1):
        if isinstance(item, Row):
            y += line_height
            panels.append(_row_json(item, number, y))
            x, y, line_height = 0, y + 1, 0
            continue
        if x + item.width > GRID_COLUMNS:
            x, y, line_height = 0, y + line_height, 0
        panels.append(_panel_json(item, number, x, y))
        x += item.width
        line_height = max(line_height, item.height)
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "editable": True,
        "graphTooltip": 1,
        "refresh": dashboard.refresh,
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": dashboard.time_from, "to": "now"},
        "timezone": "browser",
        "version": 1,
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": _variables()},
        "panels": panels,
    }


def render(dashboard: Dashboard) -> str:
    """The dashboard as the JSON text committed in ``deploy/grafana/`` (stable key order)."""
    return json.dumps(dashboard_json(dashboard), indent=2, sort_keys=True) + "\n"


def _variables() -> list[dict[str, Any]]:
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        },
        {
            "name": "job",
            "label": "Job",
            "type": "query",
            "datasource": DATASOURCE,
            "definition": JOB_QUERY,
            "query": {"query": JOB_QUERY, "refId": "job"},
            "current": {},
            "hide": 0,
            "includeAll": True,
            "allValue": ".*",
            "multi": True,
            "refresh": 2,
            "sort": 1,
            "options": [],
        },
    ]


def _row_json(row: Row, number: int, y: int) -> dict[str, Any]:
    return {
        "id": number,
        "type": "row",
        "title": row.title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": GRID_COLUMNS, "h": 1},
        "panels": [],
    }


def _panel_json(panel: Panel, number: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": number,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": _options(panel.kind),
        "targets": _targets(panel.queries),
    }


def _options(kind: str) -> dict[str, Any]:
    if kind == "stat":
        return {
            "colorMode": "value",
            "graphMode": "area",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        }
    return {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def _targets(queries: Sequence[Query]) -> list[dict[str, Any]]:
    if len(queries) > 26:
        raise ValueError("a panel takes at most 26 queries (refIds A to Z)")
    return [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": q.expr,
            "legendFormat": q.legend,
            "range": True,
        }
        for i, q in enumerate(queries)
    ]
