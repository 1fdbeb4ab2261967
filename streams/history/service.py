"""The ``cityhub history-writer`` process: the writer, and its health and metrics on the
management port (``/healthz`` answers 503 while the writer is paused by a database outage)."""

from __future__ import annotations

from cityhub.schemas.settings import Settings
from cityhub.streams.history.writer import HistoryWriter
from cityhub.streams.runtime.heap import heap_part
from cityhub.streams.runtime.host import Part, management_part


def history_writer_parts(settings: Settings) -> list[Part]:
    """The parts of a history writer process, for ``run_parts``."""
    writer = HistoryWriter(settings)

    def ready() -> bool:
        return writer.ready

    management = settings.management
    return [
        Part("history writer", writer.run),
        management_part(management.host, management.port, {"history": ready}),
        heap_part(ready=ready),
    ]
