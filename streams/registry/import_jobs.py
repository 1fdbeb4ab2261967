"""Device imports that run in the background and report their progress: the console's imports.

``ImportJobs.start`` parses the body at once (a file that cannot be read at all is refused there,
with the same ``Invalid`` as the API's import) and then writes its rows through
``Registry.import_devices`` in chunks of ``chunk_rows``, so that a page polling ``get`` sees how
many rows are done, and at the end the report of every row: its line in the file, its id, its
status and, for a bad row, each reason. The checks are the importer's own (the HTTP API and the
CLI import the same file the same way); only the rows' grouping into writes differs, so good
rows of an earlier chunk are written even if a later chunk cannot be (the API's import is no
more atomic: its good rows are written and its bad rows reported).

Jobs live in the API process that took the upload (a page polls the process it uploaded to;
behind a load balancer, sessions must be sticky for the progress to show), at most
``max_jobs`` per tenant, each kept ``keep_seconds`` after it finished; only the key that started
a job reads it. At most ``max_running`` imports write at once per process; the others wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cityhub.streams.registry.import_rows import MAX_IMPORT_ROWS, ParsedImport
from cityhub.streams.registry.importer import read_import
from cityhub.streams.registry.principals import Principal, require_tenant_access
from cityhub.streams.registry.service import Registry
from cityhub.streams.service_errors import Conflict, FieldError

log = logging.getLogger("cityhub.registry.import_jobs")

DEFAULT_CHUNK_ROWS = 100
DEFAULT_MAX_JOBS = 20
DEFAULT_KEEP_SECONDS = 3600.0
DEFAULT_MAX_RUNNING = 2
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
PARSE_IN_THREAD_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One row's outcome: where it is in the file, its id, ``created``, ``updated`` or
    ``error``, and each error's field and message."""

    row: int
    line: int | None
    id: str | None
    status: str
    errors: tuple[FieldError, ...] = ()


