"""Subscriptions' secrets apart from their records: the split and the join (pure), the secrets
view, the service writing both topics (secrets first), moving inline secrets of older records,
the delivery waiting for a secret, and who may read the secrets topic."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from cityhub.connectors.sinks import subscription_models, validate_record, validate_spec
from cityhub.connectors.sinks.webhook_signing import webhook_secret_key
from cityhub.schemas.registry import Role, TenantSpec
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import Subscription, build_subscription, record_key
from cityhub.schemas.subscription_secrets import (
    SubscriptionSecrets,
    join_secrets,
    split_secrets,
)
from cityhub.streams.delivery.manager import DeliveryManager
from cityhub.streams.delivery.outputs import Target
from cityhub.streams.devtools.stack.kafka_acls import Operation, component_grants
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.subscriptions.secret_store import (
    InMemorySubscriptionSecretStore,
    SubscriptionSecretsView,
)
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore

SUBSCRIBER = Principal("k1", "acme", Role.SUBSCRIBER)
SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
OTHER_SECRET = "whsec_" + "WllYV1ZVVFNSUVBPTk1MS0pJSEdGRURDQkF6eXh3dnU="
NOW = "2026-12-04T00:00:00.000Z"


def webhook_record(sub_id: str = "hook", secret: str | None = SECRET) -> Subscription:
    delivery: dict[str, object] = {"kind": "webhook", "url": "https://hooks.example.com/in"}
    if secret is not None:
        delivery["secret"] = secret
    spec = validate_spec({"id": sub_id, "name": "Hook", "delivery": delivery})
    record, _ = build_subscription(spec, tenant="acme", now=NOW)
    return record


def kafka_record() -> Subscription:
    spec = validate_spec({"id": "k", "name": "To Kafka", "delivery": {"kind": "kafka"}})
    return build_subscription(spec, tenant="acme", now=NOW)[0]


def traces_of(secret: str) -> list[bytes]:
    """What must not be found where a secret may not be: the secret, and its key's bytes."""
    return [secret.encode(), secret.removeprefix("whsec_").encode(), webhook_secret_key(secret)]


def holds(value: bytes | None, secret: str) -> bool:
    return value is not None and any(trace in value for trace in traces_of(secret))


# --- the split and the join -----------------------------------------------------------------


def test_a_split_record_holds_a_fingerprint_and_its_secrets_hold_the_secret() -> None:
    record = webhook_record()
    stripped, secrets = split_secrets(record)
    assert secrets is not None
    assert not holds(stripped.model_dump_json().encode(), SECRET)
    assert holds(secrets.model_dump_json().encode(), SECRET)
    assert SECRET not in repr(secrets)
    assert stripped.public() == record.public()  # has_secret and the fingerprint, as before
    assert stripped.signing_secret is None
    assert validate_record(stripped.model_dump_json()) == stripped  # the views read it back
    assert secrets.key == record_key(record)
    assert join_secrets(stripped, secrets) == record


def test_a_record_waits_for_its_own_secret_only() -> None:
    stripped, _ = split_secrets(webhook_record())
    assert join_secrets(stripped, None) is None
    newer = SubscriptionSecrets(tenant="acme", id="hook", secrets=(SecretStr(OTHER_SECRET),))
    assert join_secrets(stripped, newer) is None  # another secret than the record names
    elsewhere = split_secrets(webhook_record("other"))[1]
    assert join_secrets(stripped, elsewhere) is None  # another subscription's


def test_records_without_secrets_and_older_inline_ones_need_no_join() -> None:
    kafka = kafka_record()
    assert split_secrets(kafka) == (kafka, None)
    assert join_secrets(kafka, None) == kafka
    inline = webhook_record()  # as a record from before the split reads
    assert join_secrets(inline, None) == inline
    stripped, _ = split_secrets(inline)
    assert split_secrets(stripped) == (stripped, None)  # nothing left to move


def test_a_fingerprint_is_no_option_of_a_spec() -> None:
    spec_schema = json.dumps(subscription_models().spec.model_json_schema())
    assert "secret_fingerprint" not in spec_schema
    url = "https://hooks.example.com/in"
    sent = {"kind": "webhook", "url": url, "secret_fingerprint": "0" * 16}
    spec = validate_spec({"id": "hook", "name": "Hook", "delivery": sent})
    record, generated = build_subscription(spec, tenant="acme", now=NOW)
    assert generated is not None
    assert record.signing_secret == generated  # the sent fingerprint is dropped, not kept
    assert record.public()["delivery"]["secret_fingerprint"] != "0" * 16


# --- the secrets view -------------------------------------------------------------------------


