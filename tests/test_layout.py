"""No module of the package is longer than about 500 lines: one that long holds more than one
concept, and it is split by concept long before it becomes a god object (issue 9).

The few modules still over the limit are listed in ``KNOWN_LONG_MODULES``, each with the length
it was listed at and who splits it. The list only shrinks: a listed module may not grow past
that length, and one that is back under the limit must be taken off, so that the limit guards
it from then on."""

from __future__ import annotations

from pathlib import Path
from typing import Final

ROOT = Path(__file__).resolve().parent.parent
PACKAGES: Final = ("schemas", "connectors", "streams")
MAX_LINES: Final = 500

KNOWN_LONG_MODULES: Final[dict[str, int]] = {}
"""Modules over the limit, each with its length when it was listed (a ceiling, not a budget)."""


def module_lengths() -> dict[str, int]:
    """Lines of every Python module under the package folders, by path from the repository."""
    lengths = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            lengths[path.relative_to(ROOT).as_posix()] = len(path.read_text().splitlines())
    return lengths


def test_the_scan_sees_the_package() -> None:
    lengths = module_lengths()
    for module in ("schemas/settings.py", "connectors/plugins.py", "streams/registry/service.py"):
        assert module in lengths, f"{module} not found: the scan looks in the wrong place"


def test_no_module_is_longer_than_the_limit() -> None:
    too_long = {
        module: lines
        for module, lines in module_lengths().items()
        if lines > MAX_LINES and module not in KNOWN_LONG_MODULES
    }
    assert not too_long, (
        f"modules over {MAX_LINES} lines; split each by concept (a module per concept, names "
        "that say what each holds): "
        + ", ".join(f"{module} ({lines} lines)" for module, lines in sorted(too_long.items()))
    )


def test_the_known_long_modules_only_shrink() -> None:
    lengths = module_lengths()
    stale = []
    for module, ceiling in sorted(KNOWN_LONG_MODULES.items()):
        lines = lengths.get(module)
        if lines is None:
            stale.append(f"{module} is gone: take it off KNOWN_LONG_MODULES")
        elif lines <= MAX_LINES:
            stale.append(f"{module} is {lines} lines now: take it off KNOWN_LONG_MODULES")
        elif lines > ceiling:
            stale.append(f"{module} grew to {lines} lines, past the {ceiling} it was listed at")
    assert not stale, "; ".join(stale)
