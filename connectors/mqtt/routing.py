"""Which configured subscription (and so which ingest format) an MQTT topic belongs to."""

from __future__ import annotations

from collections.abc import Sequence

from cityhub.schemas.settings import MqttSubscription

_CACHE_LIMIT = 200_000


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic-filter matching (``+`` one level, ``#`` the rest), as the broker does it.

    A leading ``$share/<group>/`` is ignored, and topics starting with ``$`` only match filters
    that start with ``$`` too (MQTT 4.7.2).
    """
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2] if topic_filter.count("/") >= 2 else ""
    if topic.startswith("$") and not topic_filter.startswith("$"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True
        if i >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[i]:
            return False
    return len(filter_levels) == len(topic_levels)


class TopicRouter:
    """Maps a topic to the first subscription whose filter matches it, with a bounded cache."""

    __slots__ = ("_cache", "_subscriptions")

    def __init__(self, subscriptions: Sequence[MqttSubscription]) -> None:
        self._subscriptions = tuple(subscriptions)
        self._cache: dict[str, MqttSubscription | None] = {}

    def route(self, topic: str) -> MqttSubscription | None:
        """The subscription for ``topic``, or None when no configured filter matches."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = next((s for s in self._subscriptions if topic_matches(s.filter, topic)), None)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[topic] = found
        return found
