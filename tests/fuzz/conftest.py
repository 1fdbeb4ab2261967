"""Fuzz runs: the seed goes with every failure, and a long run gets the time it needs."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from .profile import DEFAULT_EXAMPLES, EXAMPLES, SEED

SECONDS_PER_EXAMPLE = 0.05
"""pytest-timeout's limit per fuzz test grows with the examples asked for (the slowest target
takes a few milliseconds an example on the 2-core machine, so this leaves ample room)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if EXAMPLES > DEFAULT_EXAMPLES:
        limit = max(600, int(EXAMPLES * SECONDS_PER_EXAMPLE))
        for item in items:
            if "tests/fuzz/" in item.nodeid or "tests\\fuzz\\" in item.nodeid:
                item.add_marker(pytest.mark.timeout(limit))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[Any]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.append(
            (
                "cityhub fuzz",
                f"seed {SEED}, {EXAMPLES} examples: repeat with CITYHUB_FUZZ_SEED={SEED} "
                f"CITYHUB_FUZZ_EXAMPLES={EXAMPLES} .venv/bin/pytest '{item.nodeid}'",
            )
        )
