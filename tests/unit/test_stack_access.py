"""Who may use the local stack's Mosquitto: anonymous by default, or the users of a password file
limited by an ACL file; the readiness probe then logs in. And the shipped ACL example grants the
hub what its settings make it use. Pure: no broker (tests/integration/test_mosquitto_acl.py runs
a real one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import (
    DEFAULT_SUBSCRIPTIONS,
    DeliverySettings,
    MqttSettings,
    Settings,
    StackSettings,
)
from cityhub.streams.devtools.stack import stack_down, stack_up
from cityhub.streams.devtools.stack.config import MOSQUITTO_CONF_TEMPLATE, render_mosquitto_conf
from cityhub.streams.devtools.stack.layout import StackLayout, find_deploy_dir
from cityhub.streams.devtools.stack.lifecycle import _mqtt_login
from cityhub.streams.devtools.stack.mosquitto import check_access_files
from cityhub.streams.devtools.stack.probes import MQTT_HEALTH_PREFIX

DEPLOY = find_deploy_dir(None)
LAYOUT = StackLayout(root=Path("/srv/cityhub-state"))
ACL_EXAMPLE = DEPLOY / "mosquitto" / "acl.example"


def _conf(stack: StackSettings) -> list[str]:
    text = render_mosquitto_conf(
        (DEPLOY / MOSQUITTO_CONF_TEMPLATE).read_text(), stack, LAYOUT, user="alice"
    )
    assert "$" not in text
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_without_a_password_file_the_loopback_listener_is_anonymous() -> None:
    lines = _conf(StackSettings())
    assert "allow_anonymous true" in lines
    assert not [line for line in lines if line.startswith(("password_file", "acl_file"))]


def test_with_password_and_acl_files_only_their_users_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    stack = StackSettings(
        mosquitto_password_file=Path("auth/mqtt.passwd"), mosquitto_acl_file=Path("auth/mqtt.acl")
    )
    lines = _conf(stack)
    assert "allow_anonymous false" in lines
    assert "allow_anonymous true" not in lines
    # absolute: mosquitto runs in the state dir, not where the settings were written
    assert f"password_file {tmp_path.resolve()}/auth/mqtt.passwd" in lines
    assert f"acl_file {tmp_path.resolve()}/auth/mqtt.acl" in lines
    lines = _conf(StackSettings(mosquitto_password_file=Path("/etc/p")))
    assert "password_file /etc/p" in lines
    assert not [line for line in lines if line.startswith("acl_file")]


def test_an_acl_without_a_password_file_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"needs stack\.mosquitto_password_file"):
        StackSettings(mosquitto_acl_file=Path("/etc/acl"))


def test_missing_access_files_say_how_to_make_them(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="mosquitto_passwd -c -b"):
        check_access_files(StackSettings(mosquitto_password_file=tmp_path / "none"))
    (tmp_path / "passwd").write_text("")
    with pytest.raises(StackError, match=r"acl\.example"):
        check_access_files(
            StackSettings(
                mosquitto_password_file=tmp_path / "passwd", mosquitto_acl_file=tmp_path / "none"
            )
        )
    check_access_files(StackSettings(mosquitto_password_file=tmp_path / "passwd"))


def test_the_probe_logs_in_as_the_hub_when_the_broker_wants_users() -> None:
    assert _mqtt_login(Settings()) == (None, None)
    secured = StackSettings(mosquitto_password_file=Path("/etc/p"))
    with pytest.raises(StackError, match="CITYHUB_MQTT__USERNAME and CITYHUB_MQTT__PASSWORD"):
        _mqtt_login(Settings(stack=secured))
    hub = MqttSettings(username="cityhub-bridge", password=SecretStr("s3cret"))
    assert _mqtt_login(Settings(stack=secured, mqtt=hub)) == ("cityhub-bridge", "s3cret")


async def test_up_refuses_a_secured_broker_without_credentials_before_starting_it(
    tmp_path: Path,
) -> None:
    settings = Settings(
        stack=StackSettings(state_dir=tmp_path, mosquitto_password_file=tmp_path / "p")
    )
    with pytest.raises(StackError, match="CITYHUB_MQTT__USERNAME"):
        await stack_up(settings, only=["mosquitto"])
    assert not (tmp_path / "mosquitto").exists()


async def test_only_names_services_of_the_stack(tmp_path: Path) -> None:
    settings = Settings(stack=StackSettings(state_dir=tmp_path))
    with pytest.raises(StackError, match="no such service"):
        await stack_up(settings, only=["redis"])
    with pytest.raises(StackError, match="no such service"):
        await stack_down(settings, only=["redis"])


# --- the shipped ACL example ------------------------------------------------------------------
def _acl(text: str) -> dict[str | None, list[tuple[str, str]]]:
    """``{user (None: patterns): [(access, topic), ...]}`` as Mosquitto reads the file."""
    grants: dict[str | None, list[tuple[str, str]]] = {}
    user: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "user":
            user = rest.strip()
            grants.setdefault(user, [])
        elif keyword == "topic":
            access, _, topic = rest.strip().partition(" ")
            assert access in {"read", "write", "readwrite", "deny"}, line
            grants.setdefault(user, []).append((access, topic.strip()))
        elif keyword == "pattern":
            access, _, topic = rest.strip().partition(" ")
            assert access in {"read", "write", "readwrite", "deny"}, line
            grants.setdefault(None, []).append((access, topic.strip()))
        else:
            raise AssertionError(f"not an ACL line: {line!r}")
    return grants


def test_the_acl_example_grants_the_hub_what_its_settings_use() -> None:
    grants = _acl(ACL_EXAMPLE.read_text())
    hub = {topic: access for access, topic in grants["cityhub-bridge"]}
    for subscription in DEFAULT_SUBSCRIPTIONS:
        assert hub[subscription.filter] == "read", subscription.filter
    assert hub[f"{DeliverySettings().mqtt_topic_root}/#"] == "write"
    assert hub[f"{MQTT_HEALTH_PREFIX}/#"] == "readwrite"
    # nobody but the hub reads an ingest topic, and every other user writes or reads one subtree
    ingest_prefixes = ("v3/", "application/", "cityhub/ingest/")
    for user, rules in grants.items():
        if user == "cityhub-bridge":
            continue
        for access, topic in rules:
            if topic.startswith(ingest_prefixes):
                # a publisher its own; a subscriber denied the trees the pattern grants by name
                assert access in ("write", "deny"), (user, topic)
                assert access == "write" or user.startswith("sub-"), (user, topic)
            else:
                assert access == "read", (user, topic)
                assert topic.startswith("cityhub/sub/"), (user, topic)
    assert grants[None] == [("write", "cityhub/ingest/%u")]


def test_a_plain_status_of_a_secure_stack_says_to_ask_with_secure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from cityhub.streams.devtools.stack.cli import stack
    from cityhub.streams.devtools.stack.lifecycle import started_secure

    settings = Settings(stack=StackSettings(state_dir=tmp_path))
    assert not started_secure(settings)  # never started
    config = StackLayout.under(tmp_path).kafka_server_properties
    config.parent.mkdir(parents=True)
    config.write_text("listeners=PLAINTEXT://127.0.0.1:9092\n")
    assert not started_secure(settings)
    config.write_text("listeners=SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n")
    assert started_secure(settings)
    # Nothing runs from this state dir: every service stopped, and the hint said once.
    monkeypatch.setenv("CITYHUB_STACK__STATE_DIR", str(tmp_path))
    done = CliRunner().invoke(stack, ["status"])
    assert done.exit_code == 1
    assert done.output.count("started with --secure") == 1
    assert "cityhub stack status --secure" in done.output
    # Asked with --secure, there is nothing to hint.
    done = CliRunner().invoke(stack, ["status", "--secure"])
    assert done.exit_code == 1
    assert "started with --secure" not in done.output
