"""The subscriptions service over in-memory stores: who may manage what, conflicts, the SSRF
check of webhook URLs, the one-time secret, pause and resume, and the view it keeps."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cityhub.connectors.sinks import validate_record, validate_spec
from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.subscription import (
    ReplaySpec,
    SubscriptionSpec,
    SubscriptionState,
    secret_fingerprint,
)
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.service_errors import Conflict, Forbidden, Invalid, NotFound
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore
from cityhub.streams.subscriptions.topics import TopicNameTaken
from cityhub.streams.subscriptions.view import SubscriptionView

SUB_A = Principal("k1", "acme", Role.SUBSCRIBER)
SUB_B = Principal("k2", "beta", Role.SUBSCRIBER)
OP_A = Principal("k3", "acme", Role.OPERATOR)
ADMIN = Principal("k4", "acme", Role.ADMIN)


async def public_resolver(host: str, port: int) -> Sequence[str]:
    return ["93.184.216.34"]


async def make(allowed: tuple[str, ...] = ()) -> tuple[Subscriptions, InMemorySubscriptionStore]:
    registry = Registry(InMemoryRegistryStore())
    for tenant in ("acme", "beta"):
        await registry.create_tenant(Principal.system(), TenantSpec(id=tenant, name=tenant))
    store = InMemorySubscriptionStore()
    service = Subscriptions(
        store,
        registry.view,
        webhook_allowed_hosts=allowed,
        resolver=public_resolver,
        clock=lambda: 1_700_000_000.0,
    )
    return service, store


def kafka_spec(sub_id: str = "s1") -> SubscriptionSpec:
    return validate_spec({"id": sub_id, "name": "To Kafka", "delivery": {"kind": "kafka"}})


def webhook_spec(url: str, sub_id: str = "hook", **delivery: object) -> SubscriptionSpec:
    return validate_spec(
        {"id": sub_id, "name": "Hook", "delivery": {"kind": "webhook", "url": url, **delivery}}
    )


@pytest.mark.parametrize("who", [SUB_A, ADMIN])
async def test_subscriber_and_admin_manage_their_tenant(who: Principal) -> None:
    service, _ = await make()
    created, secret = await service.create(who, "acme", kafka_spec())
    assert secret is None
    assert created.tenant == "acme"
    assert created.state is SubscriptionState.ACTIVE
    assert service.get(who, "acme", "s1") == created
    assert [s.id for s in service.list(who, "acme")] == ["s1"]
    paused = await service.pause(who, "acme", "s1")
    assert paused.state is SubscriptionState.PAUSED
    assert service.get(who, "acme", "s1").state is SubscriptionState.PAUSED
    assert (await service.pause(who, "acme", "s1")) == paused  # idempotent
    resumed = await service.resume(who, "acme", "s1")
    assert resumed.state is SubscriptionState.ACTIVE
    await service.delete(who, "acme", "s1")
    assert service.list(who, "acme") == []
    with pytest.raises(NotFound):
        service.get(who, "acme", "s1")


async def test_operator_may_not_manage_subscriptions() -> None:
    service, _ = await make()
    with pytest.raises(Forbidden):
        await service.create(OP_A, "acme", kafka_spec())
    await service.create(SUB_A, "acme", kafka_spec())
    with pytest.raises(Forbidden):
        service.list(OP_A, "acme")
    with pytest.raises(Forbidden):
        service.get(OP_A, "acme", "s1")
    with pytest.raises(Forbidden):
        await service.pause(OP_A, "acme", "s1")
    with pytest.raises(Forbidden):
        await service.delete(OP_A, "acme", "s1")


async def test_another_tenants_subscriptions_are_not_found() -> None:
    service, _ = await make()
    await service.create(SUB_A, "acme", kafka_spec())
    with pytest.raises(NotFound):
        service.get(SUB_B, "acme", "s1")
    with pytest.raises(NotFound):
        service.list(SUB_B, "acme")
    with pytest.raises(NotFound):
        await service.pause(SUB_B, "acme", "s1")
    with pytest.raises(NotFound):
        await service.resume(SUB_B, "acme", "s1")
    with pytest.raises(NotFound):
        await service.delete(SUB_B, "acme", "s1")
    with pytest.raises(NotFound):
        await service.create(SUB_B, "acme", kafka_spec("s2"))
    # Its own tenant has nothing of acme's; the same id is free there.
    assert service.list(SUB_B, "beta") == []
    with pytest.raises(NotFound):
        service.get(SUB_B, "beta", "s1")
    await service.create(SUB_B, "beta", kafka_spec())
    with pytest.raises(NotFound):
        service.list(ADMIN, "nowhere")


async def test_id_conflict() -> None:
    service, _ = await make()
    await service.create(SUB_A, "acme", kafka_spec())
    with pytest.raises(Conflict) as err:
        await service.create(SUB_A, "acme", kafka_spec())
    assert err.value.status == 409


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5/", "http://127.0.0.1/", "http://169.254.169.254/"]
)
async def test_private_webhook_urls_are_refused(url: str) -> None:
    service, store = await make()
    with pytest.raises(Invalid) as err:
        await service.create(SUB_A, "acme", webhook_spec(url))
    assert err.value.status == 400
    assert err.value.errors[0].field == "delivery.url"
    assert (
        "private" in err.value.detail
        or "loopback" in err.value.detail
        or "link" in (err.value.detail)
    )
    assert store.log == []


async def test_allow_listed_hosts_pass_the_ssrf_check() -> None:
    service, _ = await make(allowed=("127.0.0.1", "10.0.0.5"))
    for n, url in enumerate(["http://127.0.0.1:8099/hook", "http://10.0.0.5/"]):
        record, _ = await service.create(SUB_A, "acme", webhook_spec(url, sub_id=f"h{n}"))
        assert record.delivery.kind == "webhook"


async def test_generated_secret_is_returned_once_and_never_again() -> None:
    service, store = await make()
    record, secret = await service.create(
        SUB_A, "acme", webhook_spec("https://hooks.example.com/in")
    )
    assert secret is not None
    assert secret.startswith("whsec_")
    assert record.signing_secret == secret
    for shown in (
        service.get(SUB_A, "acme", "hook").public(),
        *(s.public() for s in service.list(SUB_A, "acme")),
        (await service.pause(SUB_A, "acme", "hook")).public(),
    ):
        assert secret not in str(shown)
        assert shown["delivery"]["has_secret"] is True
        assert shown["delivery"]["secret_fingerprint"] == secret_fingerprint(secret)
    # The topic keeps it (the delivery task signs with it), and a restart rebuilds it.
    rebuilt = SubscriptionView(read_record=validate_record)
    for offset, (key, value) in enumerate(store.log):
        rebuilt.apply(key, value, offset)
    restored = rebuilt.get("acme", "hook")
    assert restored is not None
    assert restored.signing_secret == secret
    assert restored.state is SubscriptionState.PAUSED


async def test_a_secret_sent_by_the_subscriber_is_not_echoed() -> None:
    service, _ = await make()
    own = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
    record, secret = await service.create(
        SUB_A, "acme", webhook_spec("https://hooks.example.com/in", secret=own)
    )
    assert secret is None
    assert record.signing_secret == own


def test_view_skips_malformed_records_and_applies_tombstones() -> None:
    view = SubscriptionView()
    view.apply("subscription/acme/x", b"not json", 0)
    view.apply("subscription/acme/x", b'{"kind": "device"}', 1)
    view.apply("garbage", None, 2)
    assert view.malformed == 3
    assert view.offset == 2
    view.apply("subscription/acme/x", None, 3)  # tombstone of nothing: fine
    assert view.malformed == 3
    assert view.all() == []


def mqtt_spec(sub_id: str = "m1") -> SubscriptionSpec:
    return validate_spec(
        {"id": sub_id, "name": "To MQTT", "delivery": {"kind": "mqtt", "topic": "air/all"}}
    )


async def test_replay_requests_count_up_and_survive_pause_and_resume() -> None:
    service, _ = await make()
    await service.create(SUB_A, "acme", mqtt_spec())
    first = await service.replay(SUB_A, "acme", "m1", ReplaySpec(from_offset=5))
    assert first.replay is not None
    assert (first.replay.generation, first.replay.from_offset, first.replay.from_time) == (
        1,
        5,
        None,
    )
    second = await service.replay(
        SUB_A, "acme", "m1", ReplaySpec.model_validate({"from_time": "2026-11-29T10:00:00+01:00"})
    )
    assert second.replay is not None
    assert second.replay.generation == 2
    assert second.replay.from_time == "2026-11-29T09:00:00.000Z"
    paused = await service.pause(SUB_A, "acme", "m1")
    assert paused.replay == second.replay


async def test_replay_is_refused_where_the_client_replays_itself() -> None:
    service, _ = await make()
    await service.create(SUB_A, "acme", kafka_spec())
    with pytest.raises(Conflict, match="seek your own consumer"):
        await service.replay(SUB_A, "acme", "s1", ReplaySpec(from_offset=0))
    with pytest.raises(NotFound):
        await service.replay(SUB_B, "acme", "s1", ReplaySpec(from_offset=0))


def test_replay_spec_wants_exactly_one_start() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ReplaySpec()
    with pytest.raises(ValueError, match="exactly one"):
        ReplaySpec.model_validate({"from_offset": 1, "from_time": "2026-11-29T10:00:00Z"})
    with pytest.raises(ValueError):
        ReplaySpec.model_validate({"from_time": "2026-11-29T10:00:00"})  # no offset


async def test_public_document_names_the_topic_and_the_topic_is_created_first() -> None:
    created: list[str] = []

    async def ensure(topic: str) -> None:
        created.append(topic)

    registry = Registry(InMemoryRegistryStore())
    await registry.create_tenant(Principal.system(), TenantSpec(id="acme", name="acme"))
    service = Subscriptions(
        InMemorySubscriptionStore(), registry.view, topic_prefix="px", ensure_topic=ensure
    )
    record, _ = await service.create(SUB_A, "acme", kafka_spec())
    assert created == ["px.sub.acme.s1"]
    assert service.public(record)["topic"] == "px.sub.acme.s1"


async def test_a_topic_name_another_tenant_holds_is_a_conflict_that_names_nobody() -> None:
    # Kafka takes a.b and a_b for one topic name: the second tenant's create is refused like
    # any unavailable id, with nothing of the other tenant's in the answer and nothing stored.
    async def ensure(topic: str) -> None:
        if topic == "px.sub.a_b.s1":
            raise TopicNameTaken(f"the topic name {topic!r} is not available")

    registry = Registry(InMemoryRegistryStore())
    for tenant in ("a.b", "a_b"):
        await registry.create_tenant(Principal.system(), TenantSpec(id=tenant, name=tenant))
    store = InMemorySubscriptionStore()
    service = Subscriptions(store, registry.view, topic_prefix="px", ensure_topic=ensure)
    await service.create(Principal.system(), "a.b", kafka_spec())
    with pytest.raises(Conflict) as refused:
        await service.create(Principal.system(), "a_b", kafka_spec())
    assert "a.b" not in refused.value.detail
    assert [(e.field, e.message) for e in refused.value.errors] == [("id", "not available")]
    assert service.view.get("a_b", "s1") is None


async def test_a_topic_left_by_a_deleted_subscription_is_removed_before_its_id_is_taken() -> None:
    # A new subscription of a recently deleted one's id must not read what was routed to the
    # old one (personal items among them): the leftover topic goes first, and the create is a
    # 409 to retry.
    existing = {"px.sub.acme.s1"}
    removed: list[str] = []

    async def ensure(topic: str) -> bool:
        created = topic not in existing
        existing.add(topic)
        return created

    async def remove(topic: str) -> None:
        removed.append(topic)
        existing.discard(topic)

    registry = Registry(InMemoryRegistryStore())
    await registry.create_tenant(Principal.system(), TenantSpec(id="acme", name="acme"))
    service = Subscriptions(
        InMemorySubscriptionStore(),
        registry.view,
        topic_prefix="px",
        ensure_topic=ensure,
        remove_topic=remove,
    )
    with pytest.raises(Conflict) as refused:
        await service.create(SUB_A, "acme", kafka_spec())
    assert [(e.field, e.message) for e in refused.value.errors] == [("id", "recently used")]
    assert removed == ["px.sub.acme.s1"]
    assert service.view.get("acme", "s1") is None
    record, _ = await service.create(SUB_A, "acme", kafka_spec())  # once it is gone
    assert record.id == "s1"
