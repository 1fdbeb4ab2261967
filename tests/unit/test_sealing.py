"""Sealing personal values: round trip, the AAD binding (tenant, subject, event), hostile
tokens, erased keys, key wrapping and the KEK's text form."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityhub.schemas.errors import ConfigurationError, KeyErased, SealingError, Unsealable
from cityhub.streams.privacy.sealing import (
    MAX_TOKEN_CHARS,
    SubjectKey,
    decode_kek,
    new_subject_key,
    open_sealed,
    seal,
    unwrap,
    wrap,
)

FIELDS = {"value": 21.5, "location": {"lat": 52.1, "lon": 5.1}, "extra": {"room": "kitchen"}}
KEY = new_subject_key("t1", "resident-0001")
OTHER = new_subject_key("t1", "resident-0002")
KEYS = {KEY.key_id: KEY, OTHER.key_id: OTHER}
NO_KEYS: dict[str, SubjectKey] = {}


def opened(
    token: str, *, tenant: str = "t1", subject: str = "resident-0001", event: str = "e1"
) -> dict[str, Any]:
    return open_sealed(token, tenant=tenant, subject=subject, event_id=event, key_of=KEYS.get)


def test_a_sealed_value_opens_as_what_was_sealed() -> None:
    token = seal(KEY, FIELDS, event_id="e1")
    assert opened(token) == FIELDS


def test_the_token_names_its_version_and_key_and_hides_the_fields() -> None:
    token = seal(KEY, FIELDS, event_id="e1")
    version, key_id, body = token.split(".")
    assert (version, key_id) == ("v1", KEY.key_id)
    assert "=" not in body
    assert "kitchen" not in token
    assert "21.5" not in token


def test_each_seal_draws_a_new_nonce() -> None:
    assert seal(KEY, FIELDS, event_id="e1") != seal(KEY, FIELDS, event_id="e1")


@pytest.mark.parametrize(
    ("tenant", "subject", "event"),
    [("t2", "resident-0001", "e1"), ("t1", "resident-0001", "e2"), ("t1x", "resident-0001", "e1")],
)
def test_a_token_does_not_open_for_another_tenant_or_event(
    tenant: str, subject: str, event: str
) -> None:
    token = seal(KEY, FIELDS, event_id="e1")
    with pytest.raises(Unsealable):
        opened(token, tenant=tenant, subject=subject, event=event)


def test_a_token_moved_to_another_subjects_record_does_not_open() -> None:
    token = seal(KEY, FIELDS, event_id="e1")
    with pytest.raises(Unsealable):
        opened(token, subject="resident-0002")


def test_a_token_relabelled_with_another_subjects_key_id_does_not_open() -> None:
    token = seal(KEY, FIELDS, event_id="e1")
    relabelled = token.replace(KEY.key_id, OTHER.key_id)
    with pytest.raises(Unsealable):
        opened(relabelled, subject="resident-0002")


def test_a_key_for_the_same_subject_under_another_tenant_does_not_open_it() -> None:
    # Same subject id, same key id, another tenant's key: the view would never return it, but
    # open_sealed refuses it on its own.
    foreign = SubjectKey("t2", KEY.subject, KEY.key_id, KEY.secret)
    token = seal(KEY, FIELDS, event_id="e1")
    with pytest.raises(Unsealable):
        open_sealed(
            token, tenant="t1", subject=KEY.subject, event_id="e1", key_of=lambda _: foreign
        )


def test_a_shredded_key_makes_the_value_erased() -> None:
    token = seal(KEY, FIELDS, event_id="e1")
    with pytest.raises(KeyErased):
        open_sealed(token, tenant="t1", subject=KEY.subject, event_id="e1", key_of=lambda _: None)


def test_the_errors_are_sealing_errors_and_quote_nothing() -> None:
    token = seal(KEY, FIELDS, event_id="e1")
    assert issubclass(KeyErased, SealingError)
    assert issubclass(Unsealable, SealingError)
    with pytest.raises(Unsealable) as caught:
        opened(token[:-3] + "AAA")
    assert token[10:] not in str(caught.value)
    assert KEY.key_id not in str(caught.value)


HOSTILE = [
    "",
    "v1",
    "v2." + "0" * 32 + ".AAAA",
    "v1.." + "A" * 40,
    "v1.XYZ.AAAA",
    "v1." + "0" * 31 + "G.AAAA",
    "v1." + "0" * 32 + ".",
    "v1." + "0" * 32 + ".AAA=",
    "v1." + "0" * 32 + ".AA+/",
    "v1." + "0" * 32 + ".A",
    "v1." + "0" * 32 + ".AAAA.AAAA",
    "v1." + "0" * 32 + ".AAAAAAAA",  # too short for a nonce and a tag
    "v1." + "0" * 32 + " .AAAA",
    "\x00" * 100,
]


@pytest.mark.parametrize("token", HOSTILE)
def test_malformed_tokens_are_unsealable(token: str) -> None:
    with pytest.raises(Unsealable):
        opened(token)


def test_a_token_that_is_not_a_string_is_unsealable() -> None:
    with pytest.raises(Unsealable):
        opened(b"v1.abc.def")  # type: ignore[arg-type]  # what a careless caller may pass


def test_a_token_over_the_bound_is_refused_unread() -> None:
    calls: list[str] = []

    def key_of(key_id: str) -> SubjectKey | None:
        calls.append(key_id)
        return KEY

    token = "v1." + KEY.key_id + "." + "A" * MAX_TOKEN_CHARS
    with pytest.raises(Unsealable):
        open_sealed(token, tenant="t1", subject=KEY.subject, event_id="e1", key_of=key_of)
    assert calls == []


def test_a_malformed_token_is_unsealable_even_when_its_key_is_gone() -> None:
    # Malformed is told apart before the key is looked up: only a well-formed token is erased.
    with pytest.raises(Unsealable):
        open_sealed(
            "v1." + "0" * 32 + ".!!", tenant="t", subject="s", event_id="e", key_of=NO_KEYS.get
        )


def test_non_canonical_base64_is_unsealable() -> None:
    token = seal(KEY, FIELDS, event_id="e1")
    body = token.rsplit(".", 1)[1]
    assert len(body) % 4 != 0, "a 12+n+16 byte body whose length is a multiple of 3"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(body[-1])
    respelled = token[:-1] + alphabet[last ^ 1]
    with pytest.raises(Unsealable):
        opened(respelled)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_every_flipped_bit_is_unsealable(data: st.DataObject) -> None:
    token = seal(KEY, {"value": 1}, event_id="e1")
    head, body = token.rsplit(".", 1)
    blob = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    flipped = head + "." + base64.urlsafe_b64encode(bytes(blob)).rstrip(b"=").decode()
    with pytest.raises(Unsealable):
        opened(flipped)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_unsealable_or_erased_never_another_exception(token: str) -> None:
    with pytest.raises((Unsealable, KeyErased)):
        opened(token)


def test_a_truncated_token_is_unsealable() -> None:
    token = seal(KEY, FIELDS, event_id="e1")
    for cut in (1, 2, 5, 16, 40):
        with pytest.raises(Unsealable):
            opened(token[:-cut])


def test_a_sealed_non_object_is_unsealable() -> None:
    # Sealing is only ever given a dict; a token whose plaintext is a list was made elsewhere.
    token = seal(KEY, [1, 2], event_id="e1")  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(Unsealable):
        opened(token)


def test_a_subject_key_hides_its_secret_and_checks_its_shape() -> None:
    assert KEY.secret.hex() not in repr(KEY)
    assert str(list(KEY.secret)) not in repr(KEY)
    with pytest.raises(SealingError):
        SubjectKey("t1", "s", "not-hex", os.urandom(32))
    with pytest.raises(SealingError):
        SubjectKey("t1", "s", "0" * 32, os.urandom(16))
    with pytest.raises(SealingError):
        SubjectKey("t\x1f1", "s", "0" * 32, os.urandom(32))


def test_new_keys_differ() -> None:
    a, b = new_subject_key("t", "s"), new_subject_key("t", "s")
    assert a.key_id != b.key_id
    assert a.secret != b.secret


def test_a_wrapped_key_unwraps_with_its_kek_only() -> None:
    kek, other = os.urandom(32), os.urandom(32)
    blob = wrap(kek, KEY.secret)
    assert KEY.secret not in blob
    assert len(blob) == 40
    assert unwrap(kek, blob) == KEY.secret
    with pytest.raises(Unsealable):
        unwrap(other, blob)
    tampered = bytes([blob[0] ^ 1]) + blob[1:]
    with pytest.raises(Unsealable):
        unwrap(kek, tampered)
    for short in (b"", blob[:-8], blob + b"\x00" * 8):
        with pytest.raises(Unsealable):
            unwrap(kek, short)


def test_wrapping_needs_a_32_byte_kek_and_key() -> None:
    with pytest.raises(ConfigurationError):
        wrap(b"short", KEY.secret)
    with pytest.raises(SealingError):
        wrap(os.urandom(32), b"short")


def test_the_kek_text_is_base64_of_32_bytes_and_never_repeated() -> None:
    raw = os.urandom(32)
    assert decode_kek(base64.b64encode(raw).decode() + "\n") == raw
    for bad in ("not base64!", base64.b64encode(os.urandom(16)).decode(), ""):
        with pytest.raises(ConfigurationError) as caught:
            decode_kek(bad)
        assert (bad or "\x00") not in str(caught.value)
