"""The secure MQTT pieces without a broker: the secure stack's users, ACL, listeners and the
settings it hands the hub; why a bridge session failed; which user deliveries publish as.
tests/integration/test_secure_mqtt.py runs them against a real Mosquitto."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from cityhub.connectors.mqtt.failures import session_failure
from cityhub.connectors.mqtt.session import (
    MqttConnectionLost,
    MqttConnectRefused,
    login_password,
)
from cityhub.connectors.sinks.kinds.mqtt import delivery_broker_settings
from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import DEFAULT_SUBSCRIPTIONS, MqttSettings, StackSettings
from cityhub.streams.devtools.stack.config import MOSQUITTO_CONF_TEMPLATE, render_mosquitto_conf
from cityhub.streams.devtools.stack.layout import StackLayout, find_deploy_dir
from cityhub.streams.devtools.stack.mosquitto import (
    check_access_files,
    hub_mqtt_settings,
    mosquitto_address,
    mosquitto_ports,
)
from cityhub.streams.devtools.stack.mosquitto_access import (
    ACL_TEMPLATE,
    BRIDGE_USER,
    DELIVERY_USER,
    SecureFiles,
    TlsFiles,
    device_topic,
    hub_environment,
    password_file_lines,
    render_acl,
    secure_users,
)
from cityhub.streams.devtools.stack.probes import MQTT_HEALTH_PREFIX

DEPLOY = find_deploy_dir(None)
LAYOUT = StackLayout(root=Path("/srv/state"))
FILES = SecureFiles(
    password_file=Path("/srv/state/mosquitto/auth/cityhub.passwd"),
    hub_password_file=Path("/srv/state/mosquitto/auth/hub.passwd"),
    acl_file=Path("/srv/state/mosquitto/auth/cityhub.acl"),
    tls=TlsFiles(Path("/srv/pki/ca.crt"), Path("/srv/pki/server.crt"), Path("/srv/pki/server.key")),
)
SECURE = StackSettings(
    secure=True, mqtt_port=1884, mqtt_tls_port=8885, mqtt_hub_tls_port=8886, mqtt_tenants=("a", "b")
)


def _acl(stack: StackSettings = SECURE, root: str = "cityhub/sub") -> dict[str, list[str]]:
    """The rendered ACL as {user (or "pattern"): its grant lines}."""
    text = render_acl((DEPLOY / ACL_TEMPLATE).read_text(), stack, delivery_root=root)
    assert "$$" not in text
    assert "${" not in text
    grants: dict[str, list[str]] = {}
    current = "?"
    for line in text.splitlines():
        if line.startswith("user "):
            current = line.split(" ", 1)[1]
            grants.setdefault(current, [])
        elif line.startswith("topic "):
            grants[current].append(line.split(" ", 1)[1])
        elif line.startswith("pattern "):
            grants.setdefault("pattern", []).append(line.split(" ", 1)[1])
    return grants


def test_the_secure_stack_has_the_hubs_users_and_two_per_tenant() -> None:
    names = [(u.name, u.role, u.tenant) for u in secure_users(SECURE)]
    assert names == [
        (BRIDGE_USER, "bridge", None),
        (DELIVERY_USER, "delivery", None),
        ("sub-a", "subscriber", "a"),
        ("demo@a", "device", "a"),
        ("sub-b", "subscriber", "b"),
        ("demo@b", "device", "b"),
    ]
    assert [u.name for u in secure_users(SECURE) if u.hub] == [BRIDGE_USER, DELIVERY_USER]
    with pytest.raises(ValidationError):
        StackSettings(mqtt_tenants=("a/b",))  # a tenant is one topic level
    with pytest.raises(ValidationError):
        StackSettings(mqtt_tenants=("#",))


def test_the_acl_grants_each_user_only_its_part() -> None:
    grants = _acl()
    assert grants[BRIDGE_USER] == [
        *(f"read {s.filter}" for s in DEFAULT_SUBSCRIPTIONS),
        "read $SYS/#",  # part E's exporter of the broker's figures
        f"readwrite {MQTT_HEALTH_PREFIX}/#",  # the readiness probe
    ]
    # the delivery and the subscribers may not publish uplinks, not even under their own names
    denied = ["deny v3/#", "deny application/#", "deny cityhub/ingest/#"]
    assert grants[DELIVERY_USER] == ["write cityhub/sub/#", *denied]
    assert grants["sub-a"] == ["read cityhub/sub/a/#", *denied]
    assert grants["sub-b"] == ["read cityhub/sub/b/#", *denied]
    assert "demo@a" not in grants  # the patterns say where it may write
    assert grants["pattern"] == [
        "write v3/%u/devices/+/up",
        "write application/%u/device/+/event/up",
        "write cityhub/ingest/%u",
    ]
    assert device_topic("a", "aq-1") == "v3/demo@a/devices/aq-1/up"
    assert _acl(root="city/out/")[DELIVERY_USER] == ["write city/out/#", *denied]


@pytest.mark.parametrize("root", ["", "cityhub/#", "a/+/b", "$SYS/x"])
def test_a_delivery_root_that_cannot_root_a_subtree_is_refused(root: str) -> None:
    with pytest.raises(StackError, match="cannot root an ACL subtree"):
        _acl(root=root)


def _conf(stack: StackSettings, secure: SecureFiles | None) -> list[str]:
    text = render_mosquitto_conf(
        (DEPLOY / MOSQUITTO_CONF_TEMPLATE).read_text(), stack, LAYOUT, "alice", secure=secure
    )
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _blocks(lines: list[str]) -> dict[str, list[str]]:
    """The options of each listener block, by its ``listener`` line ("" for the global ones)."""
    blocks: dict[str, list[str]] = {"": []}
    current = ""
    for line in lines:
        if line.startswith("listener "):
            current = line
            blocks[current] = []
        else:
            blocks[current].append(line)
    return blocks


def test_the_secure_broker_listens_on_tls_only_the_hub_and_the_tenants_apart() -> None:
    lines = _conf(SECURE, FILES)
    blocks = _blocks(lines)
    tenants, hub = "listener 8885 127.0.0.1", "listener 8886 127.0.0.1"
    assert [line for line in lines if line.startswith("listener")] == [tenants, hub]
    # before every security option, so that each listener's own ones count
    assert lines.index("per_listener_settings true") < lines.index(tenants)
    tls = [
        "cafile /srv/pki/ca.crt",
        "certfile /srv/pki/server.crt",
        "keyfile /srv/pki/server.key",
        "tls_version tlsv1.2",
        "require_certificate false",
        "allow_anonymous false",
    ]
    acl = "acl_file /srv/state/mosquitto/auth/cityhub.acl"
    for block, password_file in (
        (tenants, "password_file /srv/state/mosquitto/auth/cityhub.passwd"),
        (hub, "password_file /srv/state/mosquitto/auth/hub.passwd"),
    ):
        assert blocks[block][:8] == [*tls, password_file, acl], block
    # a tenant's client id is its user name: none can take the bridge's
    assert "use_username_as_clientid true" in blocks[tenants]
    assert "use_username_as_clientid true" not in blocks[hub]
    assert not [line for line in blocks[""] if "anonymous" in line or "_file" in line]
    assert "allow_anonymous true" not in lines
    plain = _conf(SECURE, None)
    assert [line for line in plain if line.startswith("listener")] == ["listener 1884 127.0.0.1"]
    assert not [line for line in plain if line.startswith(("cafile", "certfile", "keyfile"))]
    assert "per_listener_settings true" not in plain
    assert "allow_anonymous true" in plain


def test_the_two_secure_listeners_need_two_ports() -> None:
    with pytest.raises(ValidationError, match="mqtt_hub_tls_port must differ"):
        StackSettings(secure=True, mqtt_tls_port=8883, mqtt_hub_tls_port=8883)
    StackSettings(mqtt_tls_port=8883, mqtt_hub_tls_port=8883)  # unused by the plain stack
    assert mosquitto_ports(SECURE) == (8885, 8886)
    assert mosquitto_address(SECURE) == "127.0.0.1:8885 (tenants), 8886 (hub)"
    plain = SECURE.model_copy(update={"secure": False})
    assert (mosquitto_ports(plain), mosquitto_address(plain)) == ((1884,), "127.0.0.1:1884")


def test_a_secure_stack_makes_its_own_access_files(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("")
    with pytest.raises(StackError, match="makes the broker's own password and ACL files"):
        check_access_files(SECURE.model_copy(update={"mosquitto_password_file": tmp_path}))
    check_access_files(SECURE)


def test_the_password_file_in_clear_is_one_user_per_line_and_refuses_what_breaks_it() -> None:
    assert password_file_lines({"a": "x y", "demo@b": "z"}) == "a:x y\ndemo@b:z\n"
    for user, password in (("a:b", "x"), ("a", "x\ny"), ("", "x")):
        with pytest.raises(StackError):
            password_file_lines({user: password})


def test_the_hub_gets_tls_to_its_own_listener_and_two_users_by_password_file(
    tmp_path: Path,
) -> None:
    files = {BRIDGE_USER: tmp_path / "b", DELIVERY_USER: tmp_path / "d"}
    env = hub_environment(SECURE, Path("/srv/pki/ca.crt"), files)
    assert env == {
        "CITYHUB_MQTT__HOST": "127.0.0.1",
        "CITYHUB_MQTT__PORT": "8886",  # the hub's listener, not the tenants'
        "CITYHUB_MQTT__TLS": "true",
        "CITYHUB_MQTT__TLS_CA_FILE": "/srv/pki/ca.crt",
        "CITYHUB_MQTT__USERNAME": BRIDGE_USER,
        "CITYHUB_MQTT__PASSWORD_FILE": str(tmp_path / "b"),
        "CITYHUB_MQTT__DELIVERY_USERNAME": DELIVERY_USER,
        "CITYHUB_MQTT__DELIVERY_PASSWORD_FILE": str(tmp_path / "d"),
    }
    files[BRIDGE_USER].write_text("bridge-secret\n")
    files[DELIVERY_USER].write_text("delivery-secret\n")
    settings = MqttSettings.model_validate({k.split("__")[1].lower(): v for k, v in env.items()})
    assert settings.tls
    probe = hub_mqtt_settings(LAYOUT, SECURE)  # the readiness probe, as the bridge's user
    assert (probe.port, probe.username) == (8886, BRIDGE_USER)
    assert login_password(settings) == b"bridge-secret"
    assert login_password(delivery_broker_settings(settings)) == b"delivery-secret"


def test_a_password_comes_from_one_place(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"password and mqtt\.password_file are both set"):
        MqttSettings(password=SecretStr("x"), password_file=tmp_path / "p")
    with pytest.raises(ValidationError, match="delivery_password_file are both set"):
        MqttSettings(delivery_password=SecretStr("x"), delivery_password_file=tmp_path / "p")
    assert login_password(MqttSettings()) is None
    assert login_password(MqttSettings(password=SecretStr("x"))) == b"x"
    missing = MqttSettings(password_file=tmp_path / "none")
    with pytest.raises(OSError, match=r"mqtt\.password_file .*/none: No such file"):
        login_password(missing)


def test_deliveries_log_in_as_their_own_user_when_one_is_set() -> None:
    bridge = MqttSettings(username="bridge", password=SecretStr("pb"), tls=True)
    assert delivery_broker_settings(bridge) == bridge
    both = bridge.model_copy(
        update={"delivery_username": "delivery", "delivery_password": SecretStr("pd")}
    )
    delivery = delivery_broker_settings(both)
    assert delivery.username == "delivery"
    assert delivery.password is not None
    assert delivery.password.get_secret_value() == "pd"
    assert (delivery.host, delivery.port, delivery.tls) == (both.host, both.port, both.tls)


SETTINGS = MqttSettings(
    host="mqtt.city.example",
    port=8883,
    tls=True,
    tls_ca_file=Path("/etc/city/ca.crt"),
    username="cityhub-bridge",
    password=SecretStr("s3cret"),
)


def _untrusted() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify")
    error.verify_message = "unable to get local issuer certificate"
    return error


@pytest.mark.parametrize(
    ("exc", "reason", "says"),
    [
        (_untrusted(), "tls_untrusted", "not trusted (unable to get local issuer certificate)"),
        (ssl.SSLError(1, "WRONG_VERSION_NUMBER"), "tls", "is the port a TLS listener?"),
        (MqttConnectRefused(0x86, "x"), "login_refused", "refused user 'cityhub-bridge'"),
        (MqttConnectRefused(0x87, "x"), "login_refused", "mqtt.username and mqtt.password"),
        (MqttConnectRefused(0x88, "busy"), "refused", "refused the connection: busy"),
        (MqttConnectionLost("gone"), "lost", "gone"),
        (TimeoutError(), "timeout", "no answer in time"),
        (ConnectionRefusedError(111, "Connection refused"), "unreachable", "cannot connect"),
        (ValueError("odd"), "other", "odd"),
    ],
)
def test_a_failed_session_says_why_and_what_to_check(
    exc: BaseException, reason: str, says: str
) -> None:
    got_reason, message = session_failure(exc, SETTINGS)
    assert got_reason == reason
    assert says in message
    assert "s3cret" not in message


def test_an_untrusted_certificate_names_the_ca_file_and_host_checked() -> None:
    _, message = session_failure(_untrusted(), SETTINGS)
    assert message.startswith("mqtts://mqtt.city.example:8883: ")
    assert "CA file /etc/city/ca.crt" in message
    assert "'mqtt.city.example'" in message
    _, message = session_failure(_untrusted(), SETTINGS.model_copy(update={"tls_ca_file": None}))
    assert "the system's CAs" in message
