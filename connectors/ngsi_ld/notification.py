"""The bodies of NGSI-LD webhook deliveries: a Notification, or the entities a broker upserts.

``notification_body`` is what ETSI GS CIM 009 (5.3.1, 5.2.14) sends a subscriber::

    {"id": "urn:ngsi-ld:Notification:<uuid>", "type": "Notification",
     "subscriptionId": "urn:ngsi-ld:Subscription:<tenant>:<subscription id>",
     "notifiedAt": "2026-12-03T10:00:00.000Z", "data": [<entity fragment>, ...],
     "@context": ...}

Each fragment is the entity of one observation with the one attribute it updates
(``entities.fragment``). The body is ``application/ld+json`` and carries its ``@context``
(cityhub's context document's URL when the deployment names one, else the terms inline):
receivers that read ``application/json`` ignore the member.

``upsert_body`` is the same fragments as a JSON array, each with its ``@context``: the body of
``POST /ngsi-ld/v1/entityOperations/upsert?options=update``, which is how a context broker
(Orion-LD, Scorpio) takes data in; a webhook subscription pointed at that URL feeds it.

Pure.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from cityhub.connectors.ngsi_ld.context import context_value

NOTIFICATION_NAMESPACE = uuid.UUID("8d3f6c1a-2b7e-5f0a-9c4d-1e2f3a4b5c6d")
"""Notification ids are uuid5(this, batch key): every attempt of one batch has the same id,
so a receiver can deduplicate. Changing it changes every id: never do."""


def subscription_urn(tenant: str, subscription_id: str) -> str:
    """The NGSI-LD id of a cityhub subscription: ``urn:ngsi-ld:Subscription:<tenant>:<id>``."""
    return f"urn:ngsi-ld:Subscription:{tenant}:{subscription_id}"


def notification_id(batch_key: str) -> str:
    """The Notification id of a batch (the same on every attempt of it)."""
    return f"urn:ngsi-ld:Notification:{uuid.uuid5(NOTIFICATION_NAMESPACE, batch_key)}"


def _context(context_url: str | None) -> Any:
    return context_value() if context_url is None else context_url


def notification_body(
    *,
    tenant: str,
    subscription_id: str,
    batch_key: str,
    notified_at: str,
    fragments: Sequence[dict[str, Any]],
    context_url: str | None = None,
) -> dict[str, Any]:
    """The Notification of a batch's entity fragments (see the module docstring)."""
    return {
        "id": notification_id(batch_key),
        "type": "Notification",
        "subscriptionId": subscription_urn(tenant, subscription_id),
        "notifiedAt": notified_at,
        "data": list(fragments),
        "@context": _context(context_url),
    }


def merged(fragments: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fragments of one entity merged into one, in the order each entity first appears;
    of two instances of one attribute, the later ``observedAt`` wins (a batch upsert takes
    each entity once)."""
    by_id: dict[str, dict[str, Any]] = {}
    for fragment in fragments:
        held = by_id.setdefault(fragment["id"], {})
        for name, value in fragment.items():
            old = held.get(name)
            if (
                isinstance(old, dict)
                and isinstance(value, dict)
                and str(old.get("observedAt", "")) > str(value.get("observedAt", ""))
            ):
                continue
            held[name] = value
    return list(by_id.values())


def upsert_body(
    fragments: Sequence[dict[str, Any]], *, context_url: str | None = None
) -> list[dict[str, Any]]:
    """The fragments as a batch upsert's body: one entity each (``merged``), each with its
    ``@context``."""
    context = _context(context_url)
    return [{**entity, "@context": context} for entity in merged(fragments)]
