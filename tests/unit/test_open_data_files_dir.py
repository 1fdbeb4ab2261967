"""Without ``open_data.files_dir`` a hub's open-data files go under its own Kafka topic prefix:
two hubs started in one folder (the default ``.cityhub/open-data``) used to serve each other's
files and merge their windows into them (found by an outside review: a hub with prefix
``attack2`` served another hub's 15:00 windows and rewrote that file with its own)."""

from __future__ import annotations

from pathlib import Path

from cityhub.schemas.kafka_settings import KafkaSettings
from cityhub.schemas.open_data import OpenDataSettings, OpenWindow
from cityhub.schemas.settings import Settings
from cityhub.streams.compacted import InMemoryCompactedStore
from cityhub.streams.opendata.distributions import OpenDataDistributions, window_key
from cityhub.streams.opendata.view import OpenDataView


def files_dir(settings: Settings) -> Path:
    view = OpenDataView(["air-quality"], recent_days=2)
    store: InMemoryCompactedStore[OpenDataView, OpenWindow] = InMemoryCompactedStore(
        view, window_key
    )
    return OpenDataDistributions(settings, store=store).files_dir


def test_each_topic_prefix_has_a_folder_of_its_own_by_default() -> None:
    city = files_dir(Settings(kafka=KafkaSettings(topic_prefix="city")))
    other = files_dir(Settings(kafka=KafkaSettings(topic_prefix="attack2")))
    assert city == Path(".cityhub/open-data/city")
    assert other == Path(".cityhub/open-data/attack2")


def test_a_folder_set_is_used_as_it_is(tmp_path: Path) -> None:
    settings = Settings(
        kafka=KafkaSettings(topic_prefix="city"),
        open_data=OpenDataSettings(files_dir=tmp_path / "files"),
    )
    assert files_dir(settings) == tmp_path / "files"
