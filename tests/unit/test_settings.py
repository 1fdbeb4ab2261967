import pytest
from pydantic import ValidationError

from cityhub.schemas.settings import Settings


def test_environment_sets_nested_fields_and_masks_secrets(monkeypatch):
    monkeypatch.setenv("CITYHUB_KAFKA__PARTITIONS", "3")
    monkeypatch.setenv("CITYHUB_MQTT__PASSWORD", "s3cret-value")
    monkeypatch.setenv(
        "CITYHUB_BRIDGE__SUBSCRIPTIONS", '[{"filter": "a/+", "format": "cityhub-json"}]'
    )
    settings = Settings()
    assert settings.kafka.partitions == 3
    assert settings.bridge.subscriptions[0].filter == "a/+"
    assert settings.bridge.subscriptions[0].qos == 1
    assert "s3cret-value" not in repr(settings)
    assert "s3cret-value" not in settings.model_dump_json()
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret-value"


def test_unknown_settings_are_refused(monkeypatch):
    monkeypatch.setenv("CITYHUB_KAFKA__PARTITONS", "3")  # a typo must not pass silently
    with pytest.raises(ValidationError):
        Settings()


def test_a_payload_limit_kafka_cannot_carry_is_refused(monkeypatch):
    monkeypatch.setenv("CITYHUB_BRIDGE__MAX_PAYLOAD_BYTES", str(1024 * 1024))
    with pytest.raises(ValidationError, match="max_message_bytes"):
        Settings()
