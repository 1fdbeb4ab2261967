"""``cityhub deadletters replay`` on the real stack: the uplinks of a device registered after
they were dead-lettered come out as observations, once, however often the replay runs; a
device still unknown is skipped, and a dry run writes nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from cityhub.connectors.decoders.cayenne import encode_lpp
from cityhub.schemas.registry import DeviceSpec
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry

from .hub import Hub, publish, read_topic
from .uplinks import chirpstack, unique_eui

pytestmark = pytest.mark.integration

ADMIN = Principal.system()
PAYLOAD = encode_lpp([(1, "temperature", 7.5), (2, "relative_humidity", 88.0)])


def _counts(observations: list[dict[str, object]], device: str) -> Counter[tuple[object, object]]:
    """How often each (frame counter, quantity) of ``device`` came out."""
    return Counter(
        (o["network"]["f_cnt"], o["quantity"])  # type: ignore[index]
        for o in observations
        if o["device_id"] == device
    )


async def _until_metric(hub: Hub, name: str, at_least: float, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while hub.metric(name) < at_least:
        assert time.monotonic() < deadline, f"{name} below {at_least}:\n{hub.log_tail()}"
        await asyncio.sleep(0.5)


async def test_late_registered_uplinks_are_replayed_once(
    weather_hub: tuple[Hub, Registry],
) -> None:
    hub, registry = weather_hub
    late, never = unique_eui(), unique_eui()
    await publish(
        [
            chirpstack(late, 1, payload=PAYLOAD),
            chirpstack(late, 2, payload=PAYLOAD),
            chirpstack(never, 1, payload=PAYLOAD),
        ]
    )
    letters = await read_topic(
        hub.topics["deadletter"],
        until=lambda r: sum(x["reason"] == "unknown_device" for x in r) >= 3,
        timeout=60,
    )
    assert sum(x["reason"] == "unknown_device" for x in letters) == 3

    await registry.create_device(
        ADMIN, "city", DeviceSpec(id="weather-late", name="Late", type="weather", dev_eui=late)
    )
    # The worker knows the device once a new uplink of it comes out.
    await publish([chirpstack(late, 3, payload=PAYLOAD)])
    await read_topic(
        hub.topics["observations"],
        until=lambda r: (3, "temperature") in _counts(r, "weather-late"),
        timeout=60,
    )

    dry = hub.cli("deadletters", "replay", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would replay 2 letter(s): 2 as the raw topic holds them" in dry.stdout
    assert "skipped 1: device still not registered" in dry.stdout
    await asyncio.sleep(3)
    observations = await read_topic(hub.topics["observations"], until=lambda r: False, timeout=3)
    assert set(_counts(observations, "weather-late")) == {
        (3, "temperature"),
        (3, "relative_humidity"),
    }

    done = hub.cli("deadletters", "replay", "--tenant", "city", "--reason", "unknown_device")
    assert done.returncode == 0, done.stderr
    assert "replayed 2 letter(s)" in done.stdout
    expected = {(f, q): 1 for f in (1, 2, 3) for q in ("temperature", "relative_humidity")}
    observations = await read_topic(
        hub.topics["observations"],
        until=lambda r: set(_counts(r, "weather-late")) >= set(expected),
        timeout=60,
    )
    assert _counts(observations, "weather-late") == expected

    # Run again: the letters are still there, the normaliser takes the copies as duplicates.
    duplicates = hub.metric("cityhub_normaliser_duplicates_total")
    again = hub.cli("deadletters", "replay", "--device", late)
    assert again.returncode == 0, again.stderr
    assert "replayed 2 letter(s)" in again.stdout
    await _until_metric(hub, "cityhub_normaliser_duplicates_total", duplicates + 2)
    observations = await read_topic(hub.topics["observations"], until=lambda r: False, timeout=3)
    assert _counts(observations, "weather-late") == expected
    replayed = await read_topic(hub.topics["raw"], until=lambda r: len(r) >= 8, timeout=30)
    assert len(replayed) == 8  # 4 uplinks in, 2 replays twice; the dry run wrote nothing
