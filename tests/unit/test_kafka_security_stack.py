"""The secure stack's Kafka configuration and ACL plan, without a broker: SASL_SSL only, the
controller behind mutual TLS, and each component granted only what its code does."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import KafkaSettings, Settings, StackSettings
from cityhub.streams.devtools.stack.config import (
    SERVER_PROPERTIES_TEMPLATE,
    render_server_properties,
)
from cityhub.streams.devtools.stack.kafka_acls import (
    AclGrant,
    Operation,
    PatternType,
    ResourceType,
    component_grants,
    super_users,
)
from cityhub.streams.devtools.stack.kafka_listeners import BrokerTls
from cityhub.streams.devtools.stack.kafka_secure import (
    client_kafka_settings,
    clients_dir,
    ensure_credentials,
    scram_format_arguments,
)
from cityhub.streams.devtools.stack.layout import StackLayout, find_deploy_dir
from cityhub.streams.devtools.stack.pki import Pki

STACK = StackSettings(kafka_port=29092, kafka_controller_port=29093, secure=True)
LAYOUT = StackLayout(root=Path("/srv/secure"))
TLS = BrokerTls(
    keystore=Path("/srv/secure/pki/server-keystore.pem"),
    truststore=Path("/srv/secure/pki/ca.crt"),
    broker_password="broker-secret",
)
GRANTS = component_grants(Settings())


def secure_properties() -> dict[str, str]:
    template = (find_deploy_dir(None) / SERVER_PROPERTIES_TEMPLATE).read_text()
    text = render_server_properties(template, STACK, LAYOUT, num_partitions=4, tls=TLS)
    return dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


def test_clients_reach_only_a_sasl_ssl_listener() -> None:
    props = secure_properties()
    assert props["listeners"] == "SASL_SSL://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:29092"
    assert "PLAINTEXT" not in props["listener.security.protocol.map"]
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["ssl.keystore.location"] == str(TLS.keystore)


def test_the_controller_wants_a_certificate_and_the_authorizer_denies_by_default() -> None:
    props = secure_properties()
    assert "CONTROLLER:SSL" in props["listener.security.protocol.map"]
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"].split(";") == list(super_users())


def test_the_broker_password_is_in_the_file_but_not_in_a_repr() -> None:
    assert (
        "broker-secret"
        in secure_properties()["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    )
    assert "broker-secret" not in repr(TLS)


def can(component: str, operation: Operation, topic: str) -> bool:
    """Whether ``component``'s grants let it ``operation`` the topic (literal or by prefix)."""
    return any(
        g.resource_type is ResourceType.TOPIC
        and g.operation is operation
        and (
            g.resource_name == topic
            if g.pattern_type is PatternType.LITERAL
            else topic.startswith(g.resource_name)
        )
        for g in GRANTS[component]
    )


def test_the_subscriptions_and_their_secrets_are_read_only_where_needed() -> None:
    readers = {c for c in GRANTS if can(c, Operation.READ, "cityhub.subscriptions")}
    # delivery signs, the API manages them, the worker routes by their filters (see
    # docs/security.md: the one reader that does not need the secrets).
    assert readers == {"delivery", "api", "worker"}
    assert {c for c in GRANTS if can(c, Operation.WRITE, "cityhub.subscriptions")} == {"api"}


def test_only_the_api_reads_and_writes_the_console_sign_outs() -> None:
    # Every API process records a sign-out there and follows the topic whole.
    topic = "cityhub.console-signouts"
    assert {c for c in GRANTS if can(c, Operation.READ, topic)} == {"api"}
    assert {c for c in GRANTS if can(c, Operation.WRITE, topic)} == {"api"}


def test_the_bridge_only_writes_raw_and_dead_letters() -> None:
    bridge = {(g.operation, g.resource_name) for g in GRANTS["bridge"]}
    assert (Operation.WRITE, "cityhub.raw") in bridge
    assert (Operation.WRITE, "cityhub.deadletter") in bridge
    assert not any(g.operation is Operation.READ for g in GRANTS["bridge"])
    assert not can("bridge", Operation.WRITE, "cityhub.observations")


