"""The console's subscriptions, dead-letter and import pages, in process (no broker): who sees
what, pause, resume and replay through the subscriptions service with the CSRF token, figures
from the status topic, dead letters isolated by tenant and payloads escaped or withheld, and an
import with a bad row read back from its report."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from cityhub.connectors.sinks import subscription_models
from cityhub.schemas.console_settings import ConsoleSettings
from cityhub.schemas.deadletter import DeadLetter
from cityhub.schemas.errors import Reason
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec
from cityhub.schemas.settings import Settings
from cityhub.schemas.subscription import SubscriptionState
from cityhub.schemas.subscription_status import SubscriptionStatus
from cityhub.streams.api.app import SUBSCRIPTIONS_KEY, build_api
from cityhub.streams.api.subscription_status import SUBSCRIPTION_STATUS_KEY
from cityhub.streams.console.app import build_console
from cityhub.streams.console.services import ConsoleServices
from cityhub.streams.console.signouts import InMemorySignOutStore
from cityhub.streams.deadletters.reader import DeadLetterReader
from cityhub.streams.delivery.status_publisher import InMemorySubscriptionStatusStore
from cityhub.streams.registry.import_jobs import ImportJobs
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.subscriptions.service import Subscriptions
from cityhub.streams.subscriptions.store import InMemorySubscriptionStore

from .console_support import KEK, Browser
from .test_api_support import public_resolver, seed

SYSTEM = Principal.system()


class _Reader(DeadLetterReader):
    """The dead-letter reader without Kafka: the test feeds its view."""

    def ensure_started(self) -> None:
        self.ready = True


@dataclass
class Ops:
    browser: Browser
    subscriptions: Subscriptions
    statuses: InMemorySubscriptionStatusStore
    letters: _Reader
    imports: ImportJobs


@asynccontextmanager
async def running_ops() -> AsyncIterator[Ops]:
    store = InMemoryRegistryStore()
    await store.start()
    registry = Registry(store)
    keys = await seed(registry)
    await registry.create_type(
        SYSTEM,
        "acme",
        DeviceTypeSpec(
            id="tracker",
            name="Tracker",
            classification="personal",  # type: ignore[arg-type]  # pydantic coerces
            personal_data_category="location",
        ),
    )
    for tenant, device_id, type_id in (
        ("acme", "a-1", "th"),
        ("acme", "a-t", "tracker"),
        ("beta", "b-1", "th"),
    ):
        await registry.create_device(
            SYSTEM, tenant, DeviceSpec(id=device_id, name=device_id, type=type_id)
        )
    subscriptions = Subscriptions(
        InMemorySubscriptionStore(), registry.view, resolver=public_resolver
    )
    spec = subscription_models().spec
    for tenant, sub in (("acme", "acme-hook"), ("beta", "beta-hook")):
        await subscriptions.create(
            SYSTEM,
            tenant,
            spec.model_validate(
                {
                    "id": sub,
                    "name": f"{tenant} hook",
                    "delivery": {"kind": "webhook", "url": "https://hooks.example.org/x"},
                }
            ),
        )
    await subscriptions.create(
        SYSTEM,
        "acme",
        spec.model_validate({"id": "acme-topic", "name": "Topic", "delivery": {"kind": "kafka"}}),
    )
    statuses = InMemorySubscriptionStatusStore()
    letters = _Reader(Settings(), registry.view)
    imports = ImportJobs(registry, chunk_rows=2, max_bytes=64 * 1024)
    signouts = InMemorySignOutStore()
    services = ConsoleServices(
        registry=registry,
        signouts=signouts,
        subscriptions=subscriptions,
        subscription_status=statuses.view,
        dead_letters=letters,
        imports=imports,
    )
    console = build_console(services, ConsoleSettings(), KEK)
    app = build_api(registry, subscriptions=subscriptions, console=console)
    app[SUBSCRIPTION_STATUS_KEY] = statuses.view
    async with TestClient(TestServer(app)) as client:
        yield Ops(
            Browser(client, registry, keys, None, signouts),
            subscriptions,
            statuses,
            letters,
            imports,
        )  # type: ignore[arg-type]
    await imports.close()
    await store.stop()


def _status(tenant: str, sub: str, **kw: Any) -> SubscriptionStatus:
    doc: dict[str, Any] = {
        "tenant": tenant,
        "subscription": sub,
        "state": "active",
        "lag_messages": 17,
        "lag_seconds": 2.5,
        "delivered": 1234,
        "failed": 3,
        "dead_lettered": 1,
        "dropped": 0,
        "rate_per_second": 12.5,
        "process": "deliver-1",
        "since": "2026-12-04T10:00:00.000Z",
        "at": "2026-12-04T10:00:05.000Z",
    }
    doc.update(kw)
    return SubscriptionStatus.model_validate(doc)


async def test_a_subscriber_sees_its_own_subscriptions_with_their_figures_and_an_admin_all() -> (
    None
):
    async with running_ops() as ops:
        await ops.statuses.put(_status("acme", "acme-hook", state="failing"))
        await ops.statuses.put(_status("beta", "beta-hook"))
        browser = ops.browser
        await browser.sign_in("sub_a")
        page = await browser.get("/console/subscriptions")
        assert page.status == 200
        assert "acme-hook" in page.text
        assert "beta-hook" not in page.text
        assert "17 berichten, 2.5 s" in page.text  # lag in messages and seconds
        assert "12.5" in page.text
        assert "1234" in page.text
        assert 'data-state="failing"' in page.text
        # A Kafka-topic subscription is read by the subscriber's own client.
        assert "geleverd door de eigen lezer" in page.text
        await browser.post("/console/sign-out")
        await browser.sign_in("admin")
        page = await browser.get("/console/subscriptions")
        assert "acme-hook" in page.text
        assert "beta-hook" in page.text
        await browser.post("/console/sign-out")
        await browser.sign_in("op_a")
        page = await browser.get("/console/subscriptions")
        assert page.status == 403
        assert "acme-hook" not in page.text
        assert "met de rol admin / subscriber" in page.text


async def test_pause_resume_and_replay_go_through_the_service_with_the_csrf_token() -> None:
    async with running_ops() as ops:
        browser = ops.browser
        await browser.sign_in("sub_a")
        await browser.get("/console/subscriptions")
        base = "/console/subscriptions/acme/acme-hook"
        refused = await browser.post(f"{base}/pause", {"csrf": "forged"})
        assert refused.status == 403
        assert ops.subscriptions.view.get("acme", "acme-hook").state is SubscriptionState.ACTIVE  # type: ignore[union-attr]
        page = await browser.post(f"{base}/pause")
        assert page.status == 303
        assert ops.subscriptions.view.get("acme", "acme-hook").state is SubscriptionState.PAUSED  # type: ignore[union-attr]
        page = await browser.get(page.location or "")
        assert "is gepauzeerd" in page.text
        assert 'data-state="paused"' in page.text
        page = await browser.post(f"{base}/resume")
        assert ops.subscriptions.view.get("acme", "acme-hook").state is SubscriptionState.ACTIVE  # type: ignore[union-attr]
        await browser.get("/console/subscriptions")
        page = await browser.post(f"{base}/replay", {"from_offset": "0"})
        assert page.status == 303
        replay = ops.subscriptions.view.get("acme", "acme-hook").replay  # type: ignore[union-attr]
        assert replay is not None
        assert replay.from_offset == 0
        await browser.get("/console/subscriptions")
        bad = await browser.post(f"{base}/replay", {"from_offset": "0", "from_time": "yesterday"})
        assert bad.status == 400
        # Another tenant's subscription is as absent as one that never was.
        await browser.get("/console/subscriptions")
        assert (await browser.post("/console/subscriptions/beta/beta-hook/pause")).status == 404
        assert ops.subscriptions.view.get("beta", "beta-hook").state is SubscriptionState.ACTIVE  # type: ignore[union-attr]


def _letter(device: str | None, payload: bytes, reason: Reason = Reason.SCHEMA_MISMATCH) -> bytes:
    return DeadLetter.of(
        stage="normalise",
        reason=reason,
        detail="f_port: expected an integer",
        failed_at="2026-12-04T10:00:00.000Z",
        payload=payload,
        max_payload_bytes=64 * 1024,
        device=device,
    ).to_json()


async def test_dead_letters_are_the_tenants_own_with_payloads_escaped_or_withheld() -> None:
    async with running_ops() as ops:
        view = ops.letters.view
        view.add(_letter("a-1", b'<script>alert("x")</script>'), partition=0, offset=0)
        view.add(_letter("b-1", b"beta's secret reading"), partition=0, offset=1)
        view.add(_letter("a-t", b'{"lat": 52.1, "lon": 4.3}'), partition=0, offset=2)
        view.add(_letter("ghost", b"\x00\x01\x02", Reason.UNKNOWN_DEVICE), partition=1, offset=0)
        browser = ops.browser
        await browser.sign_in("op_b")
        page = await browser.get("/console/dead-letters")
        assert "b-1" in page.text
        assert "a-1" not in page.text
        assert "ghost" not in page.text
        # From the other side: acme's letters are not found for beta's operator.
        for letter_id in ("0-0", "0-2", "1-0"):
            assert (await browser.get(f"/console/dead-letters/{letter_id}")).status == 404
        await browser.post("/console/sign-out")
        await browser.sign_in("op_a")
        page = await browser.get("/console/dead-letters")
        assert "a-1" in page.text
        assert "b-1" not in page.text
        page = await browser.get("/console/dead-letters/0-0")
        assert page.status == 200
        assert "<script>alert" not in page.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
        assert 'href="/console/devices/a-1"' in page.text
        page = await browser.get("/console/dead-letters/0-2")  # personal: withheld from all
        assert page.status == 200
        assert "52.1" not in page.text
        assert "persoonlijk type" in page.text
        assert "Inhoud niet getoond" in page.text
        # Beta's device delivered to acme's subscription (under an agreement): acme's letter,
        # its payload withheld (beta's data), where to replay from shown.
        shared = DeadLetter.of(
            stage="deliver",
            reason=Reason.DELIVERY_FAILED,
            detail="the receiver answered 400",
            failed_at="2026-12-04T10:00:01.000Z",
            payload=b"shared-reading-xyz",
            max_payload_bytes=64 * 1024,
            device="device/b-1",
            kafka_topic="cityhub.sub.acme.acme-hook",
            kafka_partition=3,
            kafka_offset=99,
        ).to_json()
        view.add(shared, partition=2, offset=0)
        page = await browser.get("/console/dead-letters/2-0")
        assert page.status == 200
        assert "shared-reading-xyz" not in page.text
        assert "gedeeld via een afspraak" in page.text
        assert "partitie 3, offset 99" in page.text
        assert "acme-hook" in page.text
        await browser.post("/console/sign-out")
        await browser.sign_in("sub_a")
        assert (await browser.get("/console/dead-letters/0-0")).status == 404
        await browser.post("/console/sign-out")
        # beta's admin sees every letter, unknown devices too, but no personal payload of acme.
        await browser.get("/console/sign-in")
        admin_b = await _admin_of(ops, "beta")
        page = await browser.post("/console/sign-in", {"key": admin_b})
        page = await browser.get("/console/dead-letters")
        assert "ghost" in page.text
        assert "unknown_device" in page.text
        page = await browser.get("/console/dead-letters/1-0")
        assert "00 01 02" in page.text  # binary as hex
        page = await browser.get("/console/dead-letters/0-2")
        assert page.status == 200
        assert "52.1" not in page.text
        assert "Inhoud niet getoond" in page.text


async def _admin_of(ops: Ops, tenant: str) -> str:
    from cityhub.schemas.registry import Role

    _, secret = await ops.browser.registry.create_key(SYSTEM, tenant, Role.ADMIN, "admin b")
    ops.browser.keys["admin_b"] = secret
    return secret


async def _upload(browser: Browser, name: str, body: bytes, **fields: str) -> Any:
    form = aiohttp.FormData()
    form.add_field("csrf", browser.csrf)
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", body, filename=name, content_type="text/csv")
    async with browser.client.post(
        "/console/imports", data=form, allow_redirects=False
    ) as response:
        return await browser._page(response)


async def test_an_import_with_a_bad_row_shows_progress_then_its_report() -> None:
    async with running_ops() as ops:
        browser = ops.browser
        await browser.sign_in("op_a")
        page = await browser.get("/console/imports")
        assert page.status == 200
        body = b"id;name;type\nnew-1;One;th\nnew-2;Two;nope\nnew-3;Three;th\n"
        page = await _upload(browser, "devices.csv", body)
        assert page.status == 303, page.text
        job_path = page.location or ""
        assert re.fullmatch(r"/console/imports/[\w-]+", job_path)
        job = ops.imports.of(browser.registry.authenticate(browser.keys["op_a"]), "acme")[0]
        await ops.imports.wait(job.id)
        page = await browser.get(job_path + "/progress")
        assert page.status == 200
        assert "hx-trigger" not in page.text  # finished: the polling stops
        assert "2 aangemaakt, 0 bijgewerkt, 1 fout" in page.text
        bad = page.text.split('id="bad-rows"')[1].split("</table>")[0]
        assert "<td>2</td><td>3</td><td>new-2</td>" in bad  # row 2, line 3
        assert "type" in bad
        assert browser.registry.view.device_by_id("new-1") is not None
        page = await browser.get(job_path)
        assert "Rapport per rij" in page.text
        # Nobody else reads it.
        await browser.post("/console/sign-out")
        await browser.sign_in("op_b")
        assert (await browser.get(job_path)).status == 404
        assert (await browser.get(job_path + "/progress")).status == 404


async def test_an_unreadable_or_forbidden_upload_is_refused_with_a_reason() -> None:
    async with running_ops() as ops:
        browser = ops.browser
        await browser.sign_in("op_a")
        await browser.get("/console/imports")
        page = await _upload(browser, "devices.exe", b"MZ")
        assert page.status == 400
        assert "Alleen CSV" in page.text
        await browser.get("/console/imports")
        page = await _upload(browser, "devices.csv", b"\xff\xfe")
        assert page.status == 400
        assert "niet gelezen" in page.text
        await browser.get("/console/imports")
        page = await _upload(browser, "devices.csv", b"x" * (64 * 1024 + 1))
        assert page.status == 413
        await browser.post("/console/sign-out")
        await browser.sign_in("sub_a")
        await browser.get("/console/imports")
        page = await _upload(browser, "devices.csv", b"id;name;type\nz;z;th\n")
        assert page.status == 403
        assert browser.registry.view.device_by_id("z") is None


async def test_an_admins_list_is_cut_at_a_bound_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cityhub.streams.console import subscriptions as page

    monkeypatch.setattr(page, "MAX_ROWS", 2)
    async with running_ops() as ops:
        browser = ops.browser
        await browser.sign_in("admin")
        shown = await browser.get("/console/subscriptions")
        assert shown.text.count('<tr id="sub-') == 2
        assert "de eerste 1 000 abonnementen" in shown.text


async def test_the_notice_after_an_action_names_only_a_subscription_id() -> None:
    async with running_ops() as ops:
        browser = ops.browser
        await browser.sign_in("sub_a")
        page = await browser.get("/console/subscriptions?done=paused&id=acme-hook")
        assert "Abonnement acme-hook is gepauzeerd." in page.text
        page = await browser.get("/console/subscriptions?done=paused&id=Call+0900+now")
        assert "0900" not in page.text


async def test_hostile_input_gets_a_clear_refusal_never_a_server_error() -> None:
    async with running_ops() as ops:
        browser = ops.browser
        await browser.sign_in("admin")
        for path in (
            "/console/dead-letters?reason=" + "%00%ff<x>" * 200,
            "/console/dead-letters/" + "9" * 5000,
            "/console/dead-letters/0-0%0d%0aSet-Cookie:x=1",
            "/console/imports/" + "x" * 5000,
            "/console/imports/..%2f..%2fetc/progress",
            "/console/subscriptions?done=" + "a" * 5000 + "&id=%ff",
        ):
            page = await browser.get(path)
            assert page.status in (200, 400, 404), (path[:60], page.status)
            assert "Set-Cookie:x" not in str(page.headers)
        await browser.get("/console/subscriptions")
        replay = "/console/subscriptions/acme/acme-hook/replay"
        for form in (
            {"from_offset": "9" * 100},
            {"from_offset": "-1"},
            {"from_offset": "\u0661\u0662"},  # Arabic-Indic digits are not an offset
            {"from_time": "2026-13-45T99:00:00Z"},
            {"from_time": "0001-01-01T00:00:00Z"},
            {},
        ):
            page = await browser.post(replay, form)
            assert page.status == 400, (form, page.status)
            await browser.get("/console/subscriptions")
        assert (
            await browser.post("/console/subscriptions/acme/" + "z" * 300 + "/pause")
        ).status == 404
        await browser.get("/console/imports")
        page = await browser.post("/console/imports", {"file": "not a file"})
        assert page.status == 400
        await browser.get("/console/imports")
        form = aiohttp.FormData()
        form.add_field("csrf", browser.csrf)
        form.add_field(
            "file",
            io.BytesIO(b"x" * (17 * 1024 * 1024)),
            filename="big.csv",
            content_type="text/csv",
        )
        async with browser.client.post(
            "/console/imports", data=form, allow_redirects=False
        ) as response:
            assert response.status == 413


async def test_the_api_answers_a_subscriptions_status_to_whoever_may_read_it() -> None:
    async with running_ops() as ops:
        await ops.statuses.put(_status("acme", "acme-hook", state="failing"))
        client, keys = ops.browser.client, ops.browser.keys

        async def get(who: str, path: str) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {keys[who]}"}
            async with client.get("/api/v1" + path, headers=headers) as response:
                return response.status, await response.json()

        status, doc = await get("sub_a", "/tenants/acme/subscriptions/acme-hook/status")
        assert status == 200, doc
        assert doc["state"] == "failing"
        assert doc["delivered_by"] == "task"
        assert doc["reported"] is True
        assert doc["figures"]["lag_messages"] == 17
        assert doc["figures"]["rate_per_second"] == 12.5
        status, doc = await get("sub_a", "/tenants/acme/subscriptions/acme-topic/status")
        assert (doc["delivered_by"], doc["reported"], doc["figures"]) == ("client", False, None)
        # Another tenant's subscription is not found; an operator may not manage subscriptions.
        assert (await get("sub_b", "/tenants/acme/subscriptions/acme-hook/status"))[0] == 404
        assert (await get("op_a", "/tenants/acme/subscriptions/acme-hook/status"))[0] == 403
        status, doc = await get("sub_a", "/tenants/acme/subscriptions/Bad.Id/status")
        assert status == 404  # as GET .../subscriptions/Bad.Id
        assert doc["status"] == 404  # a problem document
        await ops.subscriptions.pause(SYSTEM, "acme", "acme-hook")
        status, doc = await get("admin", "/tenants/acme/subscriptions/acme-hook/status")
        assert doc["state"] == "paused"  # the record's pause wins over an older status


async def test_an_api_without_the_status_view_answers_503() -> None:
    from .console_support import running_console

    async with running_console() as browser:
        spec = subscription_models().spec.model_validate(
            {"id": "hook", "name": "h", "delivery": {"kind": "kafka"}}
        )
        subscriptions = browser.client.app[SUBSCRIPTIONS_KEY]  # type: ignore[index]
        await subscriptions.create(SYSTEM, "acme", spec)
        headers = {"Authorization": f"Bearer {browser.keys['sub_a']}"}
        path = "/api/v1/tenants/acme/subscriptions/hook/status"
        async with browser.client.get(path, headers=headers) as response:
            assert response.status == 503


async def test_a_json_import_reports_its_bad_item_by_position() -> None:
    async with running_ops() as ops:
        browser = ops.browser
        await browser.sign_in("op_a")
        await browser.get("/console/imports")
        body = json.dumps(
            [
                {"id": "j-1", "name": "One", "type": "th"},
                {"id": "j-2", "name": "Two", "type": "th", "location": {"latitude": 123}},
            ]
        ).encode()
        form = aiohttp.FormData()
        form.add_field("csrf", browser.csrf)
        form.add_field("file", body, filename="devices.json", content_type="application/json")
        async with browser.client.post("/console/imports", data=form, allow_redirects=False) as r:
            page = await browser._page(r)
        assert page.status == 303, page.text
        who = browser.registry.authenticate(browser.keys["op_a"])
        await ops.imports.wait(ops.imports.of(who, "acme")[0].id)
        page = await browser.get((page.location or "") + "/progress")
        assert "1 aangemaakt, 0 bijgewerkt, 1 fout" in page.text
        bad = page.text.split('id="bad-rows"')[1].split("</table>")[0]
        assert "<td>2</td><td>2</td><td>j-2</td>" in bad  # the array's second item
        assert "location" in bad
