"""Replaying a subscription: the request a subscriber sends (``ReplaySpec``, for
``POST .../replay``) and the request as the subscription record carries it (``Replay``).

Pure: pydantic models, no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from cityhub.schemas.errors import InvalidTimestamp
from cityhub.schemas.timefmt import FORM, parse_rfc3339


class ReplaySpec(BaseModel):
    """Where a subscription's delivery restarts from: a time or an offset of its topic (one of
    them). Items are delivered again from there; consumers recognise them by their ids."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    from_time: AwareDatetime | None = None
    """The first item written to the subscription's topic at or after this time: RFC 3339 with
    an offset, from 1970-01-01T00:00:00Z up to (not including) 2100-01-01T00:00:00Z."""
    from_offset: Annotated[int, Field(ge=0, strict=True)] | None = None
    """An offset of the subscription's topic (one partition); clipped to what Kafka still has."""

    @field_validator("from_time", mode="before")
    @classmethod
    def _from_time_in_range(cls, value: Any) -> Any:
        # pydantic's own parser takes years 0001 to 9999 (whose offsets overflow when the time
        # is converted to UTC) and epoch numbers: cityhub's parser and range come first.
        if value is None or (isinstance(value, datetime) and value.tzinfo is None):
            return value  # absent, or naive: AwareDatetime says what is wrong
        try:
            if isinstance(value, datetime):
                return parse_rfc3339(value.isoformat())
            if isinstance(value, str):
                return parse_rfc3339(value)
        except InvalidTimestamp as exc:
            raise ValueError(exc.why) from None  # why: no input value in an API answer
        raise ValueError(f"expected {FORM}")

    @model_validator(mode="after")
    def _exactly_one(self) -> ReplaySpec:
        if (self.from_time is None) == (self.from_offset is None):
            raise ValueError("give exactly one of from_time and from_offset")
        return self


class Replay(BaseModel):
    """A replay request as the subscription record carries it. The delivery task that owns the
    subscription applies each ``generation`` once: it seeks, then commits the new position with
    the generation in the commit's metadata, so a restarted task does not apply it again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generation: int = Field(ge=1)
    from_time: str | None = None
    """RFC 3339."""
    from_offset: int | None = None
    requested_at: str
