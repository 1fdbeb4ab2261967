"""What a process that routes, delivers or serves personal data keeps of the privacy topics:
the register of processing activities, the consents and the data subjects' keys (each a
compacted topic followed into a view), a producer for the processing log, and the gate over
them. ``cityhub.streams.wiring`` makes one per process that runs a worker, a delivery or the
API; it is ready once every view has read its topic to the end."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cityhub.connectors.kafka import create_producer
from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.privacy.consent_store import ConsentStore
from cityhub.streams.privacy.gate import PrivacyGate
from cityhub.streams.privacy.keys_store import SubjectKeyStore
from cityhub.streams.privacy.log_writer import ProcessingLogWriter
from cityhub.streams.privacy.store import RegisterStore
from cityhub.streams.runtime.host import Part, store_part


class ProcessingLogProducer:
    """A durable producer (``acks=all``, idempotent) kept open for the processing log."""

    def __init__(self, settings: Settings) -> None:
        self._producer = create_producer(settings.kafka, client_id="cityhub-processing-log")
        self.writer = ProcessingLogWriter(
            self._producer, Topics.for_prefix(settings.kafka.topic_prefix).processing_log
        )
        self.ready = False

    async def run(self) -> None:
        await self._producer.start()
        self.ready = True
        try:
            await asyncio.Event().wait()
        finally:
            self.ready = False
            await self._producer.stop()


@dataclass(frozen=True, slots=True)
class PrivacyStores:
    """The privacy views of one process, and the processing log's writer."""

    register: RegisterStore
    consents: ConsentStore
    keys: SubjectKeyStore
    log: ProcessingLogProducer | None
    """None in a process that writes no processing log (a worker)."""
    gate: PrivacyGate

    @classmethod
    def for_settings(cls, settings: Settings, *, log: bool = True) -> PrivacyStores:
        """Raises ``ConfigurationError`` when no key-encryption key is configured."""
        register = RegisterStore(settings)
        consents = ConsentStore(settings)
        keys = SubjectKeyStore(settings)
        gate = PrivacyGate(
            register.view,
            consents.view,
            keys.view,
            ready=lambda: register.ready and consents.ready and keys.ready,
            caught_up_at=lambda: min(
                register.caught_up_at, consents.caught_up_at, keys.caught_up_at
            ),
            keys_caught_up_at=lambda: keys.caught_up_at,
        )
        producer = ProcessingLogProducer(settings) if log else None
        return cls(register, consents, keys, producer, gate)

    @property
    def ready(self) -> bool:
        return self.gate.ready() and (self.log is None or self.log.ready)

    @property
    def log_writer(self) -> ProcessingLogWriter | None:
        return self.log.writer if self.log is not None else None

    def parts(self) -> list[Part]:
        parts = [
            store_part("processing register", self.register),
            store_part("consents", self.consents),
            store_part("subject keys", self.keys),
        ]
        if self.log is not None:
            parts.append(Part("processing log producer", self.log.run))
        return parts
