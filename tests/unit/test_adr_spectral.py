"""The served OpenAPI document against the NL API Design Rules' Spectral ruleset, as `make lint`
runs it: ``cityhub openapi`` writes the document (the very one ``GET /api/v1/openapi.json``
serves, compared here), and Spectral (pinned in deploy/lint, installed by `make setup`) finds
no error and no warning in it, and does find the faults the rules are about in a document
that has them."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cityhub.streams.api import app as api_app
from cityhub.streams.api.openapi import OPENAPI_PATH
from cityhub.streams.api.openapi_cli import DEFAULT_MAX_BODY_BYTES, openapi_cmd

from .test_api_support import running_api

ROOT = Path(__file__).resolve().parents[2]
LINT = ROOT / "deploy" / "lint"
SPECTRAL = LINT / "node_modules" / ".bin" / "spectral"
RULESET = LINT / "nl-api-design-rules.yaml"


def spectral(document: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    """Spectral's findings (errors, warnings, hints) on ``document``."""
    assert SPECTRAL.exists(), (
        "Spectral is not installed: `make setup` runs `npm ci --ignore-scripts` in deploy/lint"
    )
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))
    result = subprocess.run(
        [str(SPECTRAL), "lint", "-r", str(RULESET), "-f", "json", "-q", "-F", "hint", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.strip(), result.stderr
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    return findings


def written(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "written" / "openapi.json"
    result = CliRunner().invoke(openapi_cmd, ["--output", str(out), *args])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def test_the_served_document_has_no_finding(tmp_path: Path) -> None:
    assert spectral(written(tmp_path), tmp_path) == []


def test_spectral_finds_what_the_rules_forbid(tmp_path: Path) -> None:
    document = written(tmp_path)
    broken = copy.deepcopy(document)
    operation = broken["paths"]["/tenants/{tenant}/aggregates"]["get"]
    operation["parameters"].append(
        {"name": "window_size", "in": "query", "schema": {"type": "integer"}}
    )
    del operation["responses"]["400"]
    del broken["info"]["contact"]
    broken["info"]["version"] = "1"
    broken["paths"]["/tenants/{tenant}/devices:import"] = broken["paths"].pop(
        "/tenants/{tenant}/devices/_import"
    )
    codes = {finding["code"] for finding in spectral(broken, tmp_path)}
    assert {
        "nlgov:query-keys-camel-case",
        "nlgov:problem-invalid-input",
        "info-contact",
        "nlgov:semver",
        "nlgov:paths-kebab-case",
    } <= codes


async def test_the_written_document_is_the_served_one(tmp_path: Path) -> None:
    assert DEFAULT_MAX_BODY_BYTES == api_app.DEFAULT_MAX_BODY_BYTES
    async with running_api(max_body_bytes=64 * 1024, max_import_bytes=256 * 1024) as api:
        status, served, _ = await api.call("GET", OPENAPI_PATH, None)
    assert status == 200
    args = ("--max-body-bytes", str(64 * 1024), "--max-import-bytes", str(256 * 1024))
    assert written(tmp_path, *args) == served
