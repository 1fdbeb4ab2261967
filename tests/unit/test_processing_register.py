"""The register's service and view without the API: versions and their bound, ends, the
read-your-writes of instances that share a topic, and records the view must refuse."""

from __future__ import annotations

import json

import pytest

from cityhub.schemas.processing import (
    MAX_VERSIONS,
    ActivityEnd,
    ActivitySpec,
    ActivityUpdate,
    LegalBasis,
)
from cityhub.schemas.registry import TenantSpec
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.compacted import InMemoryTopic
from cityhub.streams.privacy.service import ProcessingRegister
from cityhub.streams.privacy.store import InMemoryRegisterStore
from cityhub.streams.privacy.view import RegisterView
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.service_errors import Conflict, Invalid, NotFound
from cityhub.streams.testing import FakeClock

SYSTEM = Principal.system()
BASE = "urn:cityhub:processing-activity:"
STATEMENT = {
    "name": "Occupancy",
    "purpose": "Count people in community centres.",
    "legal_basis": "PublicTask",
    "personal_data_categories": ["presence"],
    "retention": "P7D",
    "controller": "Municipality",
}


async def _register(
    clock: FakeClock, topic: InMemoryTopic | None = None
) -> tuple[ProcessingRegister, InMemoryRegisterStore]:
    registry = Registry(InMemoryRegistryStore())
    await registry.create_tenant(SYSTEM, TenantSpec(id="acme", name="Acme"))
    store = InMemoryRegisterStore(topic=topic)
    return ProcessingRegister(store, registry.view, base_uri=BASE, clock=clock), store


async def test_versions_are_bounded_and_never_lost() -> None:
    register, store = await _register(FakeClock(1_800_000_000.0, step=1.0))
    await register.create(SYSTEM, "acme", ActivitySpec.model_validate({"slug": "occ", **STATEMENT}))
    for n in range(2, MAX_VERSIONS + 1):
        update = ActivityUpdate.model_validate({**STATEMENT, "retention": f"P{n}D"})
        record = await register.update(SYSTEM, "acme", "occ", update)
        assert record.current.version == n
    with pytest.raises(Conflict, match="versions"):
        await register.update(SYSTEM, "acme", "occ", ActivityUpdate.model_validate(STATEMENT))
    record = register.get("acme", "occ")
    assert [v.version for v in record.versions] == list(range(1, MAX_VERSIONS + 1))
    assert record.versions[0].retention == "P7D"
    # Every version went to the topic, none as a tombstone.
    assert all(value is not None for _, value in store.log)


async def test_an_end_is_a_version_and_cannot_be_repeated() -> None:
    clock = FakeClock(1_800_000_000.0)
    register, _ = await _register(clock)
    await register.create(SYSTEM, "acme", ActivitySpec.model_validate({"slug": "occ", **STATEMENT}))
    clock.advance(60)
    ended = await register.end(SYSTEM, "acme", "occ", ActivityEnd())
    assert ended.current.version == 2
    assert ended.current.valid_to == ended.current.recorded_at
    assert not ended.current.valid_at(parse_rfc3339(ended.current.valid_to or ""))
    clock.advance(1)
    with pytest.raises(Conflict, match="already ended"):
        await register.end(SYSTEM, "acme", "occ", ActivityEnd())
    with pytest.raises(NotFound):
        await register.end(SYSTEM, "acme", "nothing", ActivityEnd())


async def test_an_end_before_the_start_is_refused_naming_valid_to() -> None:
    register, _ = await _register(FakeClock(1_800_000_000.0))
    spec = ActivitySpec.model_validate(
        {"slug": "occ", **STATEMENT, "valid_from": "2030-01-01T00:00:00Z"}
    )
    await register.create(SYSTEM, "acme", spec)
    with pytest.raises(Invalid) as info:
        await register.end(SYSTEM, "acme", "occ", ActivityEnd(valid_to="2029-01-01T00:00:00Z"))
    assert [e.field for e in info.value.errors] == ["valid_to"]


async def test_instances_sharing_the_topic_see_each_others_writes() -> None:
    topic = InMemoryTopic()
    clock = FakeClock(1_800_000_000.0)
    one, _ = await _register(clock, topic)
    other, _ = await _register(clock, topic)
    await one.create(SYSTEM, "acme", ActivitySpec.model_validate({"slug": "occ", **STATEMENT}))
    assert other.get("acme", "occ").id == "urn:cityhub:processing-activity:acme:occ"
    with pytest.raises(Conflict):
        await other.create(
            SYSTEM, "acme", ActivitySpec.model_validate({"slug": "occ", **STATEMENT})
        )
    page = other.list(legal_basis=LegalBasis.PUBLIC_TASK, limit=10)
    assert [a.slug for a in page.items] == ["occ"]


def test_the_view_skips_what_it_cannot_use() -> None:
    view = RegisterView()
    good = {
        "kind": "processing_activity",
        "id": "urn:x:acme:occ",
        "tenant": "acme",
        "slug": "occ",
        "created_at": "2026-01-01T00:00:00.000Z",
        "versions": [
            {
                "version": 1,
                "name": "Occupancy",
                "purpose": "p",
                "legal_basis": "Consent",
                "personal_data_categories": ["presence"],
                "retention": "P7D",
                "controller": "c",
                "recipients": [],
                "valid_from": "2026-01-01T00:00:00.000Z",
                "recorded_at": "2026-01-01T00:00:00.000Z",
            }
        ],
    }
    view.apply("processing_activity/acme/occ", json.dumps(good).encode(), 0)
    view.apply("processing_activity/acme/occ", None, 1)  # a tombstone: nothing is deleted
    view.apply("processing_activity/beta/occ", json.dumps(good).encode(), 2)  # wrong key
    view.apply("processing_activity/acme/x", b"not json", 3)
    view.apply("processing_activity/acme/x", b"[1]", 4)
    view.apply("processing_activity/acme/x", json.dumps({**good, "versions": []}).encode(), 5)
    assert (view.offset, view.malformed, view.count()) == (5, 5, 1)
    assert view.get("acme", "occ") is not None
