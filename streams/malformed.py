"""Why a view skipped a record of its compacted topic, in words fit for a log line.

A pydantic ``ValidationError`` is summarised by its number of invalid fields (its text repeats
the values, which may be personal or secret); any other error by its message, which the views
word themselves and never fill with a record's value.
"""

from __future__ import annotations

from pydantic import ValidationError


def malformed_reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return f"{exc.error_count()} invalid field(s)"
    return str(exc)
