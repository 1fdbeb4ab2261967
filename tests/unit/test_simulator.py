"""The simulator's pure parts: fleet, readings, messages and duplicates, without a broker."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections import Counter
from typing import Any

import pytest

from cityhub.connectors.decoders.cayenne import decode_lpp
from cityhub.connectors.formats import get_format
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import parse_rfc3339
from cityhub.streams.devtools.simulator import (
    QUANTITIES,
    Device,
    FleetSimulator,
    Format,
    Kind,
    Traffic,
    build_fleet,
    chirpstack_uplink,
    json_message,
    lpp_payload,
    publisher,
    senml_message,
    tts_uplink,
)
from cityhub.streams.devtools.simulator.fleet import DEV_ADDR_BLOCK_SIZE, session_dev_addr
from cityhub.streams.devtools.simulator.messages import airtime_seconds

NOW = 1_760_000_000.0  # 2025-10-09, a Thursday; 09:53 in Amsterdam's winter time

RANGES: dict[str, tuple[float, float]] = {
    "temperature": (-20, 40),
    "humidity": (15, 100),
    "pressure": (960, 1050),
    "pm2_5": (0, 300),
    "pm10": (0, 320),
    "co2": (380, 2000),
    "no2": (0, 200),
    "laeq": (30, 110),
    "occupied": (0, 1),
    "distance": (0.05, 4),
    "fill_level": (0, 100),
    "count": (0, 500),
    "wind_speed": (0, 40),
    "wind_direction": (0, 360),
    "battery": (3.0, 3.65),
}


def _device(fmt: Format, *, decoded: bool | None = None, n: int = 200) -> Device:
    for d in build_fleet(n, seed=7).devices:
        if d.format is fmt and (decoded is None or d.decoded is decoded):
            return d
    raise AssertionError(f"no {fmt} device (decoded={decoded}) in the fleet")


def _lpp_names(device: Device, readings: dict[str, Any]) -> dict[str, Any]:
    """What decode_lpp gives for these readings: ``<lpp type>_<channel>`` names."""
    return {f"{QUANTITIES[q].lpp_type}_{QUANTITIES[q].lpp_channel}": v for q, v in readings.items()}


# --- fleet ---------------------------------------------------------------------------------


def test_fleet_is_deterministic_by_seed() -> None:
    assert build_fleet(50, seed=3) == build_fleet(50, seed=3)
    assert build_fleet(50, seed=3) != build_fleet(50, seed=4)


def test_fleet_mixes_kinds_formats_and_decoding() -> None:
    fleet = build_fleet(300, seed=1)
    assert {d.kind for d in fleet.devices} == set(Kind)
    assert {d.format for d in fleet.devices} == set(Format)
    lorawan = [d for d in fleet.devices if d.format.lorawan]
    assert any(d.decoded for d in lorawan)
    assert any(not d.decoded for d in lorawan)
    assert any(d.also_on is not None for d in lorawan)
    assert not any(d.decoded or d.receptions for d in fleet.devices if not d.format.lorawan)


def test_device_identities_are_well_formed_and_unique() -> None:
    fleet = build_fleet(500, seed=1)
    ids = [d.device_id for d in fleet.devices]
    euis = [d.dev_eui for d in fleet.devices]
    assert len(set(ids)) == len(ids)
    assert len(set(euis)) == len(euis)
    for d in fleet.devices:
        assert re.fullmatch(r"[a-z]+-\d{4}", d.device_id)
        assert re.fullmatch(r"70b3d57ed0[0-9a-f]{6}", d.dev_eui)
        assert re.fullmatch(r"[0-9a-f]{8}", d.dev_addr)
        assert 52.33 <= d.latitude <= 52.41
        assert 4.84 <= d.longitude <= 4.96
        if d.format.lorawan:
            assert 1 <= len(d.receptions) <= 4
            rssis = [r.rssi for r in d.receptions]
            assert rssis == sorted(rssis, reverse=True)
            assert 7 <= d.spreading_factor <= 12


def test_fleet_ids_carry_the_kind() -> None:
    prefixes = {"aq": Kind.AIR_QUALITY, "park": Kind.PARKING, "wx": Kind.WEATHER}
    for d in build_fleet(200, seed=2).devices:
        prefix = d.device_id.split("-")[0]
        if prefix in prefixes:
            assert d.kind is prefixes[prefix]


def test_fleet_formats_restrict_devices() -> None:
    fleet = build_fleet(40, seed=1, formats={"senml", "json"})
    assert {d.format for d in fleet.devices} == {Format.SENML, Format.JSON}
    assert all(d.also_on is None for d in build_fleet(200, formats={"tts"}).devices)


@pytest.mark.parametrize("formats", [set(), {"tts", "ttn"}])
def test_fleet_rejects_unknown_formats(formats: set[str]) -> None:
    with pytest.raises(ValueError, match="formats"):
        build_fleet(5, formats=formats)


def test_fleet_needs_a_device() -> None:
    with pytest.raises(ValueError, match="at least one"):
        build_fleet(0)


# --- readings ------------------------------------------------------------------------------


def test_readings_are_deterministic_and_plausible() -> None:
    fleet = build_fleet(100, seed=5)
    a, b = FleetSimulator(fleet), FleetSimulator(fleet)
    for step in range(60):  # a day and a half at 15 minutes
        for d in fleet.devices:
            fa = a.next_frame(d, NOW + step * 900)
            fb = b.next_frame(d, NOW + step * 900)
            assert fa == fb
            assert list(fa.readings) == list(d.quantities)
            for q, v in fa.readings.items():
                lo, hi = RANGES[q]
                assert lo <= v <= hi, (d.device_id, q, v)


def test_a_fault_ratio_makes_that_share_of_temperatures_a_flagged_fault_and_nothing_else() -> None:
    from cityhub.schemas.quality_limits import catalogue_limits
    from cityhub.streams.devtools.simulator.readings import FAULT_TEMPERATURE

    fleet = build_fleet(100, seed=5)
    plain, faulty = FleetSimulator(fleet), FleetSimulator(fleet, fault_ratio=0.1)
    temperatures = faults = 0
    for step in range(40):
        for d in fleet.devices:
            a, b = plain.next_frame(d, NOW + step * 900), faulty.next_frame(d, NOW + step * 900)
            if b.readings != a.readings:
                # Only the temperature differs, and only by being the fault.
                assert {q for q in a.readings if a.readings[q] != b.readings[q]} == {"temperature"}
                assert b.readings["temperature"] == FAULT_TEMPERATURE
                faults += 1
            temperatures += "temperature" in a.readings
    assert 0.05 < faults / temperatures < 0.15
    # The hub's catalogue takes it for implausible: flagged out_of_range (docs/quality.md).
    limits = catalogue_limits("temperature")
    assert limits.max is not None
    assert limits.max < FAULT_TEMPERATURE
    with pytest.raises(ValueError, match="fault_ratio"):
        FleetSimulator(fleet, fault_ratio=1.5)


def test_integer_quantities_are_ints() -> None:
    sim = FleetSimulator(build_fleet(100, seed=5))
    for d in sim.fleet.devices:
        readings = sim.next_frame(d, NOW).readings
        for q in ("occupied", "co2", "count", "fill_level", "wind_direction"):
            if q in readings:
                assert type(readings[q]) is int


def test_frame_counter_starts_at_zero_and_counts_per_device() -> None:
    fleet = build_fleet(3, seed=1)
    sim = FleetSimulator(fleet)
    assert [sim.next_frame(0, NOW + i).f_cnt for i in range(3)] == [0, 1, 2]
    assert sim.next_frame(1, NOW).f_cnt == 0


def test_each_session_gives_every_device_another_dev_addr_in_its_block() -> None:
    # As after an OTAA join: a run of the simulator is a session, frame counters from 0 and a
    # DevAddr of the session's, so that a hub that remembers the last run's frames keeps these.
    fleet = build_fleet(300, seed=1)
    block = {Format.TTS: 0x260B, Format.CHIRPSTACK: 0x0040}
    sessions = {s: FleetSimulator(fleet, session=s) for s in (0, 1, 1_795_914_000)}
    for d in fleet.devices:
        frames = {s: sim.next_frame(d, NOW) for s, sim in sessions.items()}
        assert frames[0].dev_addr == d.dev_addr  # session 0 keeps the fleet's addresses
        assert len({f.dev_addr for f in frames.values()}) == 3
        for f in frames.values():
            assert re.fullmatch(r"[0-9a-f]{8}", f.dev_addr)
            assert f.f_cnt == 0
            if d.format.lorawan:
                assert int(f.dev_addr, 16) >> 16 == block[d.format]
        # the readings do not depend on the session
        assert frames[0].readings == frames[1].readings
    # deterministic per session; the same address again only 65 536 sessions on
    again = FleetSimulator(fleet, session=1)
    assert [again.next_frame(d, NOW).dev_addr for d in fleet.devices] == [
        session_dev_addr(d, 1) for d in fleet.devices
    ]
    d = fleet.devices[0]
    assert session_dev_addr(d, 1 + DEV_ADDR_BLOCK_SIZE) == session_dev_addr(d, 1)
    assert session_dev_addr(d, -1) == session_dev_addr(d, DEV_ADDR_BLOCK_SIZE - 1)


def test_simulate_starts_a_session_of_its_own_unless_given_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions: list[int] = []

    class Stop(Exception):
        pass

    def traffic(*args: Any, session: int, **kwargs: Any) -> Traffic:
        sessions.append(session)
        raise Stop

    monkeypatch.setattr(publisher, "Traffic", traffic)
    settings = Settings()
    for clock in (1_795_914_000.4, 1_795_914_061.9):
        monkeypatch.setattr(publisher.time, "time", lambda clock=clock: clock)
        with pytest.raises(Stop):
            asyncio.run(publisher.simulate(settings, 5, 10.0, count=1))
    with pytest.raises(Stop):
        asyncio.run(publisher.simulate(settings, 5, 10.0, count=1, session=42))
    assert sessions == [1_795_914_000, 1_795_914_061, 42]


def test_the_cli_replays_a_session_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    # The command alone, not the cityhub group: the group sets up the process's logging.
    from cityhub.streams.cli import simulate as simulate_command

    sessions: list[int] = []

    def traffic(*args: Any, session: int, **kwargs: Any) -> Traffic:
        sessions.append(session)
        raise RuntimeError("stop here")

    async def any_broker(*args: Any) -> None:
        """No broker is needed: the run stops at its traffic."""

    monkeypatch.setattr(publisher, "Traffic", traffic)
    monkeypatch.setattr(publisher, "require_broker", any_broker)
    result = CliRunner().invoke(
        simulate_command, ["--no-register", "--count", "1", "--session", "7"]
    )
    assert isinstance(result.exception, RuntimeError)
    assert sessions == [7]
    refused = CliRunner().invoke(simulate_command, ["--no-register", "--session", "-1"])
    assert refused.exit_code == 2
    assert "--session" in refused.output


def test_noise_follows_the_daily_cycle() -> None:
    fleet = build_fleet(300, seed=1, formats={"json"})
    noisy = [d for d in fleet.devices if d.kind is Kind.NOISE]
    sim = FleetSimulator(fleet)
    midnight = 1_760_050_800.0  # 00:00 in Amsterdam (UTC+1)
    night = [sim.next_frame(d, midnight + 3 * 3600).readings["laeq"] for d in noisy]
    rush = [sim.next_frame(d, midnight + 17.5 * 3600).readings["laeq"] for d in noisy]
    assert sum(rush) / len(rush) > sum(night) / len(night) + 10


# --- The Things Stack ----------------------------------------------------------------------


def test_tts_uplink_shape() -> None:
    d = _device(Format.TTS, decoded=True)
    readings = FleetSimulator(build_fleet(200, seed=7)).next_frame(d, NOW).readings
    topic, payload = tts_uplink(d, 42, readings, NOW)
    assert topic == f"v3/{d.application}@gemeente-amsterdam/devices/{d.device_id}/up"
    msg = json.loads(payload)
    ids = msg["end_device_ids"]
    assert ids["device_id"] == d.device_id
    assert ids["application_ids"] == {"application_id": d.application}
    assert ids["dev_eui"] == d.dev_eui.upper()
    assert {"join_eui", "dev_addr"} <= set(ids)
    assert msg["correlation_ids"]
    parse_rfc3339(msg["received_at"])
    up = msg["uplink_message"]
    assert up["f_port"] == 1
    assert up["f_cnt"] == 42
    assert up["decoded_payload"] == dict(readings)
    assert decode_lpp(base64.b64decode(up["frm_payload"])) == _lpp_names(d, dict(readings))
    assert up["rx_metadata"]
    for rx in up["rx_metadata"]:
        assert set(rx["gateway_ids"]) == {"gateway_id", "eui"}
        assert re.fullmatch(r"[0-9A-F]{16}", rx["gateway_ids"]["eui"])
        assert -125 <= rx["rssi"] <= -30
        assert rx["channel_rssi"] == rx["rssi"]
        assert -20 <= rx["snr"] <= 13.5
        assert isinstance(rx["timestamp"], int)
        assert {"time", "uplink_token", "received_at"} <= set(rx)
        parse_rfc3339(rx["time"])
    lora = up["settings"]["data_rate"]["lora"]
    assert lora == {
        "bandwidth": 125_000,
        "spreading_factor": d.spreading_factor,
        "coding_rate": "4/5",
    }
    assert up["settings"]["frequency"].isdigit()  # TTS prints uint64 as a string
    assert {"timestamp", "time"} <= set(up["settings"])
    assert re.fullmatch(r"\d+\.\d+s", up["consumed_airtime"])
    assert up["network_ids"]["net_id"] == "000013"
    parse_rfc3339(up["received_at"])


def test_tts_omits_f_cnt_zero_and_decoded_payload_when_raw() -> None:
    d = _device(Format.TTS, decoded=False)
    readings = FleetSimulator(build_fleet(200, seed=7)).next_frame(d, NOW).readings
    up = json.loads(tts_uplink(d, 0, readings, NOW)[1])["uplink_message"]
    assert "f_cnt" not in up
    assert "decoded_payload" not in up
    assert decode_lpp(base64.b64decode(up["frm_payload"])) == _lpp_names(d, dict(readings))


def test_multiple_gateways_with_different_signal() -> None:
    fleet = build_fleet(300, seed=7)
    d = next(d for d in fleet.devices if d.format is Format.TTS and len(d.receptions) >= 3)
    readings = {"occupied": 1}
    counts: Counter[int] = Counter()
    rssis: set[int] = set()
    for f_cnt in range(1, 30):
        rx = json.loads(tts_uplink(d, f_cnt, readings, NOW + f_cnt)[1])["uplink_message"]
        counts[len(rx["rx_metadata"])] += 1
        rssis.update(r["rssi"] for r in rx["rx_metadata"])
        assert len({r["gateway_ids"]["eui"] for r in rx["rx_metadata"]}) == len(rx["rx_metadata"])
    assert max(counts) >= 2
    assert len(rssis) > 3


def test_messages_are_deterministic() -> None:
    d = _device(Format.TTS)
    assert tts_uplink(d, 5, {"battery": 3.5}, NOW) == tts_uplink(d, 5, {"battery": 3.5}, NOW)
    c = _device(Format.CHIRPSTACK)
    r = {"battery": 3.5}
    assert chirpstack_uplink(c, 5, r, NOW) == chirpstack_uplink(c, 5, r, NOW)


# --- ChirpStack ----------------------------------------------------------------------------


def test_chirpstack_uplink_shape() -> None:
    d = _device(Format.CHIRPSTACK, decoded=True)
    readings = FleetSimulator(build_fleet(200, seed=7)).next_frame(d, NOW).readings
    topic, payload = chirpstack_uplink(d, 9, readings, NOW)
    assert topic == f"application/{d.chirpstack_application_id}/device/{d.dev_eui}/event/up"
    msg = json.loads(payload)
    assert re.fullmatch(r"[0-9a-f-]{36}", msg["deduplicationId"])
    parse_rfc3339(msg["time"])
    info = msg["deviceInfo"]
    assert info["devEui"] == d.dev_eui
    assert info["deviceName"] == d.device_id
    assert info["applicationId"] == d.chirpstack_application_id
    assert {
        "tenantId",
        "tenantName",
        "applicationName",
        "deviceProfileId",
        "deviceProfileName",
        "deviceClassEnabled",
        "tags",
    } <= set(info)
    assert msg["devAddr"] == d.dev_addr
    assert msg["adr"] is True
    assert msg.get("dr", 0) == 12 - d.spreading_factor
    assert msg["fCnt"] == 9
    assert msg["fPort"] == 1
    assert "confirmed" not in msg  # false: left out
    assert msg["object"] == dict(readings)
    assert decode_lpp(base64.b64decode(msg["data"])) == _lpp_names(d, dict(readings))
    for rx in msg["rxInfo"]:
        assert re.fullmatch(r"[0-9a-f]{16}", rx["gatewayId"])
        assert isinstance(rx["uplinkId"], int)
        assert rx["crcStatus"] == "CRC_OK"
        assert {"gwTime", "nsTime", "rssi", "snr", "location", "context", "metadata"} <= set(rx)
        parse_rfc3339(rx["gwTime"])
    lora = msg["txInfo"]["modulation"]["lora"]
    assert lora == {
        "bandwidth": 125_000,
        "spreadingFactor": d.spreading_factor,
        "codeRate": "CR_4_5",
    }
    assert isinstance(msg["txInfo"]["frequency"], int)


def test_chirpstack_omits_f_cnt_zero_and_object_when_raw() -> None:
    d = _device(Format.CHIRPSTACK, decoded=False)
    msg = json.loads(chirpstack_uplink(d, 0, {"battery": 3.41}, NOW)[1])
    assert "fCnt" not in msg
    assert "object" not in msg
    assert decode_lpp(base64.b64decode(msg["data"])) == {"voltage_15": 3.41}


def test_plain_mqtt_devices_have_no_lorawan_rendering() -> None:
    d = _device(Format.SENML)
    with pytest.raises(ValueError, match="not a LoRaWAN device"):
        tts_uplink(d, 1, {"laeq": 50.0}, NOW)


# --- plain MQTT ----------------------------------------------------------------------------


def test_senml_message() -> None:
    d = _device(Format.SENML)
    topic, payload = senml_message(d, {"temperature": 21.5, "humidity": 50.0, "occupied": 1}, NOW)
    assert topic == f"cityhub/ingest/{d.device_id}"
    pack = json.loads(payload)
    assert pack[0]["bn"] == f"urn:dev:eui64:{d.dev_eui}:"
    assert pack[0]["bt"] == NOW
    assert [(r["n"], r.get("u"), r["v"]) for r in pack] == [
        ("temperature", "Cel", 21.5),
        ("humidity", "%RH", 50.0),
        ("occupied", None, 1),
    ]
    assert all("bn" not in r and "bt" not in r for r in pack[1:])


def test_json_message() -> None:
    d = _device(Format.JSON)
    topic, payload = json_message(d, {"laeq": 61.2, "battery": 3.3}, NOW)
    assert topic == f"cityhub/ingest/{d.device_id}"
    body = json.loads(payload)
    assert parse_rfc3339(body.pop("time")).timestamp() == NOW
    assert body == {"laeq": 61.2, "battery": 3.3}


def test_every_quantity_round_trips_through_cayenne() -> None:
    readings = {
        "temperature": -3.4,
        "humidity": 87.5,
        "pressure": 1012.3,
        "pm2_5": 12.3,
        "pm10": 20.1,
        "co2": 612,
        "no2": 33.3,
        "laeq": 71.4,
        "occupied": 1,
        "distance": 1.234,
        "fill_level": 73,
        "count": 41,
        "wind_speed": 7.2,
        "wind_direction": 245,
        "battery": 3.42,
    }
    assert set(readings) == set(QUANTITIES)
    decoded = decode_lpp(lpp_payload(readings))
    assert decoded == {f"{q.lpp_type}_{q.lpp_channel}": readings[n] for n, q in QUANTITIES.items()}


def test_airtime_matches_the_semtech_calculator() -> None:
    # 13-byte header + 10-byte payload: SF7 ~ 61.7 ms, SF12 ~ 1482.8 ms (Semtech's calculator).
    assert airtime_seconds(23, 7) == pytest.approx(0.061696, abs=1e-6)
    assert airtime_seconds(23, 12) == pytest.approx(1.482752, abs=1e-6)


# --- traffic and duplicates ----------------------------------------------------------------


def _run(traffic: Traffic, n: int) -> list[Any]:
    return [traffic.next_message(NOW + i) for i in range(n)]


def test_traffic_is_deterministic_and_round_robin() -> None:
    fleet = build_fleet(10, seed=3)
    a = _run(Traffic(fleet, seed=3), 30)
    b = _run(Traffic(fleet, seed=3), 30)
    assert [(m.topic, m.payload) for m in a] == [(m.topic, m.payload) for m in b]
    first_cycle = [m.device_id for m in a[:10]]
    assert sorted(first_cycle) == sorted(d.device_id for d in fleet.devices)
    assert [m.device_id for m in a[10:20]] == first_cycle
    assert not any(m.duplicate for m in a)


def test_duplicates_keep_the_frame_counter() -> None:
    fleet = build_fleet(50, seed=4, formats={"tts", "chirpstack"})
    traffic = Traffic(fleet, seed=4, duplicate_ratio=0.5)
    messages = _run(traffic, 400)
    dups = [m for m in messages if m.duplicate]
    assert 0.25 * 400 / 1.5 < len(dups) < 0.75 * 400 / 1.5
    cross = 0
    for i, m in enumerate(messages):
        if not m.duplicate:
            continue
        original = messages[i - 1]  # a duplicate follows its original
        assert not original.duplicate
        assert (m.device_id, m.f_cnt) == (original.device_id, original.f_cnt)
        device = fleet.by_id(m.device_id)
        if device.also_on is not None:
            cross += 1
            assert m.format is device.also_on
        else:
            assert m.format is original.format
            assert m.topic == original.topic
            assert m.payload != original.payload  # another gateway path
        assert _frame_payload(m) == _frame_payload(original)
    assert cross > 0


def _frame_payload(m: Any) -> tuple[int | None, str]:
    msg = json.loads(m.payload)
    if m.format is Format.TTS:
        return msg["uplink_message"].get("f_cnt", 0), msg["uplink_message"]["frm_payload"]
    return msg.get("fCnt", 0), msg["data"]


def test_duplicate_ratio_is_bounded() -> None:
    with pytest.raises(ValueError, match="duplicate_ratio"):
        Traffic(build_fleet(2), duplicate_ratio=1.5)


# --- contract with the ingest formats ------------------------------------------------------

_FORMAT_NAMES = {
    Format.TTS: "tts-v3",
    Format.CHIRPSTACK: "chirpstack-v4",
    Format.SENML: "cityhub-json",
    Format.JSON: "cityhub-json",
}


def test_every_simulated_message_parses_with_the_hub_formats() -> None:
    fleet = build_fleet(200, seed=9)
    traffic = Traffic(fleet, seed=9, duplicate_ratio=0.1, session=77)
    seen: Counter[Format] = Counter()
    for i in range(1000):
        m = traffic.next_message(NOW + i)
        fmt = get_format(_FORMAT_NAMES[m.format])
        uplink = fmt.parse(m.topic, m.payload, NOW + i + 0.5)
        assert fmt.partition_key(m.topic, m.payload)
        if m.format.lorawan:
            assert uplink.f_cnt == m.f_cnt
            assert uplink.gateways
            # the session's DevAddr, on both network servers (a copy is the same frame)
            assert uplink.dev_addr == session_dev_addr(fleet.by_id(m.device_id), 77)
        seen[m.format] += 1
    assert set(seen) == set(Format)


async def test_no_broker_is_one_line_not_a_traceback() -> None:
    import socket

    from cityhub.schemas.errors import StackError
    from cityhub.schemas.settings import MqttSettings, Settings
    from cityhub.streams.devtools.simulator import simulate

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(mqtt=MqttSettings(host="127.0.0.1", port=port))
    with pytest.raises(StackError, match=f"127.0.0.1:{port} is not reachable"):
        await simulate(settings, 1, 10.0, count=1)


def test_the_command_finds_no_broker_before_it_registers_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from click.testing import CliRunner

    from cityhub.streams.cli import simulate as simulate_command
    from cityhub.streams.devtools.simulator import registration

    async def must_not_register(*args: object, **kw: object) -> None:
        raise AssertionError("the fleet was registered before the broker was found")

    monkeypatch.setattr(registration, "register_fleet", must_not_register)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"CITYHUB_MQTT__HOST": "127.0.0.1", "CITYHUB_MQTT__PORT": str(port)}
    result = CliRunner().invoke(simulate_command, ["--count", "1"], env=env)
    assert result.exit_code == 1, result.output
    assert f"127.0.0.1:{port} is not reachable" in result.output
    assert "Traceback" not in result.output


async def test_only_an_mqtt_broker_passes_for_one() -> None:
    """Something listening that is no MQTT broker (another service, a TLS port) is refused as
    none is, a broker that refuses the login says so; one that accepts the CONNECT passes."""
    import asyncio

    from cityhub.schemas.errors import StackError
    from cityhub.schemas.settings import MqttSettings
    from cityhub.streams.devtools.simulator.publisher import require_broker

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        writer.close()

    async def mqtt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        packet = await reader.read(100)
        assert packet[0] == 0x10
        assert b"cityhub-probe-" in packet
        writer.write(b"\x20\x02\x00\x00")  # CONNACK, accepted
        await writer.drain()
        assert await reader.read(2) == b"\xe0\x00"  # and the probe says goodbye
        writer.close()

    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"\x20\x02\x00\x05")  # CONNACK 5: not authorised
        writer.close()

    cases = ((http, "does not answer as an MQTT broker"), (refusing, "refused"), (mqtt, None))
    for handler, refused in cases:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = MqttSettings(host="127.0.0.1", port=port)
        async with server:
            if refused is None:
                await require_broker(settings, timeout=2.0)
            else:
                with pytest.raises(StackError, match=refused):
                    await require_broker(settings, timeout=2.0)


def test_the_probe_logs_in_as_the_simulator_will() -> None:
    from pydantic import SecretStr

    from cityhub.schemas.settings import MqttSettings
    from cityhub.streams.devtools.simulator.publisher import _connect_packet

    anonymous = _connect_packet(MqttSettings())
    assert anonymous[0] == 0x10
    assert anonymous[9] == 0x02  # clean session, no user
    user = _connect_packet(MqttSettings(username="sim", password=SecretStr("s3cret-" * 30)))
    assert user[1] & 0x80  # 230 bytes and more: two bytes of remaining length
    assert user[10] == 0xC2  # user, password, clean session
    assert user.endswith(b"s3cret-" * 30)
