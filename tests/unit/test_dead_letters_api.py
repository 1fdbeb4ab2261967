"""A tenant's dead letters through the API, over an in-memory registry and dead-letter view: who
sees which letter (operators their devices' and subscriptions', subscribers their
subscriptions' deliveries only), tenant isolation from the other side, payloads withheld for
personal and shared devices, the filters, the 400s, and 503 without a reader."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.errors import Reason
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec
from cityhub.streams.api.app import build_api
from cityhub.streams.api.dead_letters import DEAD_LETTERS_KEY
from cityhub.streams.deadletters.view import DeadLetterView
from cityhub.streams.registry.principals import Principal

from .test_api_support import Api, seeded_registry

TS = "2026-12-04T10:00:00.000Z"
A = "/api/v1/tenants/acme/dead-letters"
B = "/api/v1/tenants/beta/dead-letters"


@dataclass
class Source:
    view: DeadLetterView
    ready: bool = True
    failed: str | None = None
    started: list[bool] = field(default_factory=list)

    def ensure_started(self) -> None:
        self.started.append(True)


def _letter(stage: str, device: str, *, topic: str | None = None, payload: bytes) -> bytes:
    return DeadLetter.of(
        stage=stage,
        reason=Reason.DELIVERY_FAILED if stage == "deliver" else Reason.SCHEMA_MISMATCH,
        detail=f"{stage} failed",
        failed_at=TS,
        payload=payload,
        max_payload_bytes=64 * 1024,
        device=device,
        kafka_topic=topic,
        kafka_partition=0 if topic else None,
        kafka_offset=41 if topic else None,
    ).to_json()


LETTERS = (  # (stage, device, topic, payload): offsets 0.. on partition 0
    ("normalise", "a-1", None, b'{"a": "own raw"}'),
    ("deliver", "device/a-1", "cityhub.sub.acme.hook", b'{"value": "own delivery"}'),
    ("deliver", "device/b-1", "cityhub.sub.acme.hook", b'{"value": "beta shared"}'),
    ("deliver", "device/a-wear", "cityhub.sub.acme.care", b'{"pulse": 61}'),
    ("normalise", "b-1", None, b'{"b": "beta raw"}'),
    ("deliver", "device/b-1", "cityhub.sub.beta.feed", b"\x00\x01binary"),
)


@asynccontextmanager
async def served(source: bool = True) -> AsyncIterator[Api]:
    async with seeded_registry() as (registry, store, keys):
        system = Principal.system()
        await registry.create_type(
            system, "acme", DeviceTypeSpec(id="wear", name="Wearable", classification="personal")
        )
        devices = (("acme", "a-1", "th"), ("acme", "a-wear", "wear"), ("beta", "b-1", "th"))
        for tenant, device_id, type_id in devices:
            await registry.create_device(
                system, tenant, DeviceSpec(id=device_id, name=device_id, type=type_id)
            )
        view = DeadLetterView(registry.view, per_tenant=50)
        for offset, (stage, device, topic, payload) in enumerate(LETTERS):
            view.add(
                _letter(stage, device, topic=topic, payload=payload), partition=0, offset=offset
            )
        app = build_api(registry)
        if source:
            app[DEAD_LETTERS_KEY] = Source(view)
        async with TestClient(TestServer(app)) as client:
            yield Api(client, registry, store, keys, None)  # type: ignore[arg-type]


def _ids(doc: Any) -> list[str]:
    return sorted(item["id"] for item in doc["items"])


async def test_an_operator_sees_its_devices_and_its_subscriptions_letters() -> None:
    async with served() as api:
        status, doc, _ = await api.call("GET", A, "op_a")
        assert status == 200
        assert _ids(doc) == ["0-0", "0-1", "0-2", "0-3"]
        assert doc["complete"] is True
        assert doc["kept_per_tenant"] == 50
        own = next(item for item in doc["items"] if item["id"] == "0-1")
        assert own["subscription"] == "hook"
        assert (own["kafka_partition"], own["kafka_offset"]) == (0, 41)
        assert own["device"] == "a-1"
        assert "payload" not in own  # the list has none
        status, doc, _ = await api.call("GET", A + "?stage=normalise", "op_a")
        assert _ids(doc) == ["0-0"]


async def test_a_subscriber_sees_only_its_subscriptions_deliveries() -> None:
    async with served() as api:
        status, doc, _ = await api.call("GET", A, "sub_a")
        assert status == 200
        assert _ids(doc) == ["0-1", "0-2", "0-3"]
        assert {item["stage"] for item in doc["items"]} == {"deliver"}
        _, doc, _ = await api.call("GET", A + "?subscription=hook&limit=1", "sub_a")
        assert len(doc["items"]) == 1
        assert doc["items"][0]["subscription"] == "hook"
        # The devices' own letters are not a subscriber's, even by id.
        assert (await api.call("GET", A + "/0-0", "sub_a"))[0] == 404


async def test_payloads_show_to_their_tenant_and_never_for_personal_or_shared_devices() -> None:
    async with served() as api:
        _, own, _ = await api.call("GET", A + "/0-1", "sub_a")
        assert own["payload"] == '{"value": "own delivery"}'
        assert own["payload_encoding"] == "utf-8"
        assert own["payload_withheld"] is None
        _, shared, _ = await api.call("GET", A + "/0-2", "sub_a")
        assert shared["payload"] is None
        assert shared["payload_withheld"] == "shared"
        assert shared["subscription"] == "hook"
        _, personal, _ = await api.call("GET", A + "/0-3", "op_a")
        assert personal["payload"] is None
        assert personal["payload_withheld"] == "personal"
        _, by_admin, _ = await api.call("GET", A + "/0-2", "admin")
        assert by_admin["payload"] == '{"value": "beta shared"}'
        _, binary, _ = await api.call("GET", B + "/0-5", "sub_b")
        assert binary["payload_encoding"] == "base64"
        assert binary["payload"] == "AAFiaW5hcnk="


async def test_another_tenants_letters_are_not_found_from_either_path() -> None:
    async with served() as api:
        status, doc, _ = await api.call("GET", B, "op_b")
        assert status == 200
        assert _ids(doc) == ["0-4", "0-5"]  # beta's device letter and beta's subscription's
        for who in ("op_b", "sub_b"):
            assert (await api.call("GET", A, who))[0] == 404
            assert (await api.call("GET", A + "/0-1", who))[0] == 404
            assert (await api.call("GET", B + "/0-1", who))[0] == 404  # acme's, by beta's path
        # The provider's operator does not see the consumer's delivery of its device.
        assert (await api.call("GET", B + "/0-2", "op_b"))[0] == 404
        # An admin reads any tenant's.
        status, doc, _ = await api.call("GET", B, "admin")
        assert status == 200
        assert _ids(doc) == ["0-4", "0-5"]


async def test_bad_queries_are_400s_and_without_a_key_401() -> None:
    async with served() as api:
        for query in ("?stage=nope", "?limit=0", "?subscription=a.b", "?reason=X", "?nope=1"):
            status, doc, _ = await api.call("GET", A + query, "op_a")
            assert status == 400, query
            assert doc["status"] == 400
        assert (await api.call("GET", A + "/not-an-id", "op_a"))[0] == 404
        assert (await api.call("GET", A + "/9-999", "op_a"))[0] == 404
        assert (await api.call("GET", A, None))[0] == 401


async def test_without_a_reader_or_while_it_cannot_read_503() -> None:
    async with served(source=False) as api:
        status, doc, _ = await api.call("GET", A, "op_a")
        assert status == 503
        assert "not served" in doc["detail"]
    async with served() as api:
        source = api.client.app[DEAD_LETTERS_KEY]  # type: ignore[index]
        source.failed = "KafkaConnectionError: 127.0.0.1:9092"
        status, doc, headers = await api.call("GET", A, "op_a")
        assert status == 503
        assert headers["Retry-After"] == "5"
        assert "9092" not in doc["detail"]
