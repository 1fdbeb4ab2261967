"""An in-memory delivery kind: the test double of a sink, shipped for anyone's tests.

``memory`` delivers into a :class:`Mailbox` held by the :class:`MemoryKind` instance, so a test
sees exactly what a delivery task handed its sink, and can make the next attempts fail the way a
real receiver would (``mailbox.fail_next``). It passes the same contract as the real sinks
(``tests/contracts/sink.py``): delivers a batch, refuses with the failure kind it was told,
stops cleanly, never shows its ``token`` (a stand-in for a receiver's credential).

Not registered by cityhub (no subscriber can pick it); a test registers it for its own run::

    kind = MemoryKind()
    with registered(kind):
        box = kind.mailbox("orders")
        # create a subscription with {"kind": "memory", "mailbox": "orders"} ...
        await box.wait_for(3)
        assert [json.loads(v)["event_id"] for v in box.values()] == [...]
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer

from cityhub.connectors.sinks import register_sink, unregister_sink
from cityhub.connectors.sinks.base import (
    BatchLimits,
    DeliverySink,
    DeliverySpec,
    InvalidDeliverySpec,
    Item,
    Sink,
    SpecContext,
)
from cityhub.connectors.sinks.errors import DeliveryFailed, FailureKind
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Subscription, secret_fingerprint


class MemoryDelivery(DeliverySpec):
    """Into the named mailbox of the registered :class:`MemoryKind`."""

    kind: Literal["memory"] = "memory"
    mailbox: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")
    max_batch_size: int = Field(default=100, ge=1, le=1000)
    token: SecretStr | None = Field(default=None, repr=False)
    """Write-only, as a receiver's credential would be: stored in clear, never shown."""

    @field_serializer("token", when_used="json")
    def _reveal(self, value: SecretStr | None) -> str | None:
        return None if value is None else value.get_secret_value()  # the storage form

    def secrets(self) -> tuple[str, ...]:
        return () if self.token is None else (self.token.get_secret_value(),)

    def public(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json", exclude={"token"})
        doc["token_fingerprint"] = (
            None if self.token is None else secret_fingerprint(self.token.get_secret_value())
        )
        return doc


class MemoryDeliveryOut(BaseModel):
    """A memory delivery as the API shows it: the token's fingerprint, never the token."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["memory"] = "memory"
    encoding: str
    mailbox: str
    max_batch_size: int
    token_fingerprint: str | None


@dataclass(frozen=True, slots=True)
class Delivered:
    """One batch a sink handed over: its message id and its items' values."""

    msg_id: str
    values: tuple[bytes, ...]


@dataclass
class Mailbox:
    """What the sinks of one mailbox delivered, and the failures they are to report next."""

    name: str
    batches: list[Delivered] = field(default_factory=list)
    attempts: int = 0
    """Every ``send``, delivered or failed."""
    _failures: list[DeliveryFailed] = field(default_factory=list)
    _changed: asyncio.Event | None = None

    def values(self) -> list[bytes]:
        """Every item's value delivered, in order (a retried batch once per delivery)."""
        return [v for batch in self.batches for v in batch.values]

    def fail_next(
        self,
        times: int = 1,
        *,
        kind: FailureKind = FailureKind.CONNECTION,
        retriable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        """Make the next ``times`` attempts raise ``DeliveryFailed`` of ``kind``."""
        for _ in range(times):
            self._failures.append(
                DeliveryFailed(
                    f"memory mailbox {self.name!r}: failing as the test asked",
                    retriable=retriable,
                    kind=kind,
                    retry_after=retry_after,
                )
            )

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """The values once at least ``count`` items were delivered; TimeoutError after
        ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while len(self.values()) < count:
                await self._event().wait()
                self._event().clear()
        return self.values()

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _take(self, msg_id: str, items: Sequence[Item]) -> None:
        self.attempts += 1
        self._event().set()
        if self._failures:
            raise self._failures.pop(0)
        self.batches.append(Delivered(msg_id, tuple(i.value for i in items)))


class MemorySink:
    """The sink of one memory subscription: appends each batch to its mailbox."""

    def __init__(self, mailbox: Mailbox, max_batch_size: int) -> None:
        self._mailbox = mailbox
        self.batch_limits = BatchLimits(max_batch_size)
        self.started = False
        self.stopped = False

    def __repr__(self) -> str:
        return f"MemorySink({self._mailbox.name!r})"

    async def start(self) -> None:
        if self.stopped:
            raise RuntimeError("the memory sink is stopped")
        self.started = True

    async def send(self, items: Sequence[Item], msg_id: str) -> None:
        if self.stopped:
            raise RuntimeError("the memory sink is stopped")
        self._mailbox._take(msg_id, items)

    async def stop(self) -> None:
        self.stopped = True


class MemoryKind:
    """The ``memory`` kind: its mailboxes, by name. ``check`` refuses a mailbox the test did
    not make (``mailbox``), as a real kind refuses an address it cannot deliver to."""

    kind = "memory"
    spec_model: type[DeliverySpec] = MemoryDelivery
    public_model: type[BaseModel] = MemoryDeliveryOut

    def __init__(self) -> None:
        self.mailboxes: dict[str, Mailbox] = {}
        self.sinks: list[MemorySink] = []
        """Every sink built, so a test can see they were stopped."""

    def __repr__(self) -> str:
        return f"MemoryKind({sorted(self.mailboxes)})"

    def mailbox(self, name: str) -> Mailbox:
        """The mailbox ``name``, made on first use."""
        return self.mailboxes.setdefault(name, Mailbox(name))

    async def check(self, spec: DeliverySpec, context: SpecContext) -> None:
        assert isinstance(spec, MemoryDelivery)
        if spec.mailbox not in self.mailboxes:
            raise InvalidDeliverySpec(
                f"no mailbox named {spec.mailbox!r}",
                errors=[("delivery.mailbox", "no such mailbox")],
            )

    def build(self, record: Subscription, settings: Settings) -> Sink:
        spec = record.delivery
        assert isinstance(spec, MemoryDelivery)
        sink = MemorySink(self.mailbox(spec.mailbox), spec.max_batch_size)
        self.sinks.append(sink)
        return sink


@contextlib.contextmanager
def registered(sink: DeliverySink) -> Iterator[DeliverySink]:
    """Register ``sink`` for the block, and forget it afterwards (any sink: a test's own)."""
    register_sink(sink)
    try:
        yield sink
    finally:
        unregister_sink(sink.kind)