@dataclass(slots=True)
class ImportJob:
    """An import and how far it got."""

    id: str
    tenant: str
    owner: str
    """The key id that started it: only that key reads it."""
    filename: str
    total: int
    ignored_columns: tuple[str, ...] = ()
    done: int = 0
    created: int = 0
    updated: int = 0
    failed: int = 0
    state: str = "queued"
    """``queued``, ``running``, ``done`` or ``failed`` (the registry could not be written:
    the rows not reported were not imported)."""
    error: str | None = None
    rows: list[ReportRow] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else min(100, self.done * 100 // self.total)

    @property
    def bad_rows(self) -> list[ReportRow]:
        return [r for r in self.rows if r.status == "error"]


def report_rows(
    parsed: ParsedImport,
    start: int,
    results: Sequence[tuple[int, str | None, str, tuple[FieldError, ...]]],
) -> list[ReportRow]:
    """A chunk's results (``row`` counted from 1 within the chunk that began at row index
    ``start`` of the file) as rows of the whole file, with their lines and ids."""
    out = []
    for row, row_id, status, errors in results:
        index = start + row - 1
        known = 0 <= index < len(parsed.lines)
        out.append(
            ReportRow(
                row=index + 1,
                line=parsed.lines[index] if known else None,
                id=row_id or (parsed.ids[index] if known else None),
                status=status,
                errors=errors,
            )
        )
    return out


class ImportJobs:
    """The background imports of one API process."""

    def __init__(
        self,
        registry: Registry,
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        max_jobs: int = DEFAULT_MAX_JOBS,
        keep_seconds: float = DEFAULT_KEEP_SECONDS,
        max_running: int = DEFAULT_MAX_RUNNING,
        max_rows: int = MAX_IMPORT_ROWS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._chunk = chunk_rows
        self._max_jobs = max_jobs
        self._keep = keep_seconds
        self._max_rows = max_rows
        self.max_bytes = max_bytes
        """The largest file a caller should hand ``start`` (the console checks it)."""
        self._clock = clock
        self._running = asyncio.Semaphore(max_running)
        self._jobs: dict[str, ImportJob] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def _prune(self) -> None:
        now = self._clock()
        for job_id, job in list(self._jobs.items()):
            if job.finished_at is not None and now - job.finished_at > self._keep:
                del self._jobs[job_id]

    async def start(
        self,
        who: Principal,
        tenant: str,
        body: bytes,
        content_type: str,
        *,
        filename: str = "",
        default_type: str | None = None,
    ) -> ImportJob:
        """Parse ``body`` and start importing it into ``tenant``; the job, at once. Raises as
        the API's import does (NotFound, Forbidden, Invalid, TooManyRows) and Conflict when the
        tenant has ``max_jobs`` imports kept already."""
        require_tenant_access(self._registry.view, who, tenant, write=True)
        self._prune()
        if sum(1 for j in self._jobs.values() if j.tenant == tenant) >= self._max_jobs:
            raise Conflict(
                f"tenant {tenant!r} has {self._max_jobs} recent imports; try again once one is "
                "older than an hour"
            )
        if len(body) > PARSE_IN_THREAD_BYTES:
            parsed = await asyncio.to_thread(
                read_import, body, content_type, default_type=default_type, max_rows=self._max_rows
            )
        else:
            parsed = read_import(
                body, content_type, default_type=default_type, max_rows=self._max_rows
            )
        job = ImportJob(
            id=secrets.token_urlsafe(12),
            tenant=tenant,
            owner=who.key_id,
            filename=filename[:200],
            total=len(parsed.rows),
            ignored_columns=parsed.ignored_columns,
            started_at=self._clock(),
        )
        self._jobs[job.id] = job
        self._tasks[job.id] = asyncio.create_task(
            self._run(who, job, parsed), name=f"import {job.id}"
        )
        return job

    def get(self, who: Principal, job_id: str) -> ImportJob | None:
        """The job, for the key that started it; None for any other key or an unknown id."""
        job = self._jobs.get(job_id)
        return job if job is not None and job.owner == who.key_id else None

    def of(self, who: Principal, tenant: str) -> list[ImportJob]:
        """The jobs ``who`` started in ``tenant``, newest first."""
        self._prune()
        jobs = [j for j in self._jobs.values() if j.owner == who.key_id and j.tenant == tenant]
        return sorted(jobs, key=lambda j: j.started_at, reverse=True)

    async def wait(self, job_id: str) -> None:
        """Until the job finished (tests)."""
        task = self._tasks.get(job_id)
        if task is not None:
            with contextlib.suppress(Exception):
                await task

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()

    async def _run(self, who: Principal, job: ImportJob, parsed: ParsedImport) -> None:
        try:
            async with self._running:
                job.state = "running"
                for start in range(0, len(parsed.rows), self._chunk):
                    chunk = parsed.rows[start : start + self._chunk]
                    report = await self._registry.import_devices(who, job.tenant, chunk)
                    job.rows += report_rows(
                        parsed,
                        start,
                        [(r.row, r.id, r.status, tuple(r.errors)) for r in report.rows],
                    )
                    job.created += report.created
                    job.updated += report.updated
                    job.failed += report.failed
                    job.done = min(job.total, start + len(chunk))
                    await asyncio.sleep(0)  # let the pages poll between chunks
            job.state = "done"
        except asyncio.CancelledError:
            job.state, job.error = "failed", "the import was stopped (the API process stopped)"
            raise
        except Exception as exc:
            job.state = "failed"
            job.error = (
                f"the registry could not be written ({type(exc).__name__}); the rows after "
                f"row {job.done} were not imported"
            )
            log.warning("import %s into %s failed: %r", job.id, job.tenant, exc)
        finally:
            job.finished_at = self._clock()
            self._tasks.pop(job.id, None)


__all__ = ["ImportJob", "ImportJobs", "ReportRow", "report_rows"]
