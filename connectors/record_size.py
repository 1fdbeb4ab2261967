"""How many bytes a record takes in a Kafka batch of its own: what Kafka compares with a
topic's ``max.message.bytes``. Pure, so that the cores that size what they make (the
normaliser's observations) need no Kafka client."""

from __future__ import annotations

Headers = list[tuple[str, bytes]]
"""A record's headers: (name, value) pairs."""

RECORD_OVERHEAD_BYTES = 128
"""An upper bound of what a record adds to its key, value and headers in a batch of its own:
the batch header (61 bytes), the record's length, attributes, timestamp and offset deltas and
the length prefixes of key, value and header count (at most 5 bytes each)."""
HEADER_OVERHEAD_BYTES = 10
"""An upper bound of the length prefixes of one header's name and value."""


def record_size(key: bytes | None, value: bytes | None, headers: Headers | None = None) -> int:
    """An upper bound of the bytes a record takes in a batch of its own, which is what Kafka
    compares with ``max.message.bytes`` when the record is alone in its batch."""
    size = RECORD_OVERHEAD_BYTES + (len(key) if key else 0) + (len(value) if value else 0)
    if headers:
        for name, header_value in headers:
            size += len(name.encode()) + len(header_value) + HEADER_OVERHEAD_BYTES
    return size
