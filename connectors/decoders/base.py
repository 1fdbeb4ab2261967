"""What a payload decoder is: bytes of a LoRaWAN application payload in, named fields out."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class PayloadDecoder(Protocol):
    """Decodes a binary payload. Pure; raises ``UndecodablePayload`` saying what is wrong."""

    name: str

    def decode(self, payload: bytes, f_port: int | None) -> dict[str, Any]: ...
