"""What the CLI refuses in the settings. An invalid setting is named with its variable and why,
never with a value: pydantic's own text repeats a section checked as a whole, passwords
included. The simulator is refused a TLS broker; a port in use is one line."""

from __future__ import annotations

import errno
from enum import Enum
from typing import Any

import click
import pytest

from cityhub.schemas.settings import KafkaSettings, MqttSettings, Settings
from cityhub.schemas.settings_errors import settings_problems
from cityhub.streams.cli import _checked_settings, _refuse_simulating_over_tls
from cityhub.streams.cli_async import run_async

SECRET = "Kq77SecretPwABCDEFG"


def _refusal(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(click.UsageError) as refused:
        _checked_settings()
    return refused.value.format_message()


@pytest.mark.parametrize(
    "env",
    [
        # a section-wide check: pydantic's text showed the whole kafka section
        {"CITYHUB_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "CITYHUB_KAFKA__SASL_USERNAME": "u"},
        {"CITYHUB_KAFKA__SECURITY_PROTOCOL": "PLAINTEXT"},
        {"CITYHUB_KAFKA__SASL_PASSWORD_FILE": "/run/secrets/kafka"},
        {"CITYHUB_HISTORY__PORT": "0"},
    ],
)
def test_no_password_shows_in_a_refusal(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    message = _refusal(monkeypatch, CITYHUB_KAFKA__SASL_PASSWORD=SECRET, **env)
    assert message.startswith("invalid settings: ")
    assert SECRET not in message
    assert SECRET[:6] not in message
    assert "input_value" not in message


def test_each_invalid_setting_is_named_with_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _refusal(monkeypatch, CITYHUB_HTTP__PORT="70000", CITYHUB_MQTT__PORT="abc")
    assert "http.port (CITYHUB_HTTP__PORT): Input should be less than or equal to 65535" in message
    assert "mqtt.port (CITYHUB_MQTT__PORT): Input should be a valid integer" in message


def test_a_json_value_that_does_not_parse_names_its_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = _refusal(monkeypatch, CITYHUB_BRIDGE__SUBSCRIPTIONS="[not json")
    assert message.startswith("invalid settings: CITYHUB_BRIDGE__SUBSCRIPTIONS: ")
    assert "a list or object setting is JSON" in message
    # Named by its variable, not by its section (a review got "field "quality"" and an
    # example of another variable); another, valid, setting of the section is not named.
    monkeypatch.delenv("CITYHUB_BRIDGE__SUBSCRIPTIONS")
    message = _refusal(
        monkeypatch, CITYHUB_QUALITY__FAULT_FIELDS="fault", CITYHUB_QUALITY__ENABLED="true"
    )
    assert message.startswith("invalid settings: CITYHUB_QUALITY__FAULT_FIELDS: ")
    assert "ENABLED" not in message
    assert "fault," not in message


def test_the_path_goes_into_lists_and_a_section_check_has_no_variable() -> None:
    errors = [
        {"loc": ("bridge", "subscriptions", 0, "filter"), "msg": "Input should be a valid string"},
        {"loc": ("kafka",), "msg": "Value error, kafka.sasl_mechanism is needed"},
        {"loc": (), "msg": "Assertion failed, something"},
    ]
    assert settings_problems(errors) == [
        "bridge.subscriptions[0].filter (CITYHUB_BRIDGE__SUBSCRIPTIONS): Input should be a valid "
        "string",
        "kafka: kafka.sasl_mechanism is needed",
        "something",
    ]


def test_the_simulator_is_refused_a_tls_broker() -> None:
    """It publishes plain MQTT as one client for the fleet: against the secure stack it timed
    out and was started again every 30 s, rewriting the fleet each time (review)."""
    settings = Settings().model_copy(update={"mqtt": MqttSettings(tls=True, port=8883)})
    with pytest.raises(click.UsageError, match="is a TLS broker"):
        _refuse_simulating_over_tls(settings)
    _refuse_simulating_over_tls(Settings())  # the plain stack's broker: fine


@pytest.mark.parametrize(
    ("prefix", "why"),
    [
        ("", "at least 1 character"),  # topics ".raw", ".observations" were made
        ("a/b", "should match pattern"),
        ("../up", "should match pattern"),
        ("x" * 101, "at most 100 characters"),
    ],
)
def test_a_topic_prefix_kafka_or_the_file_system_would_trip_on_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch, prefix: str, why: str
) -> None:
    message = _refusal(monkeypatch, CITYHUB_KAFKA__TOPIC_PREFIX=prefix)
    assert "kafka.topic_prefix (CITYHUB_KAFKA__TOPIC_PREFIX)" in message
    assert why in message


def test_a_port_another_process_holds_is_one_line_not_a_traceback() -> None:
    """A second `cityhub run` with the first one's ports (review: an OSError traceback)."""

    async def bind() -> None:
        raise OSError(
            errno.EADDRINUSE,
            "error while attempting to bind on address ('127.0.0.1', 9464): address already in use",
        )

    with pytest.raises(click.ClickException, match="address already in use"):
        run_async(bind())

    async def other() -> None:
        raise OSError(errno.EIO, "a fault of ours")

    with pytest.raises(OSError, match="a fault of ours"):
        run_async(other())


@pytest.mark.parametrize("servers", ["127.0.0.1:99999", "127.0.0.1:notaport", "", "k1:9092,k2"])
def test_a_kafka_address_that_is_no_host_and_port_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch, servers: str
) -> None:
    """It was taken, and `cityhub run` died later with an OverflowError traceback (review)."""
    message = _refusal(monkeypatch, CITYHUB_KAFKA__BOOTSTRAP_SERVERS=servers)
    assert (
        "kafka.bootstrap_servers (CITYHUB_KAFKA__BOOTSTRAP_SERVERS): must be host:port" in message
    )


def test_kafka_addresses_as_operators_write_them_are_taken() -> None:
    for servers in ("127.0.0.1:9092", "[::1]:9092", "k1.city.example:9093, k2.city.example:9093"):
        assert KafkaSettings(bootstrap_servers=servers).bootstrap_servers == servers


def test_run_without_a_key_encryption_key_is_refused_before_the_banner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from click.testing import CliRunner

    from cityhub.streams.cli import run

    monkeypatch.delenv("CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY", raising=False)
    monkeypatch.setenv("CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY_FILE", f"{tmp_path}/missing-kek")
    done = CliRunner().invoke(run, [])
    assert done.exit_code == 1
    assert "no key-encryption key" in done.output
    assert "operator API" not in done.output  # no banner of a hub that will not start
    assert "Traceback" not in done.output


def test_port_zero_is_a_free_port_chosen_before_the_banner() -> None:
    from cityhub.schemas.settings import HttpSettings, ManagementSettings
    from cityhub.streams.supervisor import with_concrete_ports

    asked = Settings(http=HttpSettings(port=0), management=ManagementSettings(port=0))
    chosen = with_concrete_ports(asked)
    assert 0 < chosen.http.port != chosen.management.port > 0
    kept = Settings(http=HttpSettings(port=18080), management=ManagementSettings(port=0))
    assert with_concrete_ports(kept).http.port == 18080
    assert with_concrete_ports(kept).management.port not in (0, 18080)


def test_a_port_another_hub_listens_on_is_refused_before_anything_starts() -> None:
    # A second `cityhub run` with the same settings started its bridge and workers (taking the
    # first hub's MQTT session, rebalancing its groups) and found the API port taken 33 s later.
    import socket

    from cityhub.schemas.errors import ConfigurationError
    from cityhub.schemas.settings import HttpSettings, ManagementSettings
    from cityhub.streams.supervisor import with_concrete_ports

    with socket.socket() as other_hub:
        other_hub.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other_hub.bind(("127.0.0.1", 0))
        other_hub.listen()
        port = other_hub.getsockname()[1]
        taken = Settings(http=HttpSettings(port=port), management=ManagementSettings(port=0))
        with pytest.raises(ConfigurationError, match=f"http.port {port} on 127.0.0.1 is in use"):
            with_concrete_ports(taken)
    assert with_concrete_ports(taken).http.port == port  # free again


def test_an_unknown_log_level_is_an_invalid_setting_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = _refusal(monkeypatch, CITYHUB_LOG_LEVEL="verbose")
    assert message.startswith("invalid settings: log_level: ")
    assert "'debug'" in message
    monkeypatch.setenv("CITYHUB_LOG_LEVEL", " WARNING ")
    assert _checked_settings().log_level == "warning"


def _scalar_settings(model: type[Any], prefix: str = "CITYHUB_") -> list[tuple[str, object]]:
    """(variable, default) of every setting whose default is a number, a bool or a string."""
    from pydantic import BaseModel

    found: list[tuple[str, object]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += _scalar_settings(annotation, f"{prefix}{name.upper()}__")
        elif isinstance(field.default, bool | int | float | str) and not isinstance(
            field.default, Enum
        ):
            found.append((f"{prefix}{name.upper()}", field.default))
    return found


def test_every_setting_takes_its_own_default_as_an_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A strict field refused every value from the environment ("900" is text): a review found
    # CITYHUB_HEALTH__DEFAULT_EXPECTED_INTERVAL_SECONDS unusable.
    variables = _scalar_settings(Settings)
    assert len(variables) > 100
    refused = []
    for variable, default in variables:
        text = str(default).lower() if isinstance(default, bool) else str(default)
        with monkeypatch.context() as env:
            env.setenv(variable, text)
            try:
                _checked_settings()
            except click.UsageError as exc:
                refused.append(f"{variable}={text}: {exc.format_message()}")
    assert refused == []


def test_the_configuration_reference_names_every_setting() -> None:
    # A review found settings that docs/configuration.md ("every setting") left out. A row may
    # name several of one section: `CITYHUB_X__A` / `B` (or `__B`, `_B` after a shared stem).
    from pathlib import Path

    lines = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text().splitlines()

    def documented(variable: str) -> bool:
        if any(variable in line for line in lines):
            return True
        section, _, name = variable.rpartition("__")
        return any(
            f"{section}__" in line and (f"`{name}`" in line or f"__{name}`" in line)
            for line in lines
        )

    missing = [v for v, _ in _scalar_settings(Settings) if not documented(v)]
    assert missing == []


def test_one_shot_commands_log_warnings_only_unless_asked() -> None:
    # A review found every registry and tail command's output among INFO lines of the Kafka
    # client and the stores ("registry view loaded", "Updating subscribed topics").
    from cityhub.streams.cli_async import command_log_level

    assert command_log_level("devices", "info", {}) == "warning"
    assert command_log_level("tail", "info", {}) == "warning"
    assert command_log_level("devices", "debug", {"CITYHUB_LOG_LEVEL": "debug"}) == "debug"
    for service in ("run", "api", "worker", "stack", "simulate"):
        assert command_log_level(service, "info", {}) == "info"
