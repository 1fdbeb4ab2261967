"""RFC 3339 timestamps in UTC, the only time format on cityhub's topics."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: float) -> str:
    """Format seconds since the epoch as RFC 3339 UTC with millisecond precision (``...Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rfc3339_from_datetime(dt: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC; a naive one is taken to be UTC already."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 / ISO 8601 timestamp into an aware UTC datetime.

    Accepts ``Z`` and numeric offsets and any number of fractional digits (network servers send
    nanoseconds; Python keeps microseconds). Raises ValueError on anything else.
    """
    try:
        # The C fast path; takes "Z" and up to 6 fractional digits since Python 3.11.
        dt = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        if dt.tzinfo is None:
            raise ValueError(f"timestamp {text!r} has no UTC offset")
        return dt.astimezone(UTC)
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # Python's fromisoformat accepts at most 6 fractional digits before 3.12's looser parser.
    dot = s.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(s) and s[end].isdigit():
            end += 1
        s = s[: dot + 1] + s[dot + 1 : end][:6].ljust(6, "0") + s[end:]
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return dt.astimezone(UTC)
