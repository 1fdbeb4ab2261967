"""docs/quality.md's limits table is the catalogue's (schemas/quality_limits.py): every
quantity with its numbers and reason, so the page cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from cityhub.schemas.quality import QUALITY_FLAGS
from cityhub.schemas.quality_limits import CATALOGUE_LIMITS
from cityhub.schemas.quantities import QUANTITIES

DOC = Path(__file__).resolve().parents[2] / "docs" / "quality.md"
NONE = "\N{EN DASH}"
"""What the table shows where a check has no limit."""


def _number(x: float | None) -> str:
    if x is None:
        return NONE
    if float(x).is_integer():
        return f"{int(x):,}".replace(",", " ")
    return f"{x:g}"


def _flat(seconds: int | None) -> str:
    if seconds is None:
        return NONE
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds} s"


def test_the_limits_table_is_the_catalogue() -> None:
    text = DOC.read_text(encoding="utf-8")
    for quantity, entry in CATALOGUE_LIMITS.items():
        limits = entry.limits
        row = (
            f"| `{quantity}` | {QUANTITIES[quantity] or NONE} | {_number(limits.min)} | "
            f"{_number(limits.max)} | {_number(limits.max_rate_per_second)} | "
            f"{_flat(limits.flat_line_seconds)} | {entry.reason} |"
        )
        assert row in text, f"docs/quality.md: the row of {quantity} should read\n{row}"


def test_every_flag_is_explained() -> None:
    text = DOC.read_text(encoding="utf-8")
    for flag in QUALITY_FLAGS:
        assert f"| `{flag}` |" in text
