"""A Kafka outage must not flood the log: aiokafka's repeated lines come once per kind every
10 s, with how many were held back, and every held-back line is counted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from cityhub.streams import cli, http_refusals, kafka_log_flood
from cityhub.streams.kafka_log_flood import RepeatedLineFilter

CONN = "aiokafka.conn"
CLIENT = "aiokafka"
UNABLE = "Unable connect to node with id %s: %s"
METADATA = "Unable to update metadata from %s"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def suppressed(logger: str) -> float:
    value = REGISTRY.get_sample_value("cityhub_log_lines_suppressed_total", {"logger": logger})
    return value or 0.0


def test_thousands_of_two_kinds_give_one_line_each_per_interval_with_a_count() -> None:
    clock = Clock()
    keep = RepeatedLineFilter(interval=10.0, clock=clock)
    before = (suppressed(CONN), suppressed(CLIENT))
    passed: list[logging.LogRecord] = []
    # 25 s of an outage at 2 000 lines a second: two kinds, interleaved.
    for i in range(50_000):
        clock.now = 1000.0 + i / 2000
        for r in (record(CONN, UNABLE, 1, "Connect call failed"), record(CLIENT, METADATA, i)):
            if keep.filter(r):
                passed.append(r)
    lines = [(r.name, r.getMessage()) for r in passed]
    more = " (and 19 999 more like it in the last 10 s)"
    refused = "Unable connect to node with id 1: Connect call failed"
    assert lines == [
        (CONN, refused),
        (CLIENT, "Unable to update metadata from 0"),
        (CONN, refused + more),
        (CLIENT, "Unable to update metadata from 20000" + more),
        (CONN, refused + more),
        (CLIENT, "Unable to update metadata from 40000" + more),
    ]
    # Every line not passed is counted, by logger.
    held = 50_000 - 3
    assert (suppressed(CONN), suppressed(CLIENT)) == (before[0] + held, before[1] + held)
    # The summary keeps the template's own arguments: formatting is left to the handler.
    assert passed[2].args == (1, "Connect call failed")
    assert passed[2].msg.startswith(UNABLE)


def test_after_a_quiet_interval_a_line_passes_without_a_summary() -> None:
    clock = Clock()
    keep = RepeatedLineFilter(interval=10.0, clock=clock)
    assert keep.filter(record(CONN, UNABLE, 1, "x"))
    clock.now += 30
    again = record(CONN, UNABLE, 1, "x")
    assert keep.filter(again)
    assert again.getMessage() == "Unable connect to node with id 1: x"


def test_other_loggers_and_critical_lines_always_pass_unchanged() -> None:
    clock = Clock()
    keep = RepeatedLineFilter(interval=10.0, clock=clock)
    for _ in range(1000):
        for name, level in (
            ("cityhub.bridge", logging.ERROR),
            ("cityhub.kafka", logging.CRITICAL),
            ("aiohttp.server", logging.ERROR),
            ("aiokafkaesque", logging.ERROR),  # not of aiokafka's tree
            (CONN, logging.CRITICAL),
        ):
            r = record(name, "the same %s", "line", level=level)
            assert keep.filter(r)
            assert r.msg == "the same %s"


def test_a_record_seen_by_several_handlers_gets_one_answer_and_one_count() -> None:
    clock = Clock()
    keep = RepeatedLineFilter(interval=10.0, clock=clock)
    before = suppressed(CONN)
    first, second = record(CONN, UNABLE, 1, "x"), record(CONN, UNABLE, 1, "x")
    assert keep.filter(first)
    assert keep.filter(first)
    assert not keep.filter(second)
    assert not keep.filter(second)
    assert suppressed(CONN) == before + 1


def test_templates_beyond_the_bound_share_their_logger_s_kind() -> None:
    clock = Clock()
    keep = RepeatedLineFilter(interval=10.0, clock=clock, max_kinds=4)
    passed = sum(keep.filter(record(CONN, f"built per call {i}")) for i in range(1000))
    assert passed == 5  # four kinds of their own, then one for the rest of aiokafka.conn
    clock.now += 10  # their intervals are over: they are forgotten, new ones take their place
    assert sum(keep.filter(record(CONN, f"new {i}")) for i in range(1000)) == 5


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    aiohttp_server = logging.getLogger(http_refusals.AIOHTTP_SERVER_LOGGER)
    filters = aiohttp_server.filters[:]
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    aiohttp_server.filters[:] = filters


@pytest.mark.usefixtures("restore_logging")
def test_setup_logging_installs_it_on_the_process_handler_once() -> None:
    cli._setup_logging("info", "json")
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    assert [type(f) for f in handler.filters] == [RepeatedLineFilter]
    kafka_log_flood.install()  # again: no second filter
    assert [type(f) for f in handler.filters] == [RepeatedLineFilter]
    aiohttp_server = logging.getLogger(http_refusals.AIOHTTP_SERVER_LOGGER)
    assert any(isinstance(f, http_refusals.MalformedRequestFilter) for f in aiohttp_server.filters)
    stream = io.StringIO()
    handler.setStream(stream)
    # A child logger of aiokafka's tree, as its modules log: its repeats stop at the handler.
    for _ in range(500):
        logging.getLogger("aiokafka.consumer.fetcher").error("Failed fetch from %s\n", "n1")
        logging.getLogger("cityhub.bridge").error("kept %s", "every\none")
    docs = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [d["logger"] for d in docs].count("aiokafka.consumer.fetcher") == 1
    assert [d["logger"] for d in docs].count("cityhub.bridge") == 500
    # The handler's formatter still escapes what passes.
    assert docs[0]["message"] == "Failed fetch from n1\\n"
    assert docs[1]["message"] == "kept every\\none"
