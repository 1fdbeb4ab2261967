"""The body of a webhook POST: a batch's items in cityhub's envelope.

Pure. Items are the bytes of canonical observations or aggregates exactly as the worker wrote
them; the body splices them in without decoding and encoding them again::

    {"type": "cityhub.observations", "tenant": "...", "subscription": "...",
     "items": [<observation>, ...]}
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from cityhub.connectors.sinks.base import EVENT_TYPES, Item


def webhook_body(source: str, tenant: str, subscription_id: str, items: Sequence[Item]) -> bytes:
    """The JSON body of ``items`` of a subscription of ``source`` (observations, aggregates)."""
    head = orjson.dumps(
        {"type": EVENT_TYPES[source], "tenant": tenant, "subscription": subscription_id}
    )
    return b"".join((head[:-1], b',"items":[', b",".join(i.value for i in items), b"]}"))
