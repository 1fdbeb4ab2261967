"""Text that reads as it is stored: the rule every free text a client gives follows (names,
titles, descriptions, purposes, reasons, evidence, keywords, units).

Refused everywhere: every character Unicode classes as a control (C0, C1), a format character
(the bidirectional embeddings, overrides, isolates and marks, U+061C, U+200E, U+200F,
U+202A-U+202E, U+2066-U+2069; a byte-order mark; zero-width spaces; soft hyphens; tag
characters), a line or paragraph separator, a private-use character or a lone surrogate:
characters that make text read otherwise than it is stored (``Trojan Source``: a device named
``meter<U+202E>lanif`` shows as ``meterfinal``; ``room 1<U+200F>-2`` shows as ``room 12-``)
or look like nothing at all (two names that read alike), on the console, the public register
and catalogue, and in a terminal. One-line text refuses line breaks and tabs too; text of
several lines (descriptions) keeps them.

Let through: letters, marks, digits, punctuation, symbols and spaces of every script, and the
zero-width non-joiner and joiner (U+200C, U+200D), which Persian and Indic names and emoji need.
``str.isprintable`` decides quickly for most text; only the rest is looked at character by
character.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from pydantic import AfterValidator, ValidationInfo

_JOINERS = frozenset("\u200c\u200d")
_LINE_BREAKS = frozenset("\n\r\t")

ONE_LINE_RULE = (
    "must be one line without control or invisible format characters (bidirectional marks "
    "and overrides, zero-width spaces), separators or lone surrogates"
)
LINES_RULE = (
    "must not contain control or invisible format characters (bidirectional marks and "
    "overrides, zero-width spaces), separators or lone surrogates (line breaks and tabs are "
    "allowed)"
)


def readable(char: str) -> bool:
    """Whether ``char`` shows as itself: printable, a space, a joiner, or a character this
    Python's Unicode database does not know yet (an emoji newer than it; not a noncharacter)."""
    if char.isprintable() or char in _JOINERS:
        return True
    category = unicodedata.category(char)
    return category == "Zs" or (category == "Cn" and not _noncharacter(ord(char)))


def _noncharacter(code: int) -> bool:
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def _holds_unreadable(value: str, allowed: frozenset[str] = frozenset()) -> bool:
    if value.isprintable():
        return False
    return any(not readable(c) and c not in allowed for c in value)


def one_line(value: str) -> str:
    """``value`` if it is one line that reads as it is stored; ValueError (which never repeats
    the value) otherwise."""
    if _holds_unreadable(value):
        raise ValueError(ONE_LINE_RULE)
    return value


def lines(value: str) -> str:
    """``value`` if it is text of one or more lines that reads as it is stored; ValueError
    otherwise."""
    if _holds_unreadable(value, _LINE_BREAKS):
        raise ValueError(LINES_RULE)
    return value


def shown(value: str) -> str:
    """``value`` as a person may be shown it: each character that does not read as itself
    (stored before the rule, or from a device) written as its ``\\uXXXX`` escape; line breaks
    and tabs kept (a description's lines)."""
    if value.isprintable():
        return value
    return "".join(c if readable(c) or c in _LINE_BREAKS else escaped(c) for c in value)


def escaped(char: str) -> str:
    """``char`` as its Python escape: ``\\u202e``, ``\\U000e0041``."""
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


STORED: dict[str, Any] = {"stored": True}
"""The validation context of a record read back from its store: text stored before a rule was
tightened still loads (an offer, and the agreements that copy it, must not vanish from a
running hub because its title once took a line break); it is escaped wherever it is shown."""


def stored(info: ValidationInfo) -> bool:
    """Whether a validation reads a record back from its store (``context=STORED``)."""
    return isinstance(info.context, dict) and bool(info.context.get("stored"))


def _unless_stored(check: Callable[[str], str]) -> AfterValidator:
    def validate(value: str, info: ValidationInfo) -> str:
        return value if stored(info) else check(value)

    return AfterValidator(validate)


OneLine = _unless_stored(one_line)
"""A pydantic validator: ``Annotated[str, ..., OneLine]``."""
Lines = _unless_stored(lines)
"""A pydantic validator: ``Annotated[str, ..., Lines]``."""
