"""The local stack without any broker: rendered configs, deploy lookup, pid files, status."""

from __future__ import annotations

import base64
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import StackSettings
from cityhub.streams.devtools.stack import ServiceStatus, StackStatus
from cityhub.streams.devtools.stack.config import (
    LOG4J2_TEMPLATE,
    MOSQUITTO_CONF_TEMPLATE,
    SERVER_PROPERTIES_TEMPLATE,
    new_cluster_id,
    render_log4j2_properties,
    render_mosquitto_conf,
    render_server_properties,
)
from cityhub.streams.devtools.stack.layout import StackLayout, find_deploy_dir
from cityhub.streams.devtools.stack.probes import port_in_use
from cityhub.streams.devtools.stack.process import (
    ProcessSpec,
    cmdline_matches,
    owned_pid,
    parse_pid,
    parse_proc_state,
    process_argv,
    start_detached,
    stop,
)

DEPLOY = find_deploy_dir(None)
STACK = StackSettings(
    kafka_port=29092,
    kafka_controller_port=29093,
    mqtt_port=21883,
    mosquitto_max_inflight=777,
    mosquitto_max_queued=123_456,
)
LAYOUT = StackLayout(root=Path("/srv/cityhub-state"))


def properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] not in "#!")
    return {key.strip(): value.strip() for key, value in pairs}


def mosquitto_options(text: str) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            options.setdefault(key, []).append(value)
    return options


# Kafka


def test_server_properties_is_one_kraft_node_on_loopback() -> None:
    text = render_server_properties(
        (DEPLOY / SERVER_PROPERTIES_TEMPLATE).read_text(), STACK, LAYOUT, num_partitions=8
    )
    props = properties(text)

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["log.dirs"] == "/srv/cityhub-state/kafka/data"
    assert props["num.partitions"] == "8"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    for single_replica in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[single_replica] == "1", single_replica
    assert "$" not in text


def test_kafka_logs_little_and_through_stdout() -> None:
    props = properties(render_log4j2_properties((DEPLOY / LOG4J2_TEMPLATE).read_text()))

    assert props["rootLogger.level"] == "WARN"
    assert props["appender.console.type"] == "Console"
    assert props["shutdownHook"] == "disable"
    assert props["logger.raftserver.name"] == "kafka.server.KafkaRaftServer"


def test_a_placeholder_nobody_fills_is_an_error() -> None:
    with pytest.raises(StackError, match="placeholder"):
        render_server_properties("port=${no_such_thing}", STACK, LAYOUT, num_partitions=1)


def test_cluster_id_is_what_kafka_storage_random_uuid_makes() -> None:
    cluster_id = new_cluster_id()

    assert len(cluster_id) == 22
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert not cluster_id.startswith("-")
    assert new_cluster_id(bytes(range(16))) == "AAECAwQFBgcICQoLDA0ODw"


@pytest.mark.parametrize("token", [b"\xf8" + bytes(15), bytes(16), bytes(15) + b"\x01"])
def test_cluster_id_refuses_what_kafka_rejects(token: bytes) -> None:
    # b"\xf8..." encodes to "-A...": read as a command-line option. The others are reserved.
    with pytest.raises(ValueError, match="reject"):
        new_cluster_id(token)


# Mosquitto


def test_mosquitto_conf_has_deliberate_limits_and_persistence() -> None:
    text = render_mosquitto_conf(
        (DEPLOY / MOSQUITTO_CONF_TEMPLATE).read_text(), STACK, LAYOUT, user="alice"
    )
    opts = mosquitto_options(text)

    assert opts["listener"] == ["21883 127.0.0.1"]
    assert opts["allow_anonymous"] == ["true"]
    assert opts["user"] == ["alice"]
    assert opts["persistence"] == ["true"]
    assert opts["persistence_location"] == ["/srv/cityhub-state/mosquitto/data/"]
    assert opts["autosave_interval"] == ["1"]
    assert opts["max_inflight_messages"] == ["777"]
    assert opts["max_queued_messages"] == ["123456"]
    assert opts["max_queued_bytes"] == ["0"]
    assert int(opts["max_packet_size"][0]) >= 2 * 1024 * 1024
    assert "message_size_limit" not in opts
    assert opts["pid_file"] == ["/srv/cityhub-state/mosquitto/mosquitto.pid"]
    assert opts["log_dest"] == ["file /srv/cityhub-state/mosquitto/mosquitto.log"]
    assert "$" not in text


def test_every_mosquitto_setting_says_why() -> None:
    lines = (DEPLOY / MOSQUITTO_CONF_TEMPLATE).read_text().splitlines()
    for key in ("max_inflight_messages", "max_queued_messages", "autosave_interval", "user"):
        index = next(i for i, line in enumerate(lines) if line.startswith(key + " "))
        assert lines[index - 1].startswith("#"), f"{key} has no comment above it"


