"""The subscriptions' delivery statuses, as the API process reads them from the
``subscription-status`` topic (``cityhub.schemas.subscription_status``). Pure: no I/O.

``apply`` never raises: a malformed record is skipped and counted. A status is only as fresh as
its ``at``: ``of`` hands it back with its age so that a page can say "as of 3 s ago", or that no
delivery process reported the subscription (a Kafka-topic or live-stream subscription has no
task, so none ever does).
"""

from __future__ import annotations

import json
import logging

from pydantic import ValidationError

from cityhub.schemas.subscription_status import SubscriptionStatus

log = logging.getLogger("cityhub.delivery.status")


class SubscriptionStatusView:
    """The latest status record of each subscription."""

    def __init__(self) -> None:
        self._offset = -1
        self._malformed = 0
        self._statuses: dict[tuple[str, str], SubscriptionStatus] = {}

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def malformed(self) -> int:
        return self._malformed

    def count(self) -> int:
        return len(self._statuses)

    def apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one record (a tombstone forgets the subscription's status). Never raises."""
        self._offset = offset
        try:
            kind, _, rest = key.partition("/")
            tenant, _, subscription = rest.partition("/")
            if kind != "status" or not tenant or not subscription:
                raise ValueError("not a status key")
            if value is None:
                self._statuses.pop((tenant, subscription), None)
                return
            record = SubscriptionStatus.model_validate(json.loads(value))
            if record.key != key:
                raise ValueError(f"key does not match the record's ({record.key})")
            self._statuses[(tenant, subscription)] = record
        except (ValidationError, ValueError, TypeError) as exc:
            self._malformed += 1
            reason = (
                f"{exc.error_count()} invalid field(s)"
                if isinstance(exc, ValidationError)
                else str(exc)
            )
            log.warning(
                "skipping malformed status record at offset %d (key %r): %s",
                offset,
                key[:200],
                reason,
            )

    def of(self, tenant: str, subscription: str) -> SubscriptionStatus | None:
        """The subscription's latest status, if a delivery process wrote one."""
        return self._statuses.get((tenant, subscription))


__all__ = ["SubscriptionStatusView"]
