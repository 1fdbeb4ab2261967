"""The four "Adding ..." examples of docs/extending.md are real: each code block is run as it
stands (its imports included) and what it defines is held to the Protocol it claims, the way
cityhub holds its own plugins and agents: the registry's checks, a subscription that names the
kind, a message through the normaliser's functions, a batch through the agent, the agent wired
beside the built-in ones.

A block is found by the HTML comment just above it (``<!-- readme-example: sink -->``), so a
missing or renamed example fails here too. So does one that went stale: an import that moved,
a Protocol member it lacks or whose parameters differ, a model the registry refuses, a step that
raises for a record or returns something other than ``Write``s.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from cityhub.connectors.decoders import get_decoder
from cityhub.connectors.decoders.base import PayloadDecoder
from cityhub.connectors.formats import IngestFormat
from cityhub.connectors.formats.base import Uplink
from cityhub.connectors.measurements import measurements_from_fields
from cityhub.connectors.plugins import PluginRegistry
from cityhub.connectors.sinks import (
    get_sink,
    register_sink,
    subscription_models,
    unregister_sink,
    validate_spec,
)
from cityhub.connectors.sinks.base import DeliverySink, Item, Sink, SpecContext
from cityhub.schemas.aggregate import Aggregate, aggregate_id
from cityhub.schemas.envelope import RawEnvelope
from cityhub.schemas.errors import MessageError, Reason, UndecodablePayload, UnknownFormat
from cityhub.schemas.observation import encode_uplink
from cityhub.schemas.settings import Settings
from cityhub.schemas.timefmt import rfc3339
from cityhub.schemas.validation import errors
from cityhub.streams.aggregation.agent import AggregatorAgent
from cityhub.streams.normaliser.agent import NormaliserAgent
from cityhub.streams.normaliser.normalise import measurements_of, observations_from_uplink
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.runtime.agent import Agent, StoredEntry, Write
from cityhub.streams.runtime.worker import Worker
from cityhub.streams.testing import RecordingWriter

README = Path(__file__).resolve().parents[2] / "docs" / "extending.md"
EXAMPLE = re.compile(
    r"^<!-- readme-example: (?P<name>[a-z-]+) -->\n```python\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
NAMES = ("sink", "format", "decoder", "agent")
SETTINGS = Settings()
NOW = 1_795_914_000.0


def examples(text: str) -> dict[str, str]:
    """The example blocks of ``text`` by name; a name given twice is an error."""
    found: dict[str, str] = {}
    for match in EXAMPLE.finditer(text):
        name = match["name"]
        assert name not in found, f"two examples in docs/extending.md are named {name!r}"
        found[name] = match["code"]
    return found


def run_example(name: str, code: str) -> types.ModuleType:
    """The example run as a module of its own (pydantic resolves a model's annotations through
    its module, so the module must be importable while the example is checked)."""
    module = types.ModuleType(f"readme_example_{name.replace('-', '_')}")
    sys.modules[module.__name__] = module
    exec(compile(code, f"docs/extending.md example {name!r}", "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def readme() -> dict[str, str]:
    return examples(README.read_text("utf-8"))


@pytest.fixture
def example(readme: dict[str, str], request: pytest.FixtureRequest) -> Iterator[types.ModuleType]:
    name = request.param
    assert name in readme, f"README.md has no example marked <!-- readme-example: {name} -->"
    module = run_example(name, readme[name])
    yield module
    sys.modules.pop(module.__name__, None)


def defined_classes(module: types.ModuleType) -> list[type]:
    """The classes the example itself defines (not the ones it imports), models left out."""
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and obj.__module__ == module.__name__
        and not issubclass(obj, BaseModel)
    ]


def the_instance(module: types.ModuleType, protocol: type, *args: Any) -> Any:
    """The one instance of a class the example defines (made with ``args``) that has every
    member of ``protocol``."""
    found, lacking = [], []
    for cls in defined_classes(module):
        try:
            obj = cls(*args)
        except TypeError:  # a class made with other arguments (a sink, made by its kind)
            continue
        missing = missing_members(obj, protocol)
        if missing:
            lacking.append(f"{cls.__name__} lacks {missing}")
        else:
            found.append(obj)
    assert len(found) == 1, (
        f"the example should define one {protocol.__name__}, found {found}: {'; '.join(lacking)}"
    )
    return found[0]


def protocol_members(protocol: type) -> dict[str, Any]:
    """Every member ``protocol`` declares (attributes, properties, methods), with the
    declaration (None for a bare attribute)."""
    members: dict[str, Any] = {}
    for base in reversed(protocol.__mro__):
        if base is object or base.__module__ == "typing":  # Protocol, Generic
            continue
        members.update(dict.fromkeys(getattr(base, "__annotations__", {})))
        members.update(
            {
                name: value
                for name, value in vars(base).items()
                if not name.startswith("_") and (callable(value) or isinstance(value, property))
            }
        )
    return members


def missing_members(obj: Any, protocol: type) -> list[str]:
    """What ``obj`` lacks or declares differently: a member, a method's parameter names, a
    coroutine function where the Protocol has one (or a plain one where it has a plain one)."""
    wrong = []
    for name, declared in protocol_members(protocol).items():
        if not hasattr(obj, name):
            wrong.append(f"no {name}")
            continue
        if not inspect.isfunction(declared):
            continue
        given = getattr(obj, name)
        if not callable(given):
            wrong.append(f"{name} is not a method")
            continue
        want = list(inspect.signature(declared).parameters)[1:]  # without self
        has = list(inspect.signature(given).parameters)
        if has != want:
            wrong.append(f"{name}{tuple(has)}, the Protocol has {name}{tuple(want)}")
        if inspect.iscoroutinefunction(declared) != inspect.iscoroutinefunction(given):
            wrong.append(f"{name} is {'not ' * inspect.iscoroutinefunction(declared)}async")
    return wrong


def test_the_readme_has_each_example_once(readme: dict[str, str]) -> None:
    assert sorted(readme) == sorted(NAMES)


def test_the_member_check_sees_what_an_example_lacks() -> None:
    class Half:
        name = "half"

        def decode(self, payload: bytes) -> dict[str, Any]:
            return {}

    class NoStep:
        name = topic = "x"
        changelog = tick_interval = None
        partitions: frozenset[int] = frozenset()

    assert missing_members(Half(), PayloadDecoder) == [
        "decode('payload',), the Protocol has decode('payload', 'f_port')"
    ]
    assert {"no assign", "no step", "no revoke", "no tick"} <= set(missing_members(NoStep(), Agent))
    assert missing_members(get_decoder("cayenne-lpp"), PayloadDecoder) == []


# --- the delivery sink ---------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["sink"], indirect=True)
async def test_the_sink_example_is_a_delivery_kind_the_registry_takes_and_a_task_can_drive(
    example: types.ModuleType,
) -> None:
    kind = the_instance(example, DeliverySink)
    assert isinstance(kind, DeliverySink)
    register_sink(kind)  # the registry's checks: the Protocol, models that name the kind
    try:
        assert get_sink(kind.kind) is kind
        spec = validate_spec(
            {"id": "readme", "name": "readme example", "delivery": {"kind": kind.kind}}
        )
        assert isinstance(spec.delivery, kind.spec_model)
        await kind.check(spec.delivery, SpecContext("demo", "readme", SETTINGS))
        record = subscription_models().record.model_validate(
            {
                **spec.model_dump(mode="json"),
                "tenant": "demo",
                "created_at": "2026-12-01T00:00:00.000Z",
                "updated_at": "2026-12-01T00:00:00.000Z",
            }
        )
        kind.public_model.model_validate(record.delivery.public())
        sink = kind.build(record, SETTINGS)
        assert isinstance(sink, Sink)
        assert missing_members(sink, Sink) == []
        items = [Item(0, offset, 0, b"dev-1", b'{"value": %d}' % offset) for offset in range(3)]
        await sink.start()
        await sink.send(items, "msg-1")
        await sink.stop()
        await sink.stop()  # idempotent
        with pytest.raises(RuntimeError):
            await sink.send(items, "msg-2")
    finally:
        unregister_sink(kind.kind)


# --- the ingest format ---------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["format"], indirect=True)
def test_the_format_example_parses_a_message_into_valid_observations(
    example: types.ModuleType,
) -> None:
    fmt = the_instance(example, IngestFormat)
    registry: PluginRegistry[IngestFormat] = PluginRegistry(
        kind="ingest format",
        protocol=IngestFormat,
        entry_point_group="cityhub.formats.readme",
        not_found=UnknownFormat,
    )
    registry.register(fmt)  # what register_format checks
    topic, payload = "cityhub/kv/noise-0001", b"sound_level=61.5 temperature=21.5"
    key = fmt.partition_key(topic, payload)
    assert key == "noise-0001"
    envelope = RawEnvelope("mqtt", fmt.name, topic, key, rfc3339(NOW), payload)
    observations = observations_from_uplink(fmt.parse(topic, payload, NOW), envelope)
    assert {(o.quantity, o.value, o.unit) for o in observations} == {
        ("sound_level", 61.5, "dB"),
        ("temperature", 21.5, "Cel"),
    }
    for observation, doc in zip(observations, encode_uplink(observations), strict=True):
        assert observation.device_id == "noise-0001"
        assert errors("observation", orjson.loads(doc)) == []


@pytest.mark.parametrize("example", ["format"], indirect=True)
def test_the_format_example_refuses_a_bad_message_with_a_reason_and_keys_anything(
    example: types.ModuleType,
) -> None:
    fmt = the_instance(example, IngestFormat)
    with pytest.raises(MessageError) as refused:
        fmt.parse("cityhub/kv/noise-0001", b"sound_level=loud", NOW)
    assert refused.value.reason is Reason.SCHEMA_MISMATCH
    for topic, payload in [("", b""), ("/", b"\xff\x00"), ("cityhub/kv/", b"=")]:
        assert isinstance(fmt.partition_key(topic, payload), str)


# --- the payload decoder -------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["decoder"], indirect=True)
def test_the_decoder_example_decodes_into_catalogued_measurements(
    example: types.ModuleType,
) -> None:
    decoder = the_instance(example, PayloadDecoder)
    assert isinstance(decoder, PayloadDecoder)
    payload = bytes([0x04, 0xD2, 90])  # 1 234 mm, 90 %
    fields = decoder.decode(payload, 2)
    assert {(m.quantity, m.value, m.unit) for m in measurements_from_fields(fields)} == {
        ("water_level", 1.234, "m"),
        ("battery", 90, "%"),
    }
    # As the normaliser takes it for a device type that names the decoder.
    uplink = Uplink(network="chirpstack", device_id="gauge-1", frm_payload=payload, f_port=2)
    decoders: Callable[[str], PayloadDecoder] = {decoder.name: decoder}.__getitem__
    assert len(measurements_of(uplink, decoder=decoder.name, decoders=decoders)) == 2
    with pytest.raises(UndecodablePayload) as refused:
        decoder.decode(b"\x01", 2)
    assert refused.value.reason is Reason.UNDECODABLE_PAYLOAD


# --- the agent -----------------------------------------------------------------------------------


def aggregate_record(offset: int, quantity: str, mean: float, size: int) -> Any:
    """A record of the aggregates topic as the aggregator writes it."""
    start = 1_795_910_400
    doc = Aggregate(
        aggregate_id=aggregate_id(
            "device", "city", "noise-0001", quantity, "dB", size, start * 1_000_000
        ),
        grouping="device",
        key="noise-0001",
        tenant="city",
        classification="public",
        device_id="noise-0001",
        area="centrum",
        quantity=quantity,
        unit="dB",
        window_size=size,
        window_start=rfc3339(start),
        window_end=rfc3339(start + size),
        count=2,
        min=mean - 1,
        max=mean + 1,
        sum=2 * mean,
        mean=mean,
        last=mean,
        last_observed_at=rfc3339(start + 1),
        last_event_id="317c4367-656f-5c42-8e82-d65b23b95e8e",
        revision=0,
    )

    @dataclass(frozen=True)
    class Rec:
        offset: int
        value: bytes | None
        key: bytes | None = doc.kafka_key()
        partition: int = 0
        topic: str = "cityhub.aggregates"
        timestamp: int = doc.timestamp_ms()
        headers: list[tuple[str, bytes]] = field(default_factory=list)

    return Rec(offset, doc.to_json())


@pytest.mark.parametrize("example", ["agent"], indirect=True)
def test_the_agent_example_steps_a_batch_into_writes_and_never_raises_for_a_record(
    example: types.ModuleType,
) -> None:
    agent = the_instance(example, Agent, SETTINGS)
    assert isinstance(agent.name, str)
    assert isinstance(agent.topic, str)
    assert agent.changelog is None or isinstance(agent.changelog, str)
    stored: list[StoredEntry] = []  # a partition taken over for the first time
    assert all(isinstance(w, Write) for w in agent.assign(0, stored))
    assert 0 in agent.partitions
    loud = aggregate_record(1, "sound_level", 72.0, 3600)
    batch = [
        aggregate_record(0, "sound_level", 50.0, 3600),  # quiet
        loud,
        aggregate_record(2, "sound_level", 72.0, 60),  # not hourly
        aggregate_record(3, "temperature", 72.0, 3600),
        type(loud)(4, b"not json"),
        type(loud)(5, None),
        type(loud)(6, b"[1, 2]"),
        type(loud)(7, b'{"quantity": "sound_level", "mean": 90}'),
        type(loud)(8, b'{"quantity": "sound_level", "window_size": 3600, "mean": "loud"}'),
    ]
    writes = agent.step(0, batch, NOW)
    assert isinstance(writes, list)
    assert all(isinstance(w, Write) for w in writes)
    assert [w.value for w in writes if w.value is not None] == [loud.value]
    assert all(isinstance(w, Write) for w in agent.tick(NOW, lambda _: True))
    agent.revoke(0)
    assert 0 not in agent.partitions


@pytest.mark.parametrize("example", ["agent"], indirect=True)
def test_the_agent_example_can_be_wired_beside_the_built_in_agents(
    example: types.ModuleType,
) -> None:
    agent = the_instance(example, Agent, SETTINGS)
    built_in = [
        NormaliserAgent(SETTINGS, InMemoryRegistryStore().view),
        AggregatorAgent(SETTINGS, "device"),
        AggregatorAgent(SETTINGS, "area"),
    ]
    # The runtime refuses two agents on one topic; it takes what streams/wiring_worker.py gives it.
    Worker(SETTINGS, [*built_in, agent], RecordingWriter())
