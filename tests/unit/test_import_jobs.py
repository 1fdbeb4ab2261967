"""Background imports for the console: progress by chunks, the per-row report with lines and
reasons, who may read a job, bounds, and a registry that fails half-way."""

from __future__ import annotations

import asyncio

import pytest

from cityhub.schemas.registry import DeviceTypeSpec, Role, TenantSpec
from cityhub.streams.registry.import_jobs import ImportJobs
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.service_errors import Conflict, Invalid, NotFound

ADMIN = Principal.system()


async def _registry() -> tuple[Registry, Principal, Principal]:
    registry = Registry(InMemoryRegistryStore())
    keys = {}
    for tenant in ("north", "south"):
        await registry.create_tenant(ADMIN, TenantSpec(id=tenant, name=tenant))
        await registry.create_type(ADMIN, tenant, DeviceTypeSpec(id="aq", name="Air"))
        _, secret = await registry.create_key(ADMIN, tenant, Role.OPERATOR, "op")
        keys[tenant] = registry.authenticate(secret)
    return registry, keys["north"], keys["south"]


def _csv(n: int, *, bad_at: tuple[int, ...] = ()) -> bytes:
    lines = ["id;name;type;dev_eui"]
    for i in range(n):
        kind = "nope" if i in bad_at else "aq"
        lines.append(f"dev-{i:04d};Device {i};{kind};{i:016x}")
    return ("\n".join(lines) + "\n").encode()


async def test_an_import_reports_progress_by_chunks_and_every_bad_row_with_its_line() -> None:
    registry, north, _ = await _registry()
    jobs = ImportJobs(registry, chunk_rows=10)
    job = await jobs.start(north, "north", _csv(35, bad_at=(3, 27)), "text/csv", filename="a.csv")
    assert job.total == 35
    seen = []
    while not job.finished:
        seen.append(job.done)
        await asyncio.sleep(0)
    assert job.state == "done"
    assert job.done == 35
    assert job.percent == 100
    assert any(0 < d < 35 for d in seen), seen  # progress showed between chunks
    assert (job.created, job.updated, job.failed) == (33, 0, 2)
    bad = job.bad_rows
    assert [(r.row, r.line, r.id) for r in bad] == [(4, 5, "dev-0003"), (28, 29, "dev-0027")]
    assert bad[0].errors[0].field == "type"
    assert registry.view.device_by_id("dev-0034") is not None
    assert registry.view.device_by_id("dev-0003") is None


async def test_only_the_key_that_started_a_job_reads_it() -> None:
    registry, north, south = await _registry()
    jobs = ImportJobs(registry)
    job = await jobs.start(north, "north", _csv(2), "text/csv")
    await jobs.wait(job.id)
    assert jobs.get(north, job.id) is job
    assert jobs.get(south, job.id) is None
    assert jobs.of(south, "north") == []
    other_north_key = Principal(key_id="someone-else", tenant="north", role=Role.OPERATOR)
    assert jobs.get(other_north_key, job.id) is None


async def test_an_import_into_another_tenant_or_of_an_unreadable_file_is_refused_at_once() -> None:
    registry, north, _ = await _registry()
    jobs = ImportJobs(registry)
    with pytest.raises(NotFound):
        await jobs.start(north, "south", _csv(1), "text/csv")
    with pytest.raises(Invalid):
        await jobs.start(north, "north", b"\xff\xfe not utf-8", "text/csv")
    with pytest.raises(Invalid):
        await jobs.start(north, "north", b'{"not": "an array"}', "application/json")
    assert jobs.of(north, "north") == []


async def test_a_tenant_keeps_a_bounded_number_of_recent_jobs() -> None:
    registry, north, _ = await _registry()
    now = [1000.0]
    jobs = ImportJobs(registry, max_jobs=2, keep_seconds=60, clock=lambda: now[0])
    for _ in range(2):
        await jobs.wait((await jobs.start(north, "north", _csv(1), "text/csv")).id)
    with pytest.raises(Conflict):
        await jobs.start(north, "north", _csv(1), "text/csv")
    now[0] += 61
    job = await jobs.start(north, "north", _csv(1), "text/csv")
    await jobs.wait(job.id)
    assert jobs.of(north, "north") == [job]


async def test_a_registry_failing_half_way_fails_the_job_and_names_the_rows_not_imported() -> None:
    registry, north, _ = await _registry()
    calls = [0]
    real = registry.import_devices

    async def flaky(*args: object, **kw: object) -> object:
        calls[0] += 1
        if calls[0] == 2:
            raise OSError("kafka away")
        return await real(*args, **kw)  # type: ignore[arg-type]

    registry.import_devices = flaky  # type: ignore[method-assign,assignment]
    jobs = ImportJobs(registry, chunk_rows=5)
    job = await jobs.start(north, "north", _csv(12), "text/csv")
    await jobs.wait(job.id)
    assert job.state == "failed"
    assert job.done == 5
    assert job.created == 5
    assert job.error is not None
    assert "after row 5" in job.error
