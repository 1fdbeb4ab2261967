"""Subscription status records from a delivery process's own figures. Pure: no I/O.

The delivery tasks already keep every figure the console shows in their Prometheus metrics
(``cityhub.streams.delivery.metrics``): state, lag in messages and seconds, delivered, failed,
dead-lettered and dropped items. ``figures_of`` reads them back (one pass over each metric's
samples, not a look-up per subscription), and ``StatusRounds`` turns each round of figures into
the ``SubscriptionStatus`` records worth writing: a subscription whose figures changed, one not
written for ``heartbeat`` seconds (so that a reader can tell a fresh record from a stale one),
and a tombstone for one this process wrote that is gone from the subscriptions. The delivery
rate is the delivered count's change over the time between two rounds (None until there are
two).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from cityhub.schemas.subscription import SubscriptionState
from cityhub.schemas.subscription_status import SubscriptionStatus, status_key
from cityhub.schemas.timefmt import rfc3339

Key = tuple[str, str]
"""(tenant, subscription id)."""

DEFAULT_HEARTBEAT = 30.0


@dataclass(frozen=True, slots=True)
class Figures:
    """What a delivery process knows of one subscription."""

    state: SubscriptionState = SubscriptionState.ACTIVE
    lag_messages: int = 0
    lag_seconds: float = 0.0
    delivered: int = 0
    failed: int = 0
    dead_lettered: int = 0
    dropped: int = 0


_FIELDS = {
    "cityhub_subscription_lag_messages": "lag_messages",
    "cityhub_subscription_lag_seconds": "lag_seconds",
    "cityhub_subscription_delivered_total": "delivered",
    "cityhub_subscription_failed_total": "failed",
    "cityhub_subscription_deadlettered_total": "dead_lettered",
    "cityhub_subscription_dropped_total": "dropped",
}
_STATE = "cityhub_subscription_state"


def figures_of(families: Iterable[Metric]) -> dict[Key, Figures]:
    """Each subscription's figures from the samples of the delivery metrics' families (what
    ``collect()`` of each metric gives). Samples of other names are ignored."""
    values: dict[Key, dict[str, object]] = {}
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            key = (labels.get("tenant", ""), labels.get("subscription", ""))
            if not all(key):
                continue
            if sample.name == _STATE:
                if sample.value == 1:
                    try:
                        values.setdefault(key, {})["state"] = SubscriptionState(labels["state"])
                    except (KeyError, ValueError):
                        continue
                continue
            field = _FIELDS.get(sample.name)
            if field is None:
                continue
            number = sample.value
            values.setdefault(key, {})[field] = (
                max(0.0, float(number)) if field == "lag_seconds" else max(0, int(number))
            )
    return {key: Figures(**fields) for key, fields in values.items()}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _Written:
    figures: Figures
    rate: float | None
    at: float


class StatusRounds:
    """Decides, round by round, which status records a delivery process writes."""

    def __init__(self, *, process: str, since: float, heartbeat: float = DEFAULT_HEARTBEAT) -> None:
        self.process = process
        self._since = rfc3339(since)
        self._heartbeat = heartbeat
        self._written: dict[Key, _Written] = {}
        self._last: dict[Key, tuple[int, float]] = {}
        """Each subscription's delivered count at the previous round, and when."""

    def round(
        self,
        figures: Mapping[Key, Figures],
        mine: Iterable[Key],
        present: Iterable[Key],
        now: float,
    ) -> tuple[list[SubscriptionStatus], list[str]]:
        """``(records to write, keys to tombstone)`` for this round. ``mine``: the subscriptions
        this process delivers or measures now (a figure missing for one counts as zeros);
        ``present``: every subscription that exists (a key this process wrote that is not
        among them gets a tombstone)."""
        records: list[SubscriptionStatus] = []
        for key in sorted(set(mine)):
            fig = figures.get(key, Figures())
            rate = self._rate(key, fig.delivered, now)
            written = self._written.get(key)
            unchanged = (
                written is not None and written.figures == fig and _same_rate(written.rate, rate)
            )
            if unchanged and written is not None and now - written.at < self._heartbeat:
                continue
            self._written[key] = _Written(fig, rate, now)
            records.append(self._record(key, fig, rate, now))
        exists = set(present)
        gone = sorted(k for k in self._written if k not in exists)
        for key in gone:
            self._written.pop(key, None)
            self._last.pop(key, None)
        return records, [status_key(*key) for key in gone]

    def failed(self, records: Iterable[SubscriptionStatus]) -> None:
        """These records were not written: write them again next round."""
        for record in records:
            self._written.pop((record.tenant, record.subscription), None)

    def _rate(self, key: Key, delivered: int, now: float) -> float | None:
        last = self._last.get(key)
        self._last[key] = (delivered, now)
        if last is None:
            return None  # one count says nothing about a rate
        count, at = last
        if now <= at or delivered < count:
            return self._written[key].rate if key in self._written else None
        return (delivered - count) / (now - at)

    def _record(self, key: Key, fig: Figures, rate: float | None, now: float) -> SubscriptionStatus:
        return SubscriptionStatus(
            tenant=key[0],
            subscription=key[1],
            state=fig.state,
            lag_messages=fig.lag_messages,
            lag_seconds=round(fig.lag_seconds, 3),
            delivered=fig.delivered,
            failed=fig.failed,
            dead_lettered=fig.dead_lettered,
            dropped=fig.dropped,
            rate_per_second=None if rate is None else round(rate, 3),
            process=self.process,
            since=self._since,
            at=rfc3339(now),
        )


def _same_rate(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return round(a, 2) == round(b, 2)


__all__ = ["DEFAULT_HEARTBEAT", "Figures", "Key", "StatusRounds", "figures_of"]
