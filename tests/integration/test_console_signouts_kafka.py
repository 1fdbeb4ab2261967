"""Signing out of the console on the local Kafka, across two API processes' consoles (each with a
``SignOutStore`` of its own on one topic, as two processes behind a load balancer): a cookie
copied before the sign-out is refused by the process that signed out at once, and by the other
within a few seconds; a process started afterwards reads the sign-out from the topic; the topic
is created compacted and deleted, with the retention cityhub asks for."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.console.session import SessionCodec
from cityhub.streams.console.signouts import SignOutStore
from cityhub.streams.topic_admin import CONSOLE_SIGNOUTS_RETENTION_MS
from tests.unit.console_support import KEK, another_process, running_console

from .hub import BOOTSTRAP

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WITHIN_SECONDS = 5.0


@pytest.fixture
def settings() -> Settings:
    """A topic prefix of the test's own (the session deletes its topics: conftest.py)."""
    prefix = f"signouts-{uuid.uuid4().hex[:10]}"
    return Settings(kafka=KafkaSettings(bootstrap_servers=BOOTSTRAP, topic_prefix=prefix))


async def _topic_config(topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="signouts-test")
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, None)]
        )
        [(_code, _message, _type, _name, entries)] = response.resources
        return {key: value for key, value, *_ in entries}
    finally:
        await admin.close()


async def test_a_sign_out_in_one_process_refuses_the_copied_cookie_in_the_other(
    settings: Settings,
) -> None:
    prefix = settings.kafka.topic_prefix
    first = SignOutStore(settings, client_id=f"{prefix}-api-1")
    second = SignOutStore(settings, client_id=f"{prefix}-api-2")
    await first.start(timeout=30.0)
    await second.start(timeout=30.0)
    try:
        async with (
            running_console(signouts=first) as browser,
            another_process(browser, second) as other,
        ):
            await browser.sign_in("op_a")
            copied = browser.cookie()
            session = SessionCodec(KEK).open(copied, time.time())
            assert (await other.copy_get(copied)).status == 200  # the copy works elsewhere
            page = await browser.post("/console/sign-out")
            assert page.location == "/console/sign-in?notice=out"  # Kafka confirmed it
            loop = asyncio.get_running_loop()
            signed_out_at = loop.time()
            # The process that signed out has applied it before it answered.
            assert (await browser.copy_get(copied)).status == 303
            # The other follows the topic: within a few seconds.
            while (refused := await other.copy_get(copied)).status != 303:
                assert refused.status == 200
                assert loop.time() - signed_out_at < WITHIN_SECONDS, "still signed in"
                await asyncio.sleep(0.02)
            assert refused.location == "/console/sign-in"
        # An API process that starts later reads the sign-out from the topic.
        third = SignOutStore(settings, client_id=f"{prefix}-api-3")
        await third.start(timeout=30.0)
        try:
            assert session is not None
            assert third.view.signed_out(session.id)
        finally:
            await third.stop()
    finally:
        await first.stop()
        await second.stop()
    config = await _topic_config(Topics.for_prefix(prefix).console_signouts)
    assert config["cleanup.policy"] == "compact,delete"
    assert config["retention.ms"] == str(CONSOLE_SIGNOUTS_RETENTION_MS)
