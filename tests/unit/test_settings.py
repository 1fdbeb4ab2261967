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


def test_a_misspelt_top_level_setting_is_named_with_what_it_likely_meant():
    from cityhub.schemas.settings import unknown_variables

    environ = {
        "CITYHUB_LOG_FORMT": "json",  # pydantic-settings would ignore it silently
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_KAFKA__PARTITIONS": "3",
        "CITYHUB_KAFKA": '{"partitions": 3}',  # a whole section as JSON is a setting too
        "CITYHUB_LOG_LEVEL__X": "1",  # not a section
        "CITYHUB_FUZZ_SEED": "7",  # the fuzz suite's own
        "PATH": "/usr/bin",
    }
    assert unknown_variables(environ) == [
        "CITYHUB_LOG_FORMT (did you mean CITYHUB_LOG_FORMAT?)",
        "CITYHUB_LOG_LEVEL__X (did you mean CITYHUB_LOG_LEVEL?)",
    ]


def test_consumers_that_may_lag_fetch_in_large_batches_unless_told_not_to() -> None:
    from cityhub.schemas.kafka_settings import (
        BACKGROUND_FETCH_MIN_BYTES,
        KafkaSettings,
        background_fetch,
    )

    assert background_fetch(KafkaSettings()) == {
        "fetch_min_bytes": BACKGROUND_FETCH_MIN_BYTES,
        "fetch_max_wait_ms": 250,
    }
    assert background_fetch(KafkaSettings(background_fetch_wait_ms=0)) == {}
    with pytest.raises(ValidationError):
        KafkaSettings(background_fetch_wait_ms=60_000)
