"""The audit's fallback (deploy/audit_lock.py): a project document's advisories count only for a
package locked at the project's newest release; withdrawn and ignored advisories do not count."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "audit_lock.py"


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_lock", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up by name while the module runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _document(newest: str, *advisories: dict[str, Any]) -> dict[str, Any]:
    return {"info": {"version": newest}, "vulnerabilities": list(advisories)}


def _advisory(vid: str, *aliases: str, withdrawn: str | None = None) -> dict[str, Any]:
    return {
        "id": vid,
        "aliases": list(aliases),
        "fixed_in": ["9.9.9"],
        "summary": "a flaw\nwith details",
        "withdrawn": withdrawn,
    }


def test_pins_are_read_from_a_hashed_lock_by_canonical_name(audit: ModuleType) -> None:
    lock = (
        "# comment\n"
        "Foo_Bar==1.2.3 \\\n    --hash=sha256:00\n    # via x\n"
        "baz==2.0 ; python_version >= '3.11' \\\n    --hash=sha256:11\n"
    )
    assert audit.locked_pins(lock) == {"foo-bar": "1.2.3", "baz": "2.0"}


def test_advisories_of_the_newest_release_affect_a_package_locked_at_it(
    audit: ModuleType,
) -> None:
    result = audit.audit_from_project_documents(
        {"foo": "1.0", "bar": "2.0"},
        {
            "foo": _document("1.0", _advisory("PYSEC-1", "CVE-1")),
            "bar": _document("2.0"),
        },
        ignored=[],
    )
    assert [(f.package, f.version, f.ids, f.fixed_in) for f in result.findings] == [
        ("foo", "1.0", ("PYSEC-1", "CVE-1"), ("9.9.9",))
    ]
    assert "PYSEC-1 / CVE-1" in str(result.findings[0])
    assert result.audited == ["bar", "foo"]
    assert result.not_audited == []


def test_a_package_locked_below_its_newest_release_is_not_audited(audit: ModuleType) -> None:
    # The newest release's advisories say nothing about an older one, either way.
    result = audit.audit_from_project_documents(
        {"foo": "1.0"}, {"foo": _document("1.1", _advisory("PYSEC-1"))}, ignored=[]
    )
    assert result.findings == []
    assert result.audited == []
    assert result.not_audited == ["foo 1.0 (newest 1.1)"]


def test_withdrawn_and_ignored_advisories_do_not_count(audit: ModuleType) -> None:
    result = audit.audit_from_project_documents(
        {"foo": "1.0"},
        {
            "foo": _document(
                "1.0",
                _advisory("PYSEC-1", withdrawn="2026-01-01T00:00:00Z"),
                _advisory("PYSEC-2", "GHSA-xxxx"),
                _advisory("PYSEC-3"),
            )
        },
        ignored=["GHSA-xxxx"],  # ignored by an alias, as pip-audit's --ignore-vuln matches
    )
    assert [f.ids[0] for f in result.findings] == ["PYSEC-3"]
