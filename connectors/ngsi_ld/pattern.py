"""Regular expressions from a query (NGSI-LD ``idPattern`` and ``q``'s ``~=``), matched in time
linear in the text, whatever the pattern.

Python's ``re`` backtracks: ``^urn:ngsi-ld:(.+)+!`` against a device's URN takes seconds, one
more ``.`` hours, and the matching holds the event loop of the whole API process (every other
request, ``SIGTERM`` too) and cannot be interrupted. A length limit does not help: a 20-character
pattern is enough. So the patterns a client sends are compiled with RE2 (``google-re2``, the
library Google's own services use for untrusted patterns), which never backtracks: an automaton
over the text, in time linear in its length and with memory bounded per pattern. Its syntax is
that of Perl and Python without backreferences and lookaround (which cannot be matched in linear
time); a pattern using them is refused with a reason, as is one whose program is too large
(``.{1000}``): matching costs the text's length times, at worst, the program's size.
"""

from __future__ import annotations

from typing import Final, Protocol

import re2

MAX_PATTERN_LENGTH: Final = 256
"""Characters of a pattern at most."""
MAX_PATTERN_MEMORY: Final = 1 << 20
"""Bytes RE2 may use for one compiled pattern (its default is 8 MiB)."""
MAX_PROGRAM_SIZE: Final = 2000
"""Instructions of a compiled pattern at most: matching is linear in the text, times at worst
the program's size (``.{250}`` has 2 004, ``.*:aq-.*`` 20)."""

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is the client's error, answered, not logged
_OPTIONS.max_mem = MAX_PATTERN_MEMORY


class TextPattern(Protocol):
    """A compiled pattern, as ``re.Pattern`` offers it (RE2's has the same methods)."""

    def search(self, text: str) -> object | None: ...

    def fullmatch(self, text: str) -> object | None: ...


class _Linear:
    """An RE2 pattern on Python text: RE2 matches UTF-8, which a lone surrogate (``"\\ud800"``)
    is not, so such a text is matched with it replaced rather than raising."""

    __slots__ = ("_compiled",)

    def __init__(self, compiled: TextPattern) -> None:
        self._compiled = compiled

    def search(self, text: str) -> object | None:
        try:
            return self._compiled.search(text)
        except UnicodeEncodeError:
            return self._compiled.search(_valid(text))

    def fullmatch(self, text: str) -> object | None:
        try:
            return self._compiled.fullmatch(text)
        except UnicodeEncodeError:
            return self._compiled.fullmatch(_valid(text))


def _valid(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


class PatternRefused(ValueError):
    """The pattern is too long, not a regular expression, or uses what RE2 cannot match in
    linear time; the message says which, for the client."""


def compile_pattern(pattern: str) -> TextPattern:
    """``pattern`` compiled for matching in linear time; raises ``PatternRefused``."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternRefused(f"is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        compiled: TextPattern = re2.compile(pattern, options=_OPTIONS)
    except UnicodeEncodeError:
        raise PatternRefused("is not a regular expression: it is not valid Unicode") from None
    except re2.error as exc:
        why = exc.args[0] if exc.args else "not accepted"
        if isinstance(why, bytes):
            why = why.decode("utf-8", "replace")
        raise PatternRefused(
            f"is not a regular expression cityhub matches: {why} (RE2 syntax: no "
            "backreferences, no lookaround, repetitions up to 1000)"
        ) from None
    size: int = compiled.programsize  # type: ignore[attr-defined]  # RE2's, not in the Protocol
    if size > MAX_PROGRAM_SIZE:
        raise PatternRefused(
            f"is too large a regular expression: {size} RE2 instructions, at most "
            f"{MAX_PROGRAM_SIZE} (a bounded repetition counts as often as it repeats)"
        )
    return _Linear(compiled)
