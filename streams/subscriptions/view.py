"""The subscriptions' in-memory view: what the compacted subscriptions topic says.

Pure: no I/O. A store feeds it the topic's records in offset order with ``apply`` (as the
registry's view, ``streams/registry/view.py``); every API instance, and later every delivery
task, holds one. Subscriptions are few (thousands, not millions), so they are kept as the
validated ``Subscription`` records, per tenant, and listed by sorting the tenant's ids. Records
are read with the reader the store gives (``cityhub.connectors.sinks.validate_record``: every
registered delivery kind); the base model reads only kinds without options.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from cityhub.schemas.subscription import Subscription, record_key
from cityhub.streams.compacted_view import WHOLE_KEY, CompactedView

log = logging.getLogger("cityhub.subscriptions.view")

RecordReader = Callable[[dict[str, Any]], Subscription]
"""Validates a record's parsed JSON (pydantic's ValidationError when it does not)."""


class MalformedSubscription(ValueError):
    """A record on the subscriptions topic that the view cannot use (logged and counted)."""


class SubscriptionView(CompactedView):
    """The subscriptions after applying the topic's records up to ``offset``.

    ``apply`` never raises on a bad record: it logs it, counts it in ``malformed`` and moves on,
    so that one bad record cannot stop every instance from starting. The log line names the
    offset and key, never the value (it holds webhook secrets).
    """

    def __init__(self, *, read_record: RecordReader = Subscription.model_validate) -> None:
        super().__init__(log, "subscription record", key_chars=WHOLE_KEY)
        self._read_record = read_record
        self._by_tenant: dict[str, dict[str, Subscription]] = {}

    def _apply(self, key: str, value: bytes | None) -> None:
        """``value`` None is a tombstone for ``key`` (``subscription/<tenant>/<id>``), otherwise
        a ``Subscription``'s JSON whose key must be ``key``."""
        if value is None:
            self._delete(key)
        else:
            self._put(key, value)

    def _put(self, key: str, value: bytes) -> None:
        doc = json.loads(value)
        if not isinstance(doc, dict):
            raise MalformedSubscription("a record must be a JSON object")
        if doc.get("kind") != "subscription":
            raise MalformedSubscription(f"unknown kind {doc.get('kind')!r}")
        record = self._read_record(doc)
        if key != record_key(record):
            raise MalformedSubscription(f"key does not match the record's ({record_key(record)})")
        self._by_tenant.setdefault(record.tenant, {})[record.id] = record

    def _delete(self, key: str) -> None:
        kind, _, rest = key.partition("/")
        tenant, _, sub_id = rest.rpartition("/")
        if kind != "subscription" or not tenant or not sub_id:
            raise MalformedSubscription(f"tombstone of unknown key {key!r}")
        subs = self._by_tenant.get(tenant)
        if subs is not None:
            subs.pop(sub_id, None)
            if not subs:
                del self._by_tenant[tenant]

    # --- lookups ---------------------------------------------------------------------------
    def get(self, tenant: str, subscription_id: str) -> Subscription | None:
        """The tenant's subscription with this id, or None."""
        subs = self._by_tenant.get(tenant)
        return None if subs is None else subs.get(subscription_id)

    def of_tenant(self, tenant: str) -> list[Subscription]:
        """The tenant's subscriptions, in id order."""
        subs = self._by_tenant.get(tenant, {})
        return [subs[i] for i in sorted(subs)]

    def all(self) -> list[Subscription]:
        """Every subscription, by tenant and id (for the delivery tasks)."""
        return [s for tenant in sorted(self._by_tenant) for s in self.of_tenant(tenant)]

    def count(self) -> int:
        return sum(len(subs) for subs in self._by_tenant.values())
