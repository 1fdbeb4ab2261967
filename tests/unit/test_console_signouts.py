"""Signing out of the console ends the session on the server, in every API process: the session
id sealed in the cookie (new at each sign-in), the sign-out view (expired entries forgotten,
malformed records skipped), and the console refusing a copied cookie after its sign-out, in the
process that signed out and in another on the same topic; a failed write still deletes the
cookie and says what it means; a view not ready yet fails closed."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import pytest
from aiokafka.errors import KafkaTimeoutError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client import REGISTRY

from cityhub.schemas.console_settings import MAX_SESSION_SECONDS
from cityhub.schemas.settings import Settings
from cityhub.streams.compacted import InMemoryTopic
from cityhub.streams.console.session import COOKIE_NAME, Session, SessionCodec, derive_key
from cityhub.streams.console.signouts import (
    MAX_STALENESS_S,
    InMemorySignOutStore,
    SignOut,
    SignOutView,
)
from cityhub.streams.service_errors import Unavailable
from cityhub.streams.topic_admin import CONSOLE_SIGNOUTS_RETENTION_MS, topic_specs

from .console_support import KEK, another_process, running_console

SESSION = "AbCdEfGhIjKlMnOpQrStUv"
OTHER = "zyxwvutsrqponmlkjihgfe"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _value(expires_at: object) -> bytes:
    return json.dumps({"expires_at": expires_at}).encode()


# The view


def test_a_signed_out_session_is_held_until_it_would_have_expired() -> None:
    clock = Clock()
    view = SignOutView(clock)
    view.apply(SESSION, _value(clock.now + 60), 0)
    assert view.signed_out(SESSION)
    assert not view.signed_out(OTHER)
    assert view.offset == 0
    assert view.count() == 1
    clock.now += 60
    assert not view.signed_out(SESSION)  # its cookie no longer opens: forgotten
    assert view.count() == 0


def test_an_entry_already_expired_is_not_kept_and_a_later_expiry_wins() -> None:
    clock = Clock()
    view = SignOutView(clock)
    view.apply(SESSION, _value(clock.now - 1), 0)
    assert not view.signed_out(SESSION)
    assert view.count() == 0
    view.apply(OTHER, _value(clock.now + 10), 1)
    view.apply(OTHER, _value(clock.now + 100), 2)
    view.apply(OTHER, _value(clock.now + 50), 3)  # an earlier expiry does not shorten it
    clock.now += 60
    assert view.signed_out(OTHER)
    clock.now += 40
    assert not view.signed_out(OTHER)
    assert view.malformed == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (SESSION, None),  # a tombstone would bring a copied cookie back: never applied
        (SESSION, b"not json"),
        (SESSION, b"\xff\xfe"),
        (SESSION, b"[1, 2]"),
        (SESSION, b"{}"),
        (SESSION, _value("2099-01-01")),
        (SESSION, _value(True)),
        (SESSION, _value(None)),
        (SESSION, _value(-5)),
        (SESSION, b'{"expires_at": NaN}'),
        (SESSION, b'{"expires_at": Infinity}'),
        (SESSION, json.dumps({"expires_at": 2e9, "tenant": "acme"}).encode()),
        (SESSION, json.dumps({"expires_at": 2e9, "session_id": OTHER}).encode()),
        ("", _value(2e9)),
        ("short", _value(2e9)),
        ("x" * 65, _value(2e9)),
        (SESSION + "\n", _value(2e9)),
        ("AbCdEfGh/jKlMnOpQrStUv", _value(2e9)),
    ],
)
def test_a_malformed_record_is_counted_and_skipped(
    key: str, value: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(1_000_000_000.0)
    view = SignOutView(clock)
    view.apply(OTHER, _value(clock.now + 60), 0)
    with caplog.at_level(logging.WARNING, "cityhub.console.signouts"):
        view.apply(key, value, 1)
    assert view.malformed == 1
    assert view.offset == 1
    assert view.count() == 1
    assert view.signed_out(OTHER)
    assert "offset 1" in caplog.text
    if len(key) > 8:
        assert key.strip() not in caplog.text  # no session id in the log


async def test_the_record_is_the_expiry_keyed_by_the_session_id_and_every_store_sees_it() -> None:
    topic = InMemoryTopic()
    first = InMemorySignOutStore(topic=topic)
    second = InMemorySignOutStore(topic=topic)  # another API process on the same topic
    expires = time.time() + 60
    await first.put(SignOut(session_id=SESSION, expires_at=expires))
    # Nothing but the expiry: no key, tenant or user.
    [(key, value)] = topic.records
    assert key == SESSION
    assert value is not None
    assert json.loads(value) == {"expires_at": expires}
    assert first.view.signed_out(SESSION)
    assert second.view.signed_out(SESSION)
    # A process started later reads the whole topic.
    assert InMemorySignOutStore(topic=topic).view.signed_out(SESSION)


def test_the_topic_is_compacted_and_deleted_after_the_longest_session_and_a_margin() -> None:
    [spec] = [s for s in topic_specs(Settings()) if s.name == "cityhub.console-signouts"]
    assert spec.partitions == 1
    assert spec.config["cleanup.policy"] == "compact,delete"
    retention = int(spec.config["retention.ms"])
    assert retention == CONSOLE_SIGNOUTS_RETENTION_MS
    assert MAX_SESSION_SECONDS * 1000 < retention <= (MAX_SESSION_SECONDS + 2 * 86400) * 1000


# The codec


def test_the_session_id_is_sealed_and_new_at_every_sign_in() -> None:
    codec = SessionCodec(KEK)
    now = time.time()
    anonymous = Session.anonymous(now, 60)
    opened = codec.open(codec.seal(anonymous), now)
    assert opened is not None
    assert opened.id == anonymous.id
    assert len(anonymous.id) >= 22
    # Session fixation: no id of a session from before a sign-in survives it.
    signed_in = anonymous.signed_in("chk_a_b", now, 60)
    assert signed_in.id != anonymous.id
    pending = anonymous.signing_in(("state", "nonce", "verifier"))
    assert pending.id == anonymous.id
    operator = pending.signed_in_oidc("subject", "acme", now, 60)
    assert operator.id not in {anonymous.id, signed_in.id}
    assert signed_in.with_tenant("beta").id == signed_in.id
    assert len({Session.anonymous(now, 60).id for _ in range(100)}) == 100


def _seal_payload(payload: dict[str, Any]) -> str:
    """A cookie sealed as the codec seals one, with any payload (the format of v1)."""
    nonce = os.urandom(12)
    sealed = AESGCM(derive_key(KEK)).encrypt(
        nonce, json.dumps(payload).encode(), b"cityhub-console-session-v1"
    )
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def test_a_cookie_without_a_session_id_opens_as_no_session() -> None:
    codec = SessionCodec(KEK)
    now = time.time()
    before_ids = {"c": "csrf-token", "e": now + 600, "k": "chk_a_b"}  # made before this change
    assert codec.open(_seal_payload(before_ids), now) is None
    assert codec.open(_seal_payload({**before_ids, "i": SESSION}), now) is not None
    for bad in ("", "short", 12345, None, ["x"], SESSION + "!", "x" * 65):
        assert codec.open(_seal_payload({**before_ids, "i": bad}), now) is None, bad


# The console


def _cookie(headers: Any) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    for value in headers.getall("Set-Cookie", []):
        jar.load(value)
    return jar[COOKIE_NAME].value if COOKIE_NAME in jar else None


def _sign_outs(result: str) -> float:
    value = REGISTRY.get_sample_value("cityhub_console_sign_outs_total", {"result": result})
    return value or 0.0


async def test_a_copied_cookie_is_signed_out_with_its_browser_in_every_process() -> None:
    topic = InMemoryTopic()
    async with running_console(signouts=InMemorySignOutStore(topic=topic)) as browser:
        anonymous = browser.cookie()
        await browser.sign_in("op_a")
        copied = browser.cookie()
        assert copied
        assert copied != anonymous
        opened = SessionCodec(KEK).open(copied, time.time())
        assert opened is not None
        assert not browser.signouts.view.signed_out(opened.id)
        async with another_process(browser, InMemorySignOutStore(topic=topic)) as other:
            # Before the sign-out the copy works, here and in the other process.
            assert (await browser.copy_get(copied)).status == 200
            assert (await other.copy_get(copied)).status == 200
            recorded = _sign_outs("recorded")
            page = await browser.post("/console/sign-out")
            assert page.status == 303
            assert page.location == "/console/sign-in?notice=out"
            assert _cookie(page.headers) == ""  # deleted in this browser, as before
            assert _sign_outs("recorded") == recorded + 1
            # The topic holds the session id and its expiry, nothing else.
            [(key, value)] = topic.records
            assert key == opened.id
            assert value is not None
            assert json.loads(value) == {"expires_at": opened.expires_at}
            for process in (browser, other):
                refused = await process.copy_get(copied)
                assert refused.status == 303
                assert refused.headers["Location"] == "/console/sign-in"
                # The copy is replaced by a new anonymous session, whose id is not the old one.
                fresh = SessionCodec(KEK).open(_cookie(refused.headers) or "", time.time())
                assert fresh is not None
                assert fresh.id != opened.id
                assert fresh.secret is None
            # A POST with the copy (and its CSRF token) does nothing either.
            async with (
                aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as elsewhere,
                elsewhere.post(
                    other.client.make_url("/console/tenant"),
                    data={"csrf": opened.csrf, "tenant": "beta"},
                    allow_redirects=False,
                    headers={"Cookie": f"{COOKIE_NAME}={copied}"},
                ) as response,
            ):
                assert response.status == 403
        # Signing in again makes a new session, which works.
        await browser.sign_in("op_a")
        assert (await browser.get("/console/devices")).status == 200


async def test_a_sign_out_without_a_sign_in_records_nothing() -> None:
    """Anyone may POST a sign-out with an anonymous session's CSRF token: none of them may fill
    the topic and every process's view."""
    topic = InMemoryTopic()
    async with running_console(signouts=InMemorySignOutStore(topic=topic)) as browser:
        await browser.get("/console/sign-in")  # an anonymous session and its CSRF token
        recorded = _sign_outs("recorded")
        page = await browser.post("/console/sign-out")
        assert page.status == 403  # the page is for signed-in sessions only
        assert topic.records == []
        assert _sign_outs("recorded") == recorded


