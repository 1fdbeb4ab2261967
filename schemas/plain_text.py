"""Text that reads as it is stored: the rule every free text a client gives follows (names,
titles, descriptions, purposes, reasons, evidence).

Refused everywhere: C0 and C1 control characters, the line and paragraph separators (U+2028,
U+2029), a byte-order mark, and the bidirectional embeddings, overrides and isolates
(U+202A-U+202E, U+2066-U+2069), which make the text after them read otherwise than it is
stored (``Trojan Source``: a device named ``meter<U+202E>lanif`` shows as ``meterfinal``) on
the console, the public register and catalogue, and in a terminal. One-line text refuses line
breaks and tabs too; text of several lines (descriptions) keeps them. Lone surrogates are
refused by both: they cannot be stored as UTF-8.

Let through: the implicit direction marks (U+200E, U+200F, U+061C) and the zero-width
joiners (U+200C, U+200D), which names in Arabic, Hebrew and Persian need; a mark sets the
direction of the neutral characters beside it, it does not reverse what follows. Where text is
shown to a terminal, the CLI escapes them too (``registry/cli/output.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import AfterValidator, ValidationInfo

INVISIBLE = "\ufeff\u202a-\u202e\u2066-\u2069"
"""A byte-order mark and the bidirectional embeddings, overrides and isolates."""
_ONE_LINE_REFUSED = re.compile(rf"[\x00-\x1f\x7f-\x9f\u2028\u2029{INVISIBLE}]")
_LINES_REFUSED = re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029{INVISIBLE}]")

ONE_LINE_RULE = "must be one line without control characters, separators or bidirectional overrides"
LINES_RULE = (
    "must not contain control characters (line breaks and tabs are allowed), separators or "
    "bidirectional overrides"
)


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def one_line(value: str) -> str:
    """``value`` if it is one line that reads as it is stored; ValueError (which never repeats
    the value) otherwise."""
    if _ONE_LINE_REFUSED.search(value):
        raise ValueError(ONE_LINE_RULE)
    return _valid_unicode(value)


def lines(value: str) -> str:
    """``value`` if it is text of one or more lines that reads as it is stored; ValueError
    otherwise."""
    if _LINES_REFUSED.search(value):
        raise ValueError(LINES_RULE)
    return _valid_unicode(value)


STORED: dict[str, Any] = {"stored": True}
"""The validation context of a record read back from its store: text stored before a rule was
tightened still loads (an offer, and the agreements that copy it, must not vanish from a
running hub because its title once took a line break); it is escaped wherever it is shown."""


def _unless_stored(check: Callable[[str], str]) -> AfterValidator:
    def validate(value: str, info: ValidationInfo) -> str:
        if isinstance(info.context, dict) and info.context.get("stored"):
            return value
        return check(value)

    return AfterValidator(validate)


OneLine = _unless_stored(one_line)
"""A pydantic validator: ``Annotated[str, ..., OneLine]``."""
Lines = _unless_stored(lines)
"""A pydantic validator: ``Annotated[str, ..., Lines]``."""
