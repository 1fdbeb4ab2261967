"""The topics that hold payloads in clear (raw, dead letters) are made with the configured
retention, hourly segments and the broker's append time, so that retention bounds how long a
personal payload stays on them (docs/privacy.md, "Erasure")."""

from __future__ import annotations

from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.topics import Topics
from cityhub.streams.topic_admin import topic_specs

HOUR_MS = 3_600_000


def configs(settings: Settings) -> dict[str, dict[str, str]]:
    return {spec.name: spec.config for spec in topic_specs(settings)}


def test_defaults_a_day_for_raw_a_week_for_dead_letters() -> None:
    topics = Topics.for_prefix("cityhub")
    made = configs(Settings())
    assert made[topics.raw]["retention.ms"] == str(24 * HOUR_MS)
    assert made[topics.deadletter]["retention.ms"] == str(168 * HOUR_MS)
    for name in (topics.raw, topics.deadletter):
        assert made[name]["segment.ms"] == str(HOUR_MS)
        assert made[name]["message.timestamp.type"] == "LogAppendTime"
        assert made[name]["cleanup.policy"] == "delete"
    # The other data topics keep the producers' times (observations carry the measurement's).
    assert "message.timestamp.type" not in made[topics.observations]


def test_the_settings_set_them() -> None:
    settings = Settings(
        kafka=KafkaSettings(raw_retention_hours=2, deadletter_retention_hours=48, topic_prefix="x")
    )
    topics = Topics.for_prefix("x")
    made = configs(settings)
    assert made[topics.raw]["retention.ms"] == str(2 * HOUR_MS)
    assert made[topics.deadletter]["retention.ms"] == str(48 * HOUR_MS)


def test_the_keys_topic_is_compacted_within_the_hour() -> None:
    # A shredded key's wrapped bytes must not wait for the dirty ratio of a large topic.
    config = configs(Settings())[Topics.for_prefix("cityhub").subject_keys]
    assert config["cleanup.policy"] == "compact"
    assert config["max.compaction.lag.ms"] == str(HOUR_MS)
