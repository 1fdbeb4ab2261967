"""The one codec of cityhub's opaque tokens: base64url without padding, one spelling per bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityhub.schemas import base64url


@given(st.binary(max_size=200))
def test_every_byte_string_comes_back_from_its_encoding(data: bytes) -> None:
    text = base64url.encode(data)
    assert not set(text) & set("=+/")
    assert base64url.decode(text) == data


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("YWJj=", "not base64url"),  # padding
        ("YW+j", "not base64url"),  # the standard alphabet's letters
        ("YW/j", "not base64url"),
        ("YW j", "not base64url"),
        ("YWJjZ", "not base64url"),  # a length no encoding has
        ("YWJ\u00e9", "not base64url"),
        ("YR", "not canonical base64url"),  # "YQ" with unused bits set: the same byte
    ],
)
def test_anything_encode_does_not_make_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"^{why}$"):
        base64url.decode(text)


def test_the_empty_text_is_the_empty_bytes() -> None:
    assert base64url.decode("") == b""
