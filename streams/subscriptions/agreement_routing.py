"""What both subscription routers ask about agreements (issue 13): which subscriptions may take
another tenant's items under an agreement, and what an offer calls the items of each source.

Pure: no I/O. Shared by the indexed router the worker runs (``router.py``) and the linear
reference it is checked against (``linear_router.py``), so that the two apply one rule.
"""

from __future__ import annotations

from cityhub.schemas.sharing import ItemKind
from cityhub.schemas.subscription import DeliverySpec, Serving, Source, Subscription

KIND_OF_SOURCE = {
    Source.OBSERVATIONS: ItemKind.OBSERVATIONS,
    Source.AGGREGATES: ItemKind.AGGREGATES,
}
"""What an offer calls the items of each source."""


def takes_agreement_items(record: Subscription) -> bool:
    """Whether a subscription may receive items under its tenant's agreements: one served by a
    delivery task or a live stream, which check each item again before sending it. Not one read
    from its Kafka topic, and, failing closed, not one of a kind this process does not know
    (its delivery parsed as the base model, which cannot say how it is served)."""
    delivery = record.delivery
    return type(delivery) is not DeliverySpec and delivery.serving is not Serving.TOPIC
