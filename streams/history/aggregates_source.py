"""The aggregates API's sources when the history store is enabled: ``HistoryAggregateReader``
reads a group's windows from the store's ``aggregates`` table, and ``RoutedAggregates`` sends
each query to the store or to Kafka (``cityhub.streams.aggregation.query.reads_history``).

Both answer as the Kafka reader does (``AggregateSource``): the current revision of every
window as the aggregate document, in the same order, the same bound on the number of windows
(``aggregation.query_max_items``: past it, ``QueryRejected``), ``AggregatesUnavailable`` when
the store cannot be read within ``aggregation.query_timeout_seconds``. Visibility is left to
the caller, as with Kafka: every window of the group is returned, personal ones included, and
the API applies the tenant rule and the purpose check to them (``cityhub.streams.api.aggregates``).

The store is behind Kafka by the writer's lag (a batch: normally well under a second), which is
why short recent ranges keep reading Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import psycopg

from cityhub.schemas.errors import ConfigurationError
from cityhub.schemas.settings import Settings
from cityhub.streams.aggregation.query import (
    AggregateQuery,
    AggregateSource,
    AggregatesUnavailable,
    QueryLimits,
    QueryRejected,
    ScanResult,
    reads_history,
)
from cityhub.streams.history.aggregate_queries import AggregateFilter, Group, as_utc
from cityhub.streams.history.connection import ConnectionPool
from cityhub.streams.history.queries import ReadRejected, Viewer
from cityhub.streams.history.reads import aggregates

log = logging.getLogger("cityhub.aggregates")

SOURCE = "history"


def history_limits(settings: Settings) -> QueryLimits:
    """The aggregation query limits with the store's longer range."""
    return replace(
        QueryLimits.from_settings(settings.aggregation),
        max_range_seconds=settings.history.query_max_range_days * 24 * 3600,
    )


class HistoryAggregateReader:
    """``read(query)`` from the history store (an ``AggregateSource``). Connects at the first
    query; at most ``aggregation.query_concurrency`` queries read at once."""

    def __init__(self, settings: Settings, *, pool: ConnectionPool | None = None) -> None:
        self._limits = history_limits(settings)
        self._own_pool = pool is None
        self._pool = pool or ConnectionPool(
            settings, size=self._limits.concurrency, application_name="cityhub-aggregates"
        )

    @property
    def limits(self) -> QueryLimits:
        return self._limits

    async def read(self, query: AggregateQuery) -> ScanResult:
        """The current revisions of the windows ``query`` asks for, from the store."""
        filt = AggregateFilter(
            Group.of_record_key(query.group),
            as_utc(query.from_ms),
            as_utc(query.to_ms),
            quantity=query.quantity,
            window_size=query.window_size,
        )
        timeout = self._limits.timeout_seconds
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout), self._pool.connection() as conn:
                docs = await aggregates(
                    conn,
                    Viewer.admin(),  # the caller applies the tenant rule, as with Kafka
                    filt,
                    include_personal=True,  # and the purpose check
                    limit=self._limits.max_items,
                )
        except ReadRejected as exc:
            raise QueryRejected(exc.detail, field=exc.field) from None
        except TimeoutError as exc:
            raise AggregatesUnavailable(
                f"reading the aggregates of {query.group} from history took longer than "
                f"{timeout:g} s"
            ) from exc
        except (psycopg.Error, OSError) as exc:
            raise AggregatesUnavailable(
                f"the history store failed the read: {type(exc).__name__}"
            ) from exc
        except ConfigurationError as exc:  # no password file (yet): unavailable, not a 500
            log.warning("aggregates cannot be read from history: %s", exc)
            # The caller sees no path of this machine; the log says what to do.
            raise AggregatesUnavailable("the history store is not configured") from exc
        finally:
            log.debug(
                "aggregates of %s read from history in %.3f s",
                query.group,
                time.perf_counter() - started,
            )
        return ScanResult(
            items=docs, scanned=len(docs), partition=-1, stopped_early=False, source=SOURCE
        )

    async def close(self) -> None:
        if self._own_pool:
            await self._pool.close()


class RoutedAggregates:
    """Short recent ranges from ``kafka``, every other from ``history`` (an ``AggregateSource``
    whose limits are the store's: the longer range is checked before the route is known)."""

    def __init__(
        self,
        kafka: AggregateSource,
        history: AggregateSource,
        *,
        kafka_window_hours: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kafka = kafka
        self.history = history
        self._kafka_window_ms = round(kafka_window_hours * 3600 * 1000)
        self._clock = clock

    @property
    def limits(self) -> QueryLimits:
        return self.history.limits

    def source_for(self, query: AggregateQuery) -> AggregateSource:
        """The source that serves ``query`` now."""
        now_ms = round(self._clock() * 1000)
        if reads_history(query, now_ms=now_ms, kafka_window_ms=self._kafka_window_ms):
            return self.history
        return self.kafka

    async def read(self, query: AggregateQuery) -> ScanResult:
        return await self.source_for(query).read(query)

    async def close(self) -> None:
        try:
            await self.kafka.close()
        finally:
            await self.history.close()
