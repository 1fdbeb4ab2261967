"""cityhub's Kafka topics, named from the configured prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names; ``Topics.for_prefix("cityhub").raw == "cityhub.raw"``."""

    raw: str
    observations: str
    deadletter: str
    registry: str
    """Compacted: the device registry's records keyed by kind and id (see streams/registry)."""
    subscriptions: str
    """Compacted: subscriptions keyed ``subscription/<tenant>/<id>`` (see streams/subscriptions)."""

    @classmethod
    def for_prefix(cls, prefix: str) -> Topics:
        return cls(
            raw=f"{prefix}.raw",
            observations=f"{prefix}.observations",
            deadletter=f"{prefix}.deadletter",
            registry=f"{prefix}.registry",
            subscriptions=f"{prefix}.subscriptions",
        )
