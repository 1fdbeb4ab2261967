"""A subscription's delivery status as its delivery process last saw it: the value on the
compacted ``<prefix>.subscription-status`` topic, keyed ``status/<tenant>/<id>``.

The delivery process that runs a subscription's task (``cityhub deliver``) knows its state, lag,
and how much it delivered and failed; the API process does not. So every delivery process
writes, every few seconds, the status of each subscription it delivers (and of the paused
ones, whose lag it measures), and the API follows the topic (``cityhub.streams.delivery.status``
and ``status_publisher``). Counts are the writing process's since it started (``since``): a
restart starts them again, ``at`` says how fresh the record is.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cityhub.schemas.subscription import SubscriptionState

STATUS_VERSION = 1


def status_key(tenant: str, subscription: str) -> str:
    """The record's key on the status topic."""
    return f"status/{tenant}/{subscription}"


class SubscriptionStatus(BaseModel):
    """One subscription's delivery figures, from the process that delivers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = STATUS_VERSION
    tenant: str = Field(min_length=1, max_length=63)
    subscription: str = Field(min_length=1, max_length=63)
    state: SubscriptionState
    """``active``, ``paused`` or ``failing`` (the sink keeps failing): the task's own state."""
    lag_messages: int = Field(ge=0)
    """Records of the subscription's topic not yet delivered (nor dropped)."""
    lag_seconds: float = Field(ge=0)
    """Age of the oldest record not yet delivered; 0 when caught up."""
    delivered: int = Field(ge=0)
    """Items delivered since ``since``."""
    failed: int = Field(ge=0)
    """Failed delivery attempts since ``since`` (each attempt of a batch counts once)."""
    dead_lettered: int = Field(ge=0)
    """Items given up on and written to the dead letters since ``since``."""
    dropped: int = Field(ge=0)
    """Items dropped by a full queue (``on_full: drop_oldest``) since ``since``."""
    rate_per_second: float | None = Field(default=None, ge=0)
    """Items delivered per second between the writing process's last two measurements (every
    5 s); None until it has two."""
    process: str = Field(min_length=1, max_length=200)
    since: str
    """When the writing process started counting (RFC 3339)."""
    at: str
    """When this record was made (RFC 3339)."""

    @property
    def key(self) -> str:
        return status_key(self.tenant, self.subscription)


__all__ = ["STATUS_VERSION", "SubscriptionStatus", "status_key"]
