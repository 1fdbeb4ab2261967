"""min.insync.replicas on the topics cityhub creates: derived from the replication factor or
configured, never above it, on cityhub's own topics, subscriptions' and faust's."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.topics import STATES, changelog
from cityhub.streams.subscriptions.topics import subscription_topic_config
from cityhub.streams.topic_admin import topic_specs

MIN_ISR = "min.insync.replicas"


def _settings(replication_factor: int, min_insync_replicas: int | None = None) -> Settings:
    return Settings(
        kafka=KafkaSettings(
            replication_factor=replication_factor, min_insync_replicas=min_insync_replicas
        )
    )


def test_unreplicated_topics_leave_min_insync_replicas_to_the_broker() -> None:
    specs = topic_specs(_settings(replication_factor=1))
    # 7 logs (the processing log and open-data points too), 14 compacted (device health and the
    # subscriptions' statuses too), the console's sign-outs (compacted and deleted), and the
    # agents' states
    assert len(specs) == 22 + len(STATES)
    assert all(MIN_ISR not in spec.config for spec in specs)
    assert MIN_ISR not in subscription_topic_config(KafkaSettings(replication_factor=1))


@pytest.mark.parametrize(("replicas", "expected"), [(2, "2"), (3, "2"), (5, "2")])
def test_replicated_topics_get_min_insync_replicas_of_two(replicas: int, expected: str) -> None:
    settings = _settings(replication_factor=replicas)
    specs = topic_specs(settings)
    assert {spec.config[MIN_ISR] for spec in specs} == {expected}
    assert subscription_topic_config(settings.kafka)[MIN_ISR] == expected
    # The rest of each topic's config stays as it was.
    by_name = {spec.name: spec.config for spec in specs}
    assert by_name["cityhub.registry"]["cleanup.policy"] == "compact"
    assert by_name["cityhub.raw"]["cleanup.policy"] == "delete"


def test_a_configured_value_is_used_as_given() -> None:
    specs = topic_specs(_settings(replication_factor=5, min_insync_replicas=3))
    assert {spec.config[MIN_ISR] for spec in specs} == {"3"}
    # Also on an unreplicated topic, when asked for (the only value allowed there is 1).
    specs = topic_specs(_settings(replication_factor=1, min_insync_replicas=1))
    assert {spec.config[MIN_ISR] for spec in specs} == {"1"}


def test_min_insync_replicas_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"exceeds kafka\.replication_factor=2"):
        KafkaSettings(replication_factor=2, min_insync_replicas=3)
    with pytest.raises(ValidationError):
        KafkaSettings(min_insync_replicas=0)


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYHUB_KAFKA__REPLICATION_FACTOR", "3")
    monkeypatch.setenv("CITYHUB_KAFKA__MIN_INSYNC_REPLICAS", "3")
    assert Settings().kafka.topic_min_insync_replicas() == 3
    monkeypatch.setenv("CITYHUB_KAFKA__MIN_INSYNC_REPLICAS", "4")
    with pytest.raises(ValidationError, match="min_insync_replicas=4"):
        Settings()


def test_the_agents_state_topics_are_compacted_and_as_durable() -> None:
    specs = {spec.name: spec for spec in topic_specs(_settings(replication_factor=3))}
    for state in STATES:
        spec = specs[changelog(Settings().worker.app_id, state)]
        assert spec.config["cleanup.policy"] == "compact"
        assert spec.config[MIN_ISR] == "2"
        assert spec.partitions == Settings().kafka.partitions
