"""The delivery kinds' registry (``cityhub.connectors.sinks``): what every registered kind
passes without a backend, how the built-in kinds register (entry points, as a plugin's do), that
a kind that cannot work is refused, and that the subscription models, the service and the
OpenAPI document follow what is registered."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ValidationError

from cityhub.connectors.sinks import (
    ENTRY_POINT_GROUP,
    Serving,
    UnknownSinkKind,
    get_sink,
    register_sink,
    resolve_spec,
    sink_kinds,
    unregister_sink,
    validate_record,
    validate_spec,
)
from cityhub.connectors.sinks.base import DeliverySink, DeliverySpec, Sink, SpecContext
from cityhub.connectors.sinks.kinds.kafka import KafkaDelivery
from cityhub.connectors.sinks.memory import MemoryKind, registered
from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Subscription, SubscriptionSpec, build_subscription
from cityhub.streams.api.openapi import build_openapi
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.service_errors import Invalid
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore
from tests.contracts.sink import SPEC_SAMPLES

SECRET = "whsec_" + base64.b64encode(bytes(range(40, 72))).decode()
NOW = "2026-12-01T10:00:00.000Z"
SAMPLES: dict[str, dict[str, Any]] = {
    **SPEC_SAMPLES,
    "webhook": {"kind": "webhook", "url": "https://hooks.example.com/in", "secret": SECRET},
    "mqtt": {"kind": "mqtt", "topic": "air/quality", "qos": 0},
}
"""A delivery object of every built-in kind; a kind registered without one fails below."""


def record(delivery: dict[str, Any], subscription_id: str = "s1") -> Subscription:
    spec = validate_spec({"id": subscription_id, "name": "Sample", "delivery": delivery})
    return build_subscription(spec, tenant="acme", now=NOW)[0]


def test_the_built_in_kinds_come_through_the_entry_point_group() -> None:
    declared = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert set(declared) >= {"kafka", "webhook", "sse", "mqtt"}
    assert all(value.startswith("cityhub.connectors.sinks.kinds.") for value in declared.values())
    assert set(sink_kinds()) == set(SAMPLES)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_registered_kind_keeps_its_contract_without_a_backend(kind: str) -> None:
    sink = get_sink(kind)
    assert isinstance(sink, DeliverySink)
    made = record(SAMPLES[kind])
    assert isinstance(made.delivery, sink.spec_model)
    # The storage form reads back as the same record; the public form is the public model's,
    # and holds none of the secrets.
    assert validate_record(made.model_dump_json()) == made
    public = made.public()["delivery"]
    assert sink.public_model.model_validate(public).model_dump(mode="json") == public
    assert not [s for s in made.delivery.secrets() if s in json.dumps(made.public())]
    assert not [s for s in made.delivery.secrets() if s in repr(made)]
    # A kind a task serves builds its sink without connecting; the others build none.
    if sink.spec_model.serving is Serving.TASK:
        built = sink.build(made, Settings.model_construct())
        assert isinstance(built, Sink)
        assert not [s for s in made.delivery.secrets() if s in repr(built)]
    else:
        with pytest.raises(TypeError):
            sink.build(made, Settings.model_construct())


def test_the_openapi_document_describes_every_kind() -> None:
    doc = build_openapi(max_body_bytes=1024, max_import_bytes=4096)
    schemas = doc["components"]["schemas"]

    def kinds_of(model: str) -> set[str]:
        delivery = schemas[model]["properties"]["delivery"]
        return set(delivery["discriminator"]["mapping"])

    assert kinds_of("SubscriptionSpec") == set(sink_kinds())
    assert kinds_of("SubscriptionOut") == set(sink_kinds())
    # The webhook's public form has no secret, only its fingerprint.
    out = schemas["WebhookDeliveryOut"]["properties"]
    assert "secret" not in out
    assert "secret_fingerprint" in out


def test_the_base_models_take_a_bare_kind_and_refuse_options() -> None:
    bare = SubscriptionSpec.model_validate({"id": "k", "name": "k", "delivery": {"kind": "kafka"}})
    assert type(bare.delivery) is DeliverySpec
    # The registry reads it as its kind does, with that kind's rules.
    assert isinstance(resolve_spec(bare).delivery, KafkaDelivery)
    with pytest.raises(ValidationError, match="no delivery queue"):
        resolve_spec(bare.model_copy(update={"queue_size": 5}))
    with pytest.raises(ValidationError, match="subscription_models"):
        SubscriptionSpec.model_validate(
            {"id": "w", "name": "w", "delivery": {"kind": "webhook", "url": "https://x.example/"}}
        )


class Misnamed(DeliverySpec):
    kind: Literal["other"] = "other"


class MisnamedKind:
    kind = "misnamed"
    spec_model: type[DeliverySpec] = Misnamed
    public_model: type[BaseModel] = Misnamed

    async def check(self, spec: DeliverySpec, context: SpecContext) -> None:
        return None

    def build(self, record: Subscription, settings: Settings) -> Sink:
        raise TypeError


def test_a_kind_whose_models_do_not_name_it_is_refused() -> None:
    with pytest.raises(TypeError, match="must default to 'misnamed'"):
        register_sink(MisnamedKind())
    with pytest.raises(UnknownSinkKind):
        get_sink("misnamed")
    with pytest.raises(ValueError, match="already registered"):
        register_sink(get_sink("kafka").__class__())


@pytest.fixture
def memory() -> Iterator[MemoryKind]:
    kind = MemoryKind()
    with registered(kind):
        yield kind


def test_the_models_follow_what_is_registered(memory: MemoryKind) -> None:
    assert "memory" in sink_kinds()
    spec = validate_spec(
        {"id": "m", "name": "m", "delivery": {"kind": "memory", "mailbox": "a", "token": "t0k"}}
    )
    assert spec.delivery.kind == "memory"
    assert "t0k" not in json.dumps(record(spec.delivery.model_dump(mode="json")).public())
    unregister_sink("memory")
    with pytest.raises(ValidationError):
        validate_spec({"id": "m", "name": "m", "delivery": {"kind": "memory", "mailbox": "a"}})
    register_sink(memory)  # the fixture forgets it again


async def test_the_service_asks_the_kind_to_check_the_spec(memory: MemoryKind) -> None:
    registry = Registry(InMemoryRegistryStore())
    await registry.create_tenant(Principal.system(), TenantSpec(id="acme", name="Acme"))
    service = Subscriptions(InMemorySubscriptionStore(), registry.view)
    who = Principal("k1", "acme", Role.SUBSCRIBER)
    doc = {"id": "m", "name": "m", "delivery": {"kind": "memory", "mailbox": "orders"}}
    with pytest.raises(Invalid) as caught:
        await service.create(who, "acme", validate_spec(doc))
    assert [(e.field, e.message) for e in caught.value.errors] == [
        ("delivery.mailbox", "no such mailbox")
    ]
    memory.mailbox("orders")
    created, secret = await service.create(who, "acme", validate_spec(doc))
    assert secret is None
    assert created.delivery.kind == "memory"
