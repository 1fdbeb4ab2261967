"""The Kafka security settings and their mapping to aiokafka's arguments, without a broker."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cityhub.connectors.kafka_clients import (
    component_login,
    kafka_producer,
    login_refusal,
    read_secret,
    security_options,
    ssl_context,
)
from cityhub.connectors.kafka_security import (
    client_security_kwargs,
    client_settings_env,
    sasl_login,
    secret_from_file_text,
    tls_plan,
)
from cityhub.schemas.errors import ConfigurationError
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.streams.devtools.stack.pki import ensure_pki
from cityhub.streams.supervisor import kafka_component

SCRAM: dict[str, Any] = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "cityhub-bridge",
    "sasl_password": "s3cret-value",
}


def test_plaintext_is_the_default_and_maps_to_nothing_but_the_protocol() -> None:
    kafka = KafkaSettings()
    assert tls_plan(kafka) is None
    assert sasl_login(kafka) is None
    assert client_security_kwargs(kafka, sasl_password=None) == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_maps_to_aiokafkas_names() -> None:
    kafka = KafkaSettings(**SCRAM, ssl_ca_file=Path("/etc/ca.pem"))
    assert client_security_kwargs(kafka, sasl_password="pw") == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "cityhub-bridge",
        "sasl_plain_password": "pw",
    }
    plan = tls_plan(kafka)
    assert plan is not None
    assert plan.ca_file == Path("/etc/ca.pem")
    assert plan.check_hostname


def test_sasl_plaintext_has_no_tls_and_ssl_has_no_login() -> None:
    assert tls_plan(KafkaSettings(**{**SCRAM, "security_protocol": "SASL_PLAINTEXT"})) is None
    assert sasl_login(KafkaSettings(security_protocol="SSL")) is None


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs kafka.sasl_mechanism"),
        ({**SCRAM, "sasl_username": None}, "needs kafka.sasl_username"),
        ({**SCRAM, "sasl_password": None}, "needs kafka.sasl_password or"),
        ({**SCRAM, "sasl_password_file": Path("/p")}, "not both"),
        ({"sasl_username": "x"}, "does not log in"),
        ({"ssl_ca_file": Path("/ca")}, "does not use TLS"),
        ({"security_protocol": "SSL", "ssl_cert_file": Path("/c")}, "go together"),
        ({"security_protocol": "SSL", "ssl_key_file": Path("/k")}, "go together"),
        ({"security_protocol": "SSL", "ssl_key_password": "x"}, "no kafka.ssl_key_file"),
        ({**SCRAM, "sasl_mechanism": "OAUTHBEARER"}, "sasl_mechanism"),
        ({**SCRAM, "sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
    ],
)
def test_settings_that_do_not_fit_are_refused_with_what_to_set(
    fields: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        KafkaSettings(**fields)


def test_the_password_never_prints() -> None:
    settings = Settings(kafka=KafkaSettings(**SCRAM))
    assert "s3cret-value" not in settings.model_dump_json()
    assert "s3cret-value" not in repr(settings)


def test_env_variables_reach_the_security_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in client_settings_env(
        bootstrap_servers="127.0.0.1:1",
        ca_file=Path("/ca.pem"),
        mechanism="SCRAM-SHA-256",
        username="u",
        password_file=Path("/pw"),
    ).items():
        monkeypatch.setenv(name, value)
    kafka = Settings().kafka
    assert kafka.security_protocol == "SASL_SSL"
    assert kafka.sasl_mechanism == "SCRAM-SHA-256"
    assert kafka.sasl_username == "u"
    assert kafka.sasl_password_file == Path("/pw")
    assert kafka.ssl_ca_file == Path("/ca.pem")


def test_secret_files_lose_only_their_line_break(tmp_path: Path) -> None:
    assert secret_from_file_text("pw\n") == "pw"
    assert secret_from_file_text("pw\r\n") == "pw"
    assert secret_from_file_text(" pw ") == " pw "
    (tmp_path / "pw").write_text("from-file\n")
    kafka = KafkaSettings(**{**SCRAM, "sasl_password": None, "sasl_password_file": tmp_path / "pw"})
    assert security_options(kafka)["sasl_plain_password"] == "from-file"


def test_a_missing_secret_file_names_the_setting_not_the_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"kafka\.sasl_password_file"):
        read_secret(tmp_path / "absent", "kafka.sasl_password_file")


def test_tls_context_verifies_and_checks_host_names_as_set(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    kafka = KafkaSettings(**SCRAM, ssl_ca_file=pki.ca_cert)
    context = security_options(kafka)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    plan = tls_plan(kafka.model_copy(update={"ssl_check_hostname": False}))
    assert plan is not None
    relaxed = ssl_context(plan)
    assert relaxed.verify_mode == ssl.CERT_REQUIRED
    assert not relaxed.check_hostname


def test_a_client_certificate_is_loaded_and_a_wrong_key_refused(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "a")
    other = ensure_pki(tmp_path / "b")
    good = KafkaSettings(
        security_protocol="SSL",
        ssl_ca_file=pki.ca_cert,
        ssl_cert_file=pki.server_cert,
        ssl_key_file=pki.server_key,
    )
    assert isinstance(security_options(good)["ssl_context"], ssl.SSLContext)
    with pytest.raises(ConfigurationError, match="ssl_key_file"):
        security_options(good.model_copy(update={"ssl_key_file": other.server_key}))


def test_an_unreadable_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    kafka = KafkaSettings(**SCRAM, ssl_ca_file=tmp_path / "absent.pem")
    with pytest.raises(ConfigurationError, match=r"kafka\.ssl_ca_file"):
        security_options(kafka)


def test_factories_refuse_security_passed_as_options() -> None:
    with pytest.raises(TypeError, match="bootstrap_servers"):
        kafka_producer(KafkaSettings(), bootstrap_servers="elsewhere:9092")
    with pytest.raises(TypeError, match="sasl_plain_username"):
        kafka_producer(KafkaSettings(), sasl_plain_username="someone")


async def test_an_unreachable_broker_is_not_a_refusal() -> None:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    assert await login_refusal(kafka, timeout=2.0) is None


def test_children_log_in_as_their_component(tmp_path: Path) -> None:
    (tmp_path / "worker.username").write_text("cityhub-worker\n")
    (tmp_path / "worker.password").write_text("pw\n")
    kafka = KafkaSettings(component_credentials_dir=tmp_path)
    assert component_login(kafka, kafka_component("worker-3")) == {
        "CITYHUB_KAFKA__SASL_USERNAME": "cityhub-worker",
        "CITYHUB_KAFKA__SASL_PASSWORD_FILE": str(tmp_path / "worker.password"),
    }
    assert component_login(KafkaSettings(), "worker") == {}
    with pytest.raises(ConfigurationError, match="component_credentials_dir"):
        component_login(kafka, "bridge")
    assert [kafka_component(c) for c in ("bridge", "deliver", "api", "history", "simulator")] == [
        "bridge",
        "delivery",
        "api",
        "history",
        "api",
    ]
