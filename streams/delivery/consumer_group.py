"""What Kafka knows a subscription's delivery by: its consumer group and its commits' metadata.

Pure: names and strings only. Each subscription's delivery task reads in a consumer group of its
own (``group_id``), so its position and lag are its own and several delivery processes can stand
by for one another. A replay commits the new position with ``replay=<generation>`` as the
commit's metadata (``REPLAY_METADATA``), which a restarted task reads back
(``applied_generation``) so it never applies one generation twice.
"""

from __future__ import annotations

from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Subscription, subscription_topic

REPLAY_METADATA = "replay="


def group_id(settings: Settings, record: Subscription) -> str:
    """``<group_prefix>.<the subscription's topic>``: one group per subscription and per
    deployment (the topic carries the topic prefix)."""
    topic = subscription_topic(settings.kafka.topic_prefix, record.tenant, record.id)
    return f"{settings.delivery.group_prefix}.{topic}"


def applied_generation(metadata: str | None) -> int:
    """The replay generation a commit's metadata says was applied (0: none)."""
    if metadata and metadata.startswith(REPLAY_METADATA):
        tail = metadata[len(REPLAY_METADATA) :]
        # isdigit() alone takes Unicode digits ("²", "٣") that int() refuses or reads.
        if tail.isascii() and tail.isdigit():
            return int(tail)
    return 0