def test_each_stage_reads_its_input_and_writes_its_output() -> None:
    assert can("worker", Operation.READ, "cityhub.raw")
    assert can("worker", Operation.WRITE, "cityhub.observations")
    assert can("worker", Operation.WRITE, "cityhub.sub.city.s1")
    assert can("delivery", Operation.READ, "cityhub.sub.city.s1")
    assert not can("delivery", Operation.WRITE, "cityhub.sub.city.s1")
    assert can("history", Operation.READ, "cityhub.aggregates")
    assert not can("history", Operation.READ, "cityhub.raw")
    assert not can("delivery", Operation.READ, "cityhub.raw")


def test_only_the_api_deletes_and_nobody_but_the_admin_touches_the_cluster() -> None:
    deleters = {
        c for c, grants in GRANTS.items() if any(g.operation is Operation.DELETE for g in grants)
    }
    assert deleters == {"api"}
    assert not any(g.resource_type is ResourceType.CLUSTER for gs in GRANTS.values() for g in gs)


def test_every_component_may_see_the_topics_it_checks_at_start() -> None:
    for component in GRANTS:
        assert can(component, Operation.DESCRIBE, "cityhub.raw"), component
        assert can(component, Operation.DESCRIBE, "cityhub-device-windows-changelog"), component


def test_grants_follow_the_configured_names() -> None:
    settings = Settings.model_validate(
        {"kafka": {"topic_prefix": "town"}, "worker": {"app_id": "town-w"}}
    )
    worker = component_grants(settings)["worker"]
    assert (
        AclGrant(
            "User:cityhub-worker", ResourceType.GROUP, "town-w", PatternType.LITERAL, Operation.READ
        )
        in worker
    )
    assert any(g.resource_name == "town.raw" for g in worker)
    assert not any(g.resource_name.startswith("cityhub.") for g in worker)


def test_the_stacks_own_client_ignores_the_users_kafka_settings(tmp_path: Path) -> None:
    elsewhere = KafkaSettings(
        bootstrap_servers="kafka.example:9093",
        security_protocol="SSL",
        ssl_cert_file=Path("/c.pem"),
        ssl_key_file=Path("/k.pem"),
        ssl_key_password=SecretStr("x"),
        ssl_check_hostname=False,
    )
    settings = Settings(kafka=elsewhere, stack=StackSettings(kafka_port=19092, secure=True))
    layout = StackLayout(root=tmp_path)
    kafka = client_kafka_settings(settings, layout, Pki(tmp_path / "pki"), "bridge")
    assert kafka.bootstrap_servers == "127.0.0.1:19092"
    assert kafka.security_protocol == "SASL_SSL"
    assert kafka.sasl_username == "cityhub-bridge"
    assert kafka.sasl_password_file == tmp_path / "clients" / "bridge.password"
    assert kafka.ssl_ca_file == tmp_path / "pki" / "ca.crt"
    assert kafka.ssl_cert_file is None
    assert kafka.ssl_check_hostname


def test_users_are_made_once_with_private_passwords(tmp_path: Path) -> None:
    layout = StackLayout(root=tmp_path)
    first = ensure_credentials(layout, formatted=False)
    assert set(first) == {"bridge", "worker", "delivery", "api", "history", "admin", "broker"}
    assert len(set(first.values())) == len(first)
    assert ensure_credentials(layout, formatted=True) == first
    folder = clients_dir(layout)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.iterdir())
    assert (folder / "broker.username").read_text() == "cityhub-broker\n"
    arguments = scram_format_arguments(first)
    assert arguments[0] == "--add-scram"
    assert f"SCRAM-SHA-512=[name=cityhub-worker,password={first['worker']}]" in arguments


def test_a_lost_password_of_a_formatted_kafka_says_to_purge(tmp_path: Path) -> None:
    layout = StackLayout(root=tmp_path)
    ensure_credentials(layout, formatted=False)
    (clients_dir(layout) / "api.password").unlink()
    with pytest.raises(StackError, match="purge"):
        ensure_credentials(layout, formatted=True)
