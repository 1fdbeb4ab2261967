"""Audit the locked dependencies for known advisories: ``make audit``, part of ``make lint``.

Usage: ``python deploy/audit_lock.py requirements.lock [--ignore-vuln ID ...]``

pip-audit asks PyPI about each pinned release (``/pypi/<name>/<version>/json``). Where those
per-release documents are not served (some mirrors and proxies serve only each project's own
document), pip-audit skips every package as "not found" and still exits 0, having audited
nothing. For each package it skipped, this script reads the project's document
(``/pypi/<name>/json``) instead: its ``vulnerabilities`` are those of the project's newest
release, so for a package locked at that release the answer is the same. A package locked below
its newest release cannot be audited that way; it is listed as not audited (``make lock`` moves
each package to the newest release its range in pyproject.toml allows).

Exit status: 1 when an advisory that is not ignored affects a locked release, or when nothing
could be audited; 0 otherwise. pip-audit's own failures (PyPI unreachable) pass through.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

PROJECT_DOCUMENT = "https://pypi.org/pypi/{name}/json"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.MULTILINE)


def canonical_name(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pins(lock_text: str) -> dict[str, str]:
    """``name == version`` for each requirement of a pip lock file, by canonical name."""
    return {canonical_name(name): version for name, version in PIN.findall(lock_text)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One advisory that affects one locked release."""

    package: str
    version: str
    ids: tuple[str, ...]
    fixed_in: tuple[str, ...]
    summary: str

    def __str__(self) -> str:
        fixed = ", ".join(self.fixed_in) or "no fixed release"
        return f"{self.package} {self.version}: {' / '.join(self.ids)} (fixed in {fixed}): " + (
            self.summary.splitlines()[0] if self.summary else ""
        )


@dataclass(frozen=True, slots=True)
class Fallback:
    """What the project documents said about the packages pip-audit skipped."""

    findings: list[Finding]
    audited: list[str]
    not_audited: list[str]
    """``name version (newest X)``: locked below the newest release, so not auditable here."""


def audit_from_project_documents(
    pins: Mapping[str, str],
    documents: Mapping[str, Mapping[str, Any]],
    ignored: Collection[str],
) -> Fallback:
    """Audit each pinned package against its project document (PyPI's ``/pypi/<name>/json``),
    whose ``vulnerabilities`` apply to its newest release (``info.version``) only. Withdrawn
    advisories and those whose id or an alias is in ``ignored`` do not count."""
    findings: list[Finding] = []
    audited: list[str] = []
    not_audited: list[str] = []
    for name, version in sorted(pins.items()):
        document = documents[name]
        newest = str(document["info"]["version"])
        if Version(newest) != Version(version):
            not_audited.append(f"{name} {version} (newest {newest})")
            continue
        audited.append(name)
        for advisory in document.get("vulnerabilities") or []:
            ids = (str(advisory["id"]), *(str(a) for a in advisory.get("aliases") or []))
            if advisory.get("withdrawn") or set(ids) & set(ignored):
                continue
            findings.append(
                Finding(
                    package=name,
                    version=version,
                    ids=ids,
                    fixed_in=tuple(str(v) for v in advisory.get("fixed_in") or []),
                    summary=str(advisory.get("summary") or advisory.get("details") or ""),
                )
            )
    return Fallback(findings, audited, not_audited)


def _pip_audit(lock: Path, ignored: Iterable[str]) -> dict[str, Any]:
    """pip-audit's JSON report on the lock file's pinned set (no resolution: the lock is
    complete and hashed)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "pip-audit.json"
        command = [
            sys.executable,
            "-m",
            "pip_audit",
            "--disable-pip",
            "--requirement",
            str(lock),
            "--format",
            "json",
            "--output",
            str(report),
            "--progress-spinner",
            "off",
        ]
        for advisory in ignored:
            command += ["--ignore-vuln", advisory]
        # A fixed argument list with this interpreter; nothing comes from a shell.
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        # 0: nothing found, 1: advisories found (both write the report); else pip-audit failed.
        if result.returncode not in (0, 1) or not report.exists():
            sys.stderr.write(result.stdout + result.stderr)
            raise SystemExit(result.returncode or 2)
        parsed: dict[str, Any] = json.loads(report.read_text())
        return parsed


def _project_document(name: str) -> dict[str, Any]:
    url = PROJECT_DOCUMENT.format(name=name)
    # A fixed https address on PyPI; the name comes from our own lock file.
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
        document: dict[str, Any] = json.load(response)
        return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("lock", type=Path)
    parser.add_argument("--ignore-vuln", action="append", default=[], metavar="ID")
    args = parser.parse_args(argv)
    pins = locked_pins(args.lock.read_text())
    report = _pip_audit(args.lock, args.ignore_vuln)

    findings: list[Finding] = []
    skipped: set[str] = set()
    for dependency in report["dependencies"]:
        name = canonical_name(dependency["name"])
        if "skip_reason" in dependency:
            skipped.add(name)
            continue
        for vuln in dependency.get("vulns", []):
            findings.append(
                Finding(
                    package=name,
                    version=str(dependency["version"]),
                    ids=(str(vuln["id"]), *(str(a) for a in vuln.get("aliases", []))),
                    fixed_in=tuple(str(v) for v in vuln.get("fix_versions", [])),
                    summary=str(vuln.get("description") or ""),
                )
            )
    by_pip_audit = len(report["dependencies"]) - len(skipped)

    skipped_pins = {name: pins[name] for name in skipped if name in pins}
    with ThreadPoolExecutor(max_workers=8) as pool:
        documents = dict(zip(skipped_pins, pool.map(_project_document, skipped_pins), strict=True))
    fallback = audit_from_project_documents(skipped_pins, documents, args.ignore_vuln)
    findings += fallback.findings

    print(
        f"audited {by_pip_audit + len(fallback.audited)} of {len(pins)} locked packages: "
        f"{by_pip_audit} by pip-audit, {len(fallback.audited)} from the project document of "
        "their newest release (PyPI's per-release documents were not served for them)"
    )
    if fallback.not_audited:
        print(
            "not audited (locked below their newest release; `make lock` refreshes): "
            + ", ".join(fallback.not_audited)
        )
    for finding in findings:
        print(f"ADVISORY {finding}")
    if findings:
        print(
            f"{len(findings)} known advisories affect the locked set: raise the floor in "
            "pyproject.toml and `make lock`, or (no fixed release) ignore it in the Makefile "
            "with the reason"
        )
        return 1
    if by_pip_audit + len(fallback.audited) == 0:
        print("nothing could be audited")
        return 1
    print("no known advisories")
    return 0


if __name__ == "__main__":
    sys.exit(main())