def test_the_view_skips_bad_records_without_logging_a_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    view = SubscriptionSecretsView()
    good = split_secrets(webhook_record())[1]
    assert good is not None
    value = good.model_dump_json().encode()
    view.apply("subscription/acme/hook", value, 0)
    assert view.get("subscription/acme/hook") == good
    future = json.loads(value) | {"version": 2}
    view.apply("subscription/acme/hook", json.dumps(future).encode(), 1)
    view.apply("subscription/acme/elsewhere", value, 2)  # a key that is not the record's
    view.apply("subscription/acme/hook", value[:-3], 3)  # not JSON
    assert view.malformed == 3
    assert view.get("subscription/acme/hook") == good  # the bad ones changed nothing
    assert view.get("subscription/acme/elsewhere") is None
    assert not [r for r in caplog.records if holds(r.getMessage().encode(), SECRET)]
    assert len(caplog.records) == 3
    view.apply("subscription/acme/hook", None, 4)
    assert view.get("subscription/acme/hook") is None
    assert view.offset == 4


# --- the service --------------------------------------------------------------------------------


async def public_resolver(host: str, port: int) -> Sequence[str]:
    return ["93.184.216.34"]


async def service_over(
    records: InMemorySubscriptionStore, secrets: InMemorySubscriptionSecretStore
) -> Subscriptions:
    registry = Registry(InMemoryRegistryStore())
    await registry.create_tenant(Principal.system(), TenantSpec(id="acme", name="Acme"))
    return Subscriptions(records, registry.view, resolver=public_resolver, secrets=secrets)


async def test_the_service_writes_the_secret_first_and_never_to_the_subscriptions_topic() -> None:
    records, secrets = InMemorySubscriptionStore(), InMemorySubscriptionSecretStore()
    service = await service_over(records, secrets)
    spec = validate_spec(
        {"id": "hook", "name": "Hook", "delivery": {"kind": "webhook", "url": "https://h.example/"}}
    )
    created, generated = await service.create(SUBSCRIBER, "acme", spec)
    assert generated is not None
    assert created.signing_secret == generated  # the caller still gets the whole record
    shown = service.get(SUBSCRIBER, "acme", "hook").public()
    assert shown["delivery"]["has_secret"] is True
    await service.pause(SUBSCRIBER, "acme", "hook")
    await service.resume(SUBSCRIBER, "acme", "hook")
    assert len(records.log) == 3
    assert not [v for _, v in records.log if holds(v, generated)]
    assert [k for k, v in secrets.log if holds(v, generated)] == ["subscription/acme/hook"]
    assert len(secrets.log) == 1  # pause and resume leave the secret alone
    await service.delete(SUBSCRIBER, "acme", "hook")
    assert records.log[-1] == ("subscription/acme/hook", None)
    assert secrets.log[-1] == ("subscription/acme/hook", None)


async def test_inline_secrets_of_older_records_are_moved_once() -> None:
    records, secrets = InMemorySubscriptionStore(), InMemorySubscriptionSecretStore()
    await records.put(webhook_record("old"))  # as the API wrote it before the split
    await records.put(kafka_record())
    service = await service_over(records, secrets)
    assert await service.move_inline_secrets() == 1
    assert await service.move_inline_secrets() == 0
    assert [key for key, _ in secrets.log] == ["subscription/acme/old"]
    latest = dict(records.log)
    assert not holds(latest["subscription/acme/old"], SECRET)
    moved = service.get(SUBSCRIBER, "acme", "old")
    assert join_secrets(moved, secrets.view.get(record_key(moved))) == webhook_record("old")


# --- the delivery ------------------------------------------------------------------------------


async def test_delivery_waits_for_a_secret_and_builds_the_sink_with_it() -> None:
    records, secrets = InMemorySubscriptionStore(), InMemorySubscriptionSecretStore()
    built: list[Subscription] = []

    def target_factory(record: Subscription, settings: Settings) -> Target | None:
        built.append(record)
        return None  # nothing to run: the test looks at what the sink would be built from

    manager = DeliveryManager(
        Settings.model_construct(), records, target_factory=target_factory, secrets=secrets
    )
    stripped, secret = split_secrets(webhook_record())
    assert secret is not None
    await records.put(stripped)  # the record seen before its secret (another topic)
    await manager.reconcile()
    await manager.reconcile()
    assert built == []
    assert REGISTRY.get_sample_value("cityhub_delivery_awaiting_secret") == 1
    await secrets.put(secret)
    await manager.reconcile()
    assert [r.signing_secret for r in built] == [SECRET]
    assert REGISTRY.get_sample_value("cityhub_delivery_awaiting_secret") == 0


# --- who may read the secrets -------------------------------------------------------------------


def test_only_the_api_and_the_delivery_read_the_secrets_and_only_the_api_writes_them() -> None:
    grants = component_grants(Settings())

    def may(operation: Operation, topic: str) -> set[str]:
        return {
            component
            for component, rows in grants.items()
            if any(g.operation is operation and g.resource_name == topic for g in rows)
        }

    assert may(Operation.READ, "cityhub.subscription-secrets") == {"api", "delivery"}
    assert may(Operation.WRITE, "cityhub.subscription-secrets") == {"api"}
    assert "worker" in may(Operation.READ, "cityhub.subscriptions")
