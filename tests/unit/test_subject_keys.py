"""The data subjects' keys without Kafka: the view (unwrap at apply, tombstones, the current
key, malformed records), the in-memory store (ensure, races, shred) and the KEK's loading."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from cityhub.schemas.errors import ConfigurationError, KeyErased
from cityhub.schemas.settings import PrivacySettings, Settings, StackSettings
from cityhub.streams.compacted import InMemoryTopic
from cityhub.streams.privacy.keys_store import (
    KEK_FILE_NAME,
    InMemorySubjectKeyStore,
    ensure_local_kek,
    kek_file,
    load_kek,
    write_kek_file,
)
from cityhub.streams.privacy.keys_view import SubjectKeyRecord, SubjectKeyView, record_key
from cityhub.streams.privacy.sealing import new_subject_key, open_sealed, seal, wrap

KEK = os.urandom(32)


def key_record(
    tenant: str = "t1",
    subject: str = "resident-0001",
    *,
    kek: bytes = KEK,
    created_at: str = "2026-12-01T10:00:00.000Z",
) -> tuple[str, bytes, str, bytes]:
    """(record key, value, key id, secret) of a fresh key of ``subject``."""
    made = new_subject_key(tenant, subject)
    record = SubjectKeyRecord(
        tenant=tenant,
        subject=subject,
        key_id=made.key_id,
        wrapped_key=base64.b64encode(wrap(kek, made.secret)).decode(),
        created_at=created_at,
    )
    return record_key(record), record.model_dump_json().encode(), made.key_id, made.secret


def test_the_view_unwraps_a_key_when_it_applies_it() -> None:
    view = SubjectKeyView(KEK)
    key, value, key_id, secret = key_record()
    assert key == f"subject_key/t1/resident-0001/{key_id}"
    view.apply(key, value, 0)
    current = view.current("t1", "resident-0001")
    assert current is not None
    assert (current.key_id, current.secret) == (key_id, secret)
    assert view.by_id(key_id) == current
    assert view.count() == 1
    assert view.offset == 0


def test_a_tombstone_removes_the_key_everywhere() -> None:
    view = SubjectKeyView(KEK)
    key, value, key_id, _ = key_record()
    view.apply(key, value, 0)
    view.apply(key, None, 1)
    assert view.current("t1", "resident-0001") is None
    assert view.by_id(key_id) is None
    assert view.count() == 0
    assert view.record_keys_of("t1", "resident-0001") == []


def test_a_tombstone_of_an_unknown_key_is_no_error() -> None:
    view = SubjectKeyView(KEK)
    view.apply("subject_key/t1/resident-0001/" + "0" * 32, None, 0)
    assert (view.count(), view.malformed) == (0, 0)


def test_current_is_the_earliest_created_then_the_smallest_key_id() -> None:
    view = SubjectKeyView(KEK)
    late = key_record(created_at="2026-12-01T10:00:01.000Z")
    early = key_record(created_at="2026-12-01T10:00:00.000Z")
    tie = key_record(created_at="2026-12-01T10:00:00.000Z")
    for offset, (key, value, _, _) in enumerate((late, early, tie)):
        view.apply(key, value, offset)
    current = view.current("t1", "resident-0001")
    assert current is not None
    assert current.key_id == min(early[2], tie[2])
    assert [k.key_id for k in view.keys_of("t1", "resident-0001")][-1] == late[2]
    # Every key opens by id, not only the current one.
    assert view.by_id(late[2]) is not None


def test_keys_are_per_tenant_and_subject() -> None:
    view = SubjectKeyView(KEK)
    for offset, (key, value, _, _) in enumerate(
        (key_record("t1", "resident-0001"), key_record("t2", "resident-0001"))
    ):
        view.apply(key, value, offset)
    one, two = view.current("t1", "resident-0001"), view.current("t2", "resident-0001")
    assert one is not None
    assert two is not None
    assert one.key_id != two.key_id
    assert two.tenant == "t2"
    assert view.current("t1", "resident-0002") is None


def test_a_key_wrapped_with_another_kek_is_malformed_but_still_erasable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = SubjectKeyView(KEK)
    key, value, key_id, _ = key_record(kek=os.urandom(32))
    with caplog.at_level(logging.WARNING, "cityhub.privacy.keys"):
        view.apply(key, value, 0)
    assert view.malformed == 1
    assert view.by_id(key_id) is None
    assert view.record_keys_of("t1", "resident-0001") == [key]
    # The log names neither the subject nor anything of the key.
    assert "resident-0001" not in caplog.text
    assert key_id not in caplog.text
    view.apply(key, None, 1)
    assert view.record_keys_of("t1", "resident-0001") == []


def _doc(value: bytes) -> dict[str, object]:
    doc = json.loads(value)
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: {**d, "subject": "resident-0002"},  # the record key says another subject
        lambda d: {**d, "kind": "device"},
        lambda d: {**d, "wrapped_key": "!!!"},
        lambda d: {**d, "wrapped_key": base64.b64encode(b"x" * 40).decode()},
        lambda d: {**d, "key_id": "not-hex"},
        lambda d: {**d, "created_at": "yesterday"},
        lambda d: {**d, "extra": 1},
        lambda d: [d],
    ],
)
def test_malformed_records_are_counted_and_skipped(mutate: object) -> None:
    view = SubjectKeyView(KEK)
    key, value, key_id, _ = key_record()
    assert callable(mutate)
    view.apply(key, json.dumps(mutate(_doc(value))).encode(), 0)
    assert view.malformed == 1
    assert view.count() == 0
    assert view.by_id(key_id) is None


@pytest.mark.parametrize("value", [b"", b"{", b"\xff\xfe", b"[" * 100_000, b"null", b"1"])
def test_garbage_never_raises(value: bytes) -> None:
    view = SubjectKeyView(KEK)
    view.apply("subject_key/t1/resident-0001/" + "0" * 32, value, 0)
    assert view.malformed == 1


def test_a_key_id_copied_under_another_subject_is_refused() -> None:
    view = SubjectKeyView(KEK)
    key, value, key_id, _ = key_record("t1", "resident-0001")
    view.apply(key, value, 0)
    copy = {**_doc(value), "subject": "resident-0002"}
    view.apply(f"subject_key/t1/resident-0002/{key_id}", json.dumps(copy).encode(), 1)
    assert view.malformed == 1
    found = view.by_id(key_id)
    assert found is not None
    assert found.subject == "resident-0001"
    assert view.current("t1", "resident-0002") is None


def test_the_view_never_shows_a_secret() -> None:
    view = SubjectKeyView(KEK)
    key, value, _, secret = key_record()
    view.apply(key, value, 0)
    assert secret.hex() not in repr(view)
    assert KEK.hex() not in repr(view)
    assert secret.hex() not in repr(view.current("t1", "resident-0001"))


async def test_ensure_makes_one_key_and_then_returns_it() -> None:
    store = InMemorySubjectKeyStore(kek=KEK)
    first = await store.ensure("t1", "resident-0001")
    again = await store.ensure("t1", "resident-0001")
    assert first == again
    assert len(store.log) == 1
    key, value = store.log[0]
    assert key == f"subject_key/t1/resident-0001/{first.key_id}"
    assert value is not None
    assert first.secret not in value
    assert base64.b64encode(first.secret) not in value


async def test_keys_made_in_a_race_settle_on_one_current_key_and_all_stay_usable() -> None:
    topic = InMemoryTopic()
    a = InMemorySubjectKeyStore(kek=KEK, topic=topic, clock=lambda: 1_796_119_200.5)
    b = InMemorySubjectKeyStore(kek=KEK, topic=topic)
    made_by_a = await a.ensure("t1", "resident-0001")
    # Another process made its key half a second earlier, before it could see a's: its record
    # lands after a's on the topic.
    key, value, raced_id, _ = key_record(created_at="2026-12-01T10:00:00.000Z")
    topic.append(key, value)
    for view in (a.view, b.view):
        current = view.current("t1", "resident-0001")
        assert current is not None
        assert current.key_id == raced_id
        assert view.by_id(made_by_a.key_id) == made_by_a  # a's tokens still open
    assert (await b.ensure("t1", "resident-0001")).key_id == raced_id  # nothing new made
    assert len(topic.records) == 2
    assert await b.shred("t1", "resident-0001") == 2
    assert a.view.keys_of("t1", "resident-0001") == []


async def test_shred_tombstones_every_key_and_tokens_no_longer_open() -> None:
    store = InMemorySubjectKeyStore(kek=KEK)
    key = await store.ensure("t1", "resident-0001")
    other = await store.ensure("t1", "resident-0002")
    token = seal(key, {"value": 1}, event_id="e1")
    assert await store.shred("t1", "resident-0001") == 1
    with pytest.raises(KeyErased):
        open_sealed(
            token, tenant="t1", subject="resident-0001", event_id="e1", key_of=store.view.by_id
        )
    assert store.view.by_id(other.key_id) == other
    assert await store.shred("t1", "resident-0001") == 0  # idempotent
    assert store.log[-1] == (f"subject_key/t1/resident-0001/{key.key_id}", None)


async def test_a_store_with_another_kek_cannot_use_the_keys_but_can_shred_them() -> None:
    topic = InMemoryTopic()
    writer = InMemorySubjectKeyStore(kek=KEK, topic=topic)
    await writer.ensure("t1", "resident-0001")
    stranger = InMemorySubjectKeyStore(kek=os.urandom(32), topic=topic)
    assert stranger.view.current("t1", "resident-0001") is None
    assert stranger.view.malformed == 1
    assert await stranger.shred("t1", "resident-0001") == 1
    assert writer.view.current("t1", "resident-0001") is None


def settings_with(**privacy: object) -> Settings:
    return Settings(privacy=PrivacySettings(**privacy))  # type: ignore[arg-type]


def test_the_kek_comes_from_the_setting() -> None:
    assert load_kek(settings_with(key_encryption_key=base64.b64encode(KEK).decode())) == KEK


def test_the_kek_comes_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    assert write_kek_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    kek = load_kek(settings_with(key_encryption_key_file=path))
    assert len(kek) == 32
    before = path.read_bytes()
    assert not write_kek_file(path)  # never overwritten
    assert path.read_bytes() == before


def test_the_default_file_is_the_stacks(tmp_path: Path) -> None:
    settings = Settings(stack=StackSettings(state_dir=tmp_path))
    assert kek_file(settings) == tmp_path / KEK_FILE_NAME
    with pytest.raises(ConfigurationError) as caught:
        load_kek(settings)
    assert "CITYHUB_PRIVACY__KEY_ENCRYPTION_KEY" in str(caught.value)
    assert "cityhub stack up" in str(caught.value)
    write_kek_file(tmp_path / KEK_FILE_NAME)
    assert len(load_kek(settings)) == 32


def test_a_bad_kek_is_refused_without_being_repeated(tmp_path: Path) -> None:
    short = base64.b64encode(os.urandom(16)).decode()
    for settings in (
        settings_with(key_encryption_key=short),
        settings_with(key_encryption_key="s3cr3t-not-base64!"),
    ):
        with pytest.raises(ConfigurationError) as caught:
            load_kek(settings)
        assert short not in str(caught.value)
        assert "s3cr3t" not in str(caught.value)
    path = tmp_path / "kek"
    path.write_text("s3cr3t-not-base64!")
    with pytest.raises(ConfigurationError) as caught:
        load_kek(settings_with(key_encryption_key_file=path))
    assert "s3cr3t" not in str(caught.value)
    both = settings_with(
        key_encryption_key=base64.b64encode(KEK).decode(), key_encryption_key_file=path
    )
    with pytest.raises(ConfigurationError, match="not both"):
        load_kek(both)


def test_a_kek_file_others_may_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kek"
    path.write_text(base64.b64encode(KEK).decode())
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, "cityhub.privacy.keys"):
        assert load_kek(settings_with(key_encryption_key_file=path)) == KEK
    assert "chmod 600" in caplog.text
    assert base64.b64encode(KEK).decode() not in caplog.text


def test_the_settings_never_print_the_kek() -> None:
    text = base64.b64encode(KEK).decode()
    settings = settings_with(key_encryption_key=text)
    assert text not in settings.model_dump_json()
    assert text not in repr(settings)


def test_the_stack_makes_a_kek_only_where_none_is_configured(tmp_path: Path) -> None:
    local = Settings(stack=StackSettings(state_dir=tmp_path))
    assert ensure_local_kek(local) == tmp_path / KEK_FILE_NAME
    assert ensure_local_kek(local) is None  # already there: kept
    assert len(load_kek(local)) == 32
    configured = Settings(
        stack=StackSettings(state_dir=tmp_path / "other"),
        privacy=PrivacySettings(key_encryption_key=SecretStr(base64.b64encode(KEK).decode())),
    )
    assert ensure_local_kek(configured) is None
    assert not (tmp_path / "other").exists()