class FailingWrites:
    """A sign-out store whose view is ready but whose writes fail, as when Kafka is down."""

    def __init__(self, error: Exception) -> None:
        self._store = InMemorySignOutStore()
        self._error = error

    @property
    def ready(self) -> bool:
        return True

    @property
    def caught_up_at(self) -> float:
        return time.time()

    @property
    def view(self) -> SignOutView:
        return self._store.view

    async def put(self, record: SignOut) -> int:
        raise self._error


@pytest.mark.parametrize(
    "error",
    [Unavailable("Kafka did not confirm the write within 30 s"), KafkaTimeoutError()],
)
async def test_a_failed_sign_out_still_deletes_the_cookie_and_says_so(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_console(signouts=FailingWrites(error)) as browser:
        await browser.sign_in("op_a")
        copied = browser.cookie()
        unrecorded = _sign_outs("unrecorded")
        with caplog.at_level(logging.WARNING, "cityhub.console"):
            page = await browser.post("/console/sign-out")
        assert page.status == 303
        assert page.location == "/console/sign-in?notice=unrecorded"
        assert _cookie(page.headers) == ""
        assert _sign_outs("unrecorded") == unrecorded + 1
        assert (await browser.get("/console/devices")).status == 303  # out in this browser
        notice = await browser.get(
            "/console/sign-in?notice=unrecorded", headers={"Accept-Language": "en"}
        )
        assert "could not record the sign-out" in notice.text
        assert 'role="alert"' in notice.text
        dutch = await browser.get("/console/sign-in?notice=unrecorded")
        assert "kon de afmelding niet vastleggen" in dutch.text
        # Honestly said: a copy still opens the session until it expires.
        assert (await browser.copy_get(copied)).status == 200
        session = SessionCodec(KEK).open(copied, time.time())
        assert session is not None
        [warning] = [r for r in caplog.records if "sign-out" in r.getMessage()]
        assert warning.levelno == logging.WARNING
        for secret in (session.id, session.csrf, browser.keys["op_a"], copied):
            assert secret not in warning.getMessage()


async def test_until_the_view_is_ready_a_signed_in_cookie_gets_a_503_and_is_kept() -> None:
    store = InMemorySignOutStore()
    async with running_console(signouts=store) as browser:
        await browser.sign_in("op_a")
        cookie = browser.cookie()
        await store.stop()  # not ready, as an API process before it has read the topic
        page = await browser.get("/console/devices", headers={"Accept-Language": "en"})
        assert page.status == 503
        assert page.headers["Retry-After"] == "5"
        assert "cannot check your session right now" in page.text
        assert _cookie(page.headers) is None  # left as it is
        assert (await browser.post("/console/sign-out")).status == 503
        # Anyone signed out still gets the sign-in page.
        assert (await browser.copy_get("", "/console/sign-in")).status == 200
        await store.start()
        assert browser.cookie() == cookie
        assert (await browser.get("/console/devices")).status == 200


class StaleView:
    """A sign-out store that started but has not caught up with its topic for a while, as in
    a process that cannot reach Kafka any more."""

    def __init__(self, caught_up_at: float) -> None:
        self._store = InMemorySignOutStore()
        self.caught_up_at = caught_up_at

    @property
    def ready(self) -> bool:
        return True

    @property
    def view(self) -> SignOutView:
        return self._store.view

    async def put(self, record: SignOut) -> int:
        return await self._store.put(record)


async def test_a_view_that_stopped_following_its_topic_fails_closed() -> None:
    """A process that cannot read the topic would miss sign-outs made elsewhere since: a
    signed-in cookie gets the 503 page until the view catches up again."""
    store = StaleView(caught_up_at=time.time())
    await store._store.start()
    async with running_console(signouts=store) as browser:
        await browser.sign_in("op_a")
        assert (await browser.get("/console/devices")).status == 200
        store.caught_up_at = time.time() - MAX_STALENESS_S - 1
        page = await browser.get("/console/devices", headers={"Accept-Language": "en"})
        assert page.status == 503
        assert "cannot reach Kafka" in page.text
        store.caught_up_at = time.time()
        assert (await browser.get("/console/devices")).status == 200


async def test_a_sign_out_ends_the_live_streams_of_copies_of_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("cityhub.streams.delivery.guarded_stream.KEEPALIVE_S", 0.05)
    topic = InMemoryTopic()
    async with running_console(signouts=InMemorySignOutStore(topic=topic)) as browser:
        await browser.sign_in("op_a")
        copied = browser.cookie()
        async with (
            another_process(browser, InMemorySignOutStore(topic=topic)) as other,
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as elsewhere,
            elsewhere.get(
                other.client.make_url("/console/devices/a-1/live"),
                headers={"Cookie": f"{COOKIE_NAME}={copied}"},
            ) as response,
        ):
            assert response.status == 200
            assert (await response.content.readline()).startswith(b"event: status")
            assert other.live.watching == 1
            await browser.post("/console/sign-out")
            rest = await asyncio.wait_for(response.content.read(), 5)  # the server ends it
            assert b"observation" not in rest
        await asyncio.sleep(0.05)
        assert other.live.watching == 0