# Layout


def test_layout_is_absolute_even_from_a_relative_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    layout = StackLayout.under(Path(".cityhub/stack"))

    assert layout.root == tmp_path.resolve() / ".cityhub" / "stack"
    assert layout.kafka_server_properties.is_absolute()
    assert layout.kafka_libs_marker.parent == layout.kafka_libs


def test_deploy_dir_is_found_from_the_source_and_can_be_overridden(tmp_path: Path) -> None:
    assert (DEPLOY / "kafka" / "pom.xml").is_file()
    assert find_deploy_dir(DEPLOY) == DEPLOY

    with pytest.raises(StackError, match="CITYHUB_STACK__DEPLOY_DIR"):
        find_deploy_dir(tmp_path)
    with pytest.raises(StackError, match="cannot find deploy"):
        find_deploy_dir(None, start=tmp_path / "a" / "b.py")


# Pid files


@pytest.mark.parametrize(
    ("text", "pid"),
    [("1234\n", 1234), (" 42 ", 42), ("", None), ("abc", None), ("-5", None), ("1", None)],
)
def test_parse_pid(text: str, pid: int | None) -> None:
    assert parse_pid(text) == pid


def test_cmdline_matches_needs_every_marker() -> None:
    argv = ["java", "-cp", "/s/libs/*", "kafka.Kafka", "/s/kafka/server.properties"]

    assert cmdline_matches(argv, ["kafka.Kafka", "/s/kafka/server.properties"])
    assert not cmdline_matches(argv, ["kafka.Kafka", "/other/kafka/server.properties"])
    assert not cmdline_matches([], ["kafka.Kafka"])


def test_proc_state_survives_odd_command_names() -> None:
    assert parse_proc_state("123 (java) S 1 2 3") == "S"
    assert parse_proc_state("123 (a) b (c)) Z 1 2 3") == "Z"


def _spec(tmp_path: Path) -> ProcessSpec:
    return ProcessSpec(name="sleeper", pid_file=tmp_path / "sleeper.pid", markers=(str(tmp_path),))


def _sleeper_argv(marker: Path, *, ignore_sigterm: bool = False) -> list[str]:
    code = "import signal, sys, time\n"
    if ignore_sigterm:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(300)\n"
    return [sys.executable, "-c", code, str(marker)]


def _wait_for_ready(log: Path) -> None:
    deadline = time.monotonic() + 10
    while "ready" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the test process never started"
        time.sleep(0.02)


def test_missing_and_garbage_pid_files_mean_not_running(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert owned_pid(spec) is None

    spec.pid_file.write_text("not a pid")
    assert owned_pid(spec) is None
    assert not spec.pid_file.exists()


def test_pid_of_a_dead_process_is_stale(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.pid_file.write_text("4194303\n")  # above the default pid_max: no such process

    assert owned_pid(spec) is None
    assert not spec.pid_file.exists()


def test_pid_reused_by_another_program_is_stale(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.pid_file.write_text(f"{os.getpid()}\n")  # alive, but pytest is not our broker

    assert owned_pid(spec) is None
    assert not spec.pid_file.exists()


async def test_start_detached_then_stop(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    log = tmp_path / "out.log"

    pid = start_detached(spec, _sleeper_argv(tmp_path), cwd=tmp_path, output=log, env={})
    _wait_for_ready(log)

    assert owned_pid(spec) == pid
    assert await stop(spec, grace_s=10) is True
    assert owned_pid(spec) is None
    assert not spec.pid_file.exists()
    assert process_argv(pid) is None
    assert await stop(spec, grace_s=10) is False  # idempotent


async def test_stop_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    log = tmp_path / "out.log"
    argv = _sleeper_argv(tmp_path, ignore_sigterm=True)
    start_detached(spec, argv, cwd=tmp_path, output=log, env={})
    _wait_for_ready(log)

    began = time.monotonic()
    assert await stop(spec, grace_s=0.5) is True
    assert time.monotonic() - began < 5
    assert owned_pid(spec) is None


def test_port_in_use() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_in_use(port)
    assert not port_in_use(port)


# Status


def test_status_renders_each_service_and_the_verdict() -> None:
    serving = ServiceStatus("kafka", "127.0.0.1:9092", 4242, True, "produce+consume in 5 ms")
    stopped = ServiceStatus("mosquitto", "127.0.0.1:1883", None, False, "not running")
    status = StackStatus(services=(serving, stopped), state_dir=Path("/s"))

    assert not status.all_serving
    assert status.service("kafka").running
    text = status.render()
    assert "kafka      serving  4242" in text
    assert "mosquitto  stopped  -" in text
    assert text.endswith("NOT all serving")
    assert StackStatus(services=(serving,)).all_serving
    assert not StackStatus(services=()).all_serving
