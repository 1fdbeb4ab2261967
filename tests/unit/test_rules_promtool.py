"""The Prometheus rules in deploy/prometheus: promtool accepts them, their unit tests
(rules.test.yml) pass, every alert is tested firing and silent, and every alert tells the
on-call what it means and where its runbook is (docs/observability.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "rules.yml"
RULES_TESTS = RULES_DIR / "rules.test.yml"
RUNBOOK = ROOT / "docs" / "observability.md"


def promtool(*args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    """promtool from Debian's prometheus package (deploy/system-deps.sh installs it)."""
    tool = shutil.which("promtool")
    assert tool is not None, "promtool is missing: run deploy/system-deps.sh"
    return subprocess.run(
        [tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def alerts() -> list[dict[str, Any]]:
    return [r for g in load(RULES)["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULES_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_fails_a_test_whose_alert_does_not_fire(tmp_path: Path) -> None:
    """The unit tests can fail: an expectation that the first alert fires where it stays
    silent is reported."""
    tests = load(RULES_TESTS)
    silent = next(
        check
        for case in tests["tests"]
        for check in case.get("alert_rule_test", [])
        if not check["exp_alerts"]
    )
    silent["exp_alerts"] = [{"exp_labels": {"severity": "critical"}}]
    tests["rule_files"] = [str(RULES)]
    (tmp_path / "broken.test.yml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", "broken.test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in load(RULES_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - firing == set(), "never tested firing"
    assert names - silent == set(), "never tested silent"
    assert firing | silent <= names, "a test of an alert that no longer exists"


def test_every_alert_has_a_summary_a_description_and_a_runbook_entry() -> None:
    runbook = RUNBOOK.read_text()
    # GitHub's anchors: a heading's text in lower case, spaces as hyphens, punctuation dropped.
    anchors = {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", runbook, flags=re.MULTILINE)
    }
    for alert in alerts():
        annotations = alert["annotations"]
        assert annotations["summary"], alert["alert"]
        assert annotations["description"], alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, alert["alert"]
        url = annotations["runbook_url"]
        assert url == f"docs/observability.md#{alert['alert'].lower()}", alert["alert"]
        assert url.split("#", 1)[1] in anchors, f"{alert['alert']}: no such runbook heading"


def test_every_parameter_is_a_recording_of_one_number() -> None:
    """The tunable thresholds (cityhub:slo_*) are plain constants that the alerts use."""
    parameters = [
        r
        for g in load(RULES)["groups"]
        for r in g["rules"]
        if r.get("record", "").startswith("cityhub:slo_")
    ]
    assert parameters
    expressions = " ".join(a["expr"] for a in alerts())
    for parameter in parameters:
        assert re.fullmatch(r"vector\([\d .*e+]+\)", parameter["expr"]), parameter
        assert parameter["record"] in expressions, f"{parameter['record']} is used by no alert"
