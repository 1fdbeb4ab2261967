"""Structure-aware mutations of JSON messages, MQTT topics and binary payloads, as hypothesis
strategies.

A mutated message starts from a valid one (a fixture or a simulated uplink) and has a few of its
fields deleted, repeated (as a duplicate key in the text), replaced with values of other types
or with hostile values (integers beyond 64 bits, NaN and infinities written as number literals,
``-0.0``, long strings, control characters, lone surrogates, characters outside the BMP, odd
timestamps, base64 oddities), nested deeply or multiplied; the result is written by a JSON
writer of our own (so that it can write what no JSON library writes: duplicate keys, ``\\ud800``
escapes, ``1e400``, raw surrogates) and its bytes may then be flipped, cut or spliced.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from cityhub.connectors.decoders.cayenne import TYPE_KEYS, encode_lpp


@dataclass(frozen=True)
class Raw:
    """A JSON fragment written as it is (a number no parser keeps, a deep nesting)."""

    text: str


@dataclass
class Pairs:
    """A JSON object whose keys may repeat (``{"a": 1, "a": "x"}``)."""

    items: list[tuple[str, Any]]


# --- hostile values ----------------------------------------------------------------------------

ESCAPED = '\x00\x01\x1f\x7f"\\/\n\r\t\u2028\u2029\u200e\u202e\ufeff\ufffd\U0001f600\U0010ffff'
"""Characters that JSON escapes, that take three or four bytes in UTF-8, or that mislead a
reader (bidi overrides, line separators, a byte-order mark)."""

NUMBER_LITERALS = (
    "1e400",
    "-1e400",
    "1E+308",
    "-0",
    "-0.0",
    "0e0",
    "1.7976931348623157e308",
    "4.9e-324",
    "1e-400",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890123456789",
    "1" + "0" * 400,
    "0.1" + "1" * 500,
    "NaN",
    "Infinity",
    "-Infinity",
    "01",
    "1.",
    ".5",
    "+1",
    "0x10",
)
"""Numbers as text: some JSON, some only almost (Python's json writes NaN; orjson refuses it)."""

ODD_TIMES = (
    "2024-05-01T10:00:00Z",
    "2024-05-01T10:00:00.123456789012345678901234567890Z",
    "2024-05-01t10:00:00z",
    "2024-05-01 10:00:00Z",
    "2024-05-01T10:00:00",
    "2024-05-01",
    "2024-02-30T10:00:00Z",
    "2024-13-01T10:00:00Z",
    "2024-05-01T24:00:00Z",
    "2016-12-31T23:59:60Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59.999999999Z",
    "9999-12-31T23:59:59-23:59",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00+00:01",
    "2099-12-31T23:59:59.999Z",
    "2100-01-01T00:00:00Z",
    "2099-12-31T23:00:00-01:00",
    "\u0662\u0660\u0662\u0664-05-01T10:00:00Z",
    "2024-05-01T10:00:00+25:00",
    "2024-05-01T10:00:00+05",
    "+2024-05-01T10:00:00Z",
    "2024-W18-3T10:00:00Z",
    "T",
    "",
    " ",
)
"""Timestamps at and past the edges: of the calendar, of the accepted range, of RFC 3339."""

EPOCH_NUMBERS = (
    0,
    -1,
    1,
    4_102_444_799,
    4_102_444_800,
    1e11,
    1e11 + 1,
    4_102_444_799_999,
    4_102_444_800_000,
    2**63,
    2**64,
    -(2**63),
    1e308,
    5e-324,
    -0.0,
)

BASE64_ODDITIES = (
    "AWcA1wJoUA",
    "AWcA1wJoUA=",
    "AWcA1wJoUA===",
    "====",
    "=",
    "A",
    "AB",
    "ABC",
    "A===",
    "-_-_",
    "AWcA 1wJo UA==",
    "AWcA\n1wJoUA==",
    "AWcA1wJoUA==\n",
    "\u00e9\u00e9\u00e9\u00e9",
    "AWcA1wJoUA==AWcA",
    "/w==",
    "AA==",
    "//////////8=",
)


def escaped_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Short strings mixing plain letters, escaped characters and lone surrogates."""
    chars = st.sampled_from(ESCAPED + "aZ09-_:@+#") | st.characters(
        categories=["Cs", "Co", "Cn", "Zl", "Zp", "Cf", "Mn", "Nd"]
    )
    return st.text(alphabet=chars, max_size=max_size)


def long_text() -> st.SearchStrategy[str]:
    """A short unit repeated up to 70 000 times (around the size limits once escaped)."""
    return st.builds(
        lambda unit, times: unit * times,
        st.text(alphabet=ESCAPED + "a", min_size=1, max_size=3),
        st.integers(min_value=1, max_value=70_000),
    )


def hostile_scalars() -> st.SearchStrategy[Any]:
    """One value of any JSON type (or none), chosen to break a careless reader."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 2**1024]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 1.7976931348623157e308]),
        st.sampled_from(NUMBER_LITERALS).map(Raw),
        escaped_text(),
        long_text(),
        st.sampled_from(ODD_TIMES),
        st.sampled_from(EPOCH_NUMBERS),
        st.sampled_from(BASE64_ODDITIES),
        st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
        st.sampled_from(["0004A30B001C0530", "0004a30b001c053", "0004a30b001c05300", "g" * 16]),
    )


def deep_nesting() -> st.SearchStrategy[Raw]:
    """Arrays or objects nested 2 to 3 000 levels deep (orjson refuses more than 1 024)."""

    def nest(depth: int, kind: str) -> Raw:
        if kind == "array":
            return Raw("[" * depth + "1" + "]" * depth)
        return Raw('{"value":' * depth + "1" + "}" * depth)

    return st.builds(
        nest, st.integers(min_value=2, max_value=3000), st.sampled_from(["array", "object"])
    )


def hostile_numbers() -> st.SearchStrategy[Any]:
    """Numbers at the edges: beyond 64 bits, near the float limits, -0.0, literals no parser
    keeps, epoch times around the accepted range."""
    extreme_floats = st.sampled_from(
        [1e308, -1e308, 1.7976931348623157e308, 5e-324, -0.0, 1e-300, 1e300, 3e38]
    )
    return st.one_of(
        st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 2**1023, 2**1024]),
        extreme_floats,
        extreme_floats,
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(),
        st.sampled_from(EPOCH_NUMBERS),
        st.sampled_from(NUMBER_LITERALS).map(Raw),
    )


def hostile_strings_like(text: str) -> st.SearchStrategy[str]:
    """Strings in the place of ``text``: it changed a little (cut, case, escapes added), or
    escaped, long, time-like, base64-like or EUI-like strings."""
    return st.one_of(
        st.integers(min_value=0, max_value=max(0, len(text) - 1)).map(lambda n: text[:n]),
        st.just(text.swapcase()),
        escaped_text(8).map(lambda extra: text + extra),
        escaped_text(8).map(lambda extra: extra + text),
        escaped_text(),
        long_text(),
        st.sampled_from(ODD_TIMES),
        st.sampled_from(BASE64_ODDITIES),
        st.sampled_from(["0004A30B001C0530", "0004a30b001c053", "0004a30b001c05300", "g" * 16]),
    )


def alike(value: Any) -> st.SearchStrategy[Any]:
    """A hostile value of the same JSON type as ``value`` (any hostile value for containers)."""
    if isinstance(value, bool):
        return st.sampled_from([not value, 0, 1, "true"])
    if isinstance(value, int | float):
        return hostile_numbers()
    if isinstance(value, str):
        return hostile_strings_like(value)
    return hostile_scalars()


def hostile_values(vocabulary: list[str]) -> st.SearchStrategy[Any]:
    """A scalar, a small container of scalars, or a deep nesting."""
    scalars = hostile_scalars()
    keys = st.sampled_from(vocabulary) | escaped_text(12)
    return st.one_of(
        scalars,
        scalars,
        st.lists(scalars, max_size=4),
        st.dictionaries(keys, scalars, max_size=4),
        st.fixed_dictionaries({"value": scalars, "unit": scalars}),
        deep_nesting(),
    )


# --- the JSON writer ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    """How the writer spells things: all escapes ASCII, escaped slashes, spaces."""

    ascii_only: bool
    escape_slash: bool
    spaced: bool


def _string(text: str, style: Style) -> str:
    out = json.dumps(text, ensure_ascii=style.ascii_only)
    return out.replace("/", "\\/") if style.escape_slash else out


def dump(value: Any, style: Style) -> str:
    """``value`` as JSON text. ``Raw`` is written as is, ``Pairs`` with its repeated keys, lone
    surrogates as ``\\udXXX`` escapes (ASCII style) or as themselves (the caller encodes them
    with ``surrogatepass``, which gives bytes that are not UTF-8)."""
    colon, comma = (": ", ", ") if style.spaced else (":", ",")
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        items = value.items
    elif isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        return "[" + comma.join(dump(v, style) for v in value) + "]"
    elif isinstance(value, str):
        return _string(value, style)
    elif isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else str(value)
    else:
        return json.dumps(value)
    return "{" + comma.join(_string(k, style) + colon + dump(v, style) for k, v in items) + "}"


# --- structure-aware mutation ------------------------------------------------------------------

Path = tuple[Any, ...]


def _paths(doc: Any, prefix: Path = ()) -> list[Path]:
    """Every place in ``doc`` (the root too), containers before their contents."""
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, (*prefix, i))
    return found


def _get(doc: Any, path: Path) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _set(doc: Any, path: Path, value: Any) -> Any:
    """``doc`` with ``value`` at ``path`` (the root replaced when the path is empty)."""
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _delete(doc: Any, path: Path) -> Any:
    if not path:
        return doc
    parent = _get(doc, path[:-1])
    del parent[path[-1]]
    return doc


def vocabulary_of(*docs: Any) -> list[str]:
    """Every object key in ``docs``: names a mutation may add where they do not belong."""
    keys: set[str] = set()

    def walk(doc: Any) -> None:
        if isinstance(doc, dict):
            keys.update(doc)
            for value in doc.values():
                walk(value)
        elif isinstance(doc, list):
            for value in doc:
                walk(value)

    for doc in docs:
        walk(doc)
    return sorted(keys)


@st.composite
def mutated_document(draw: Callable[..., Any], seed: Any, vocabulary: list[str]) -> Any:
    """``seed`` (parsed JSON, not changed) with up to eight structural mutations applied."""
    doc = copy.deepcopy(seed)
    values = hostile_values(vocabulary)
    # Mostly one or two changes, so that a hostile value often reaches the code past the
    # checks; sometimes many at once.
    many = draw(st.integers(min_value=0, max_value=3)) == 3
    for _ in range(draw(st.integers(min_value=0, max_value=8 if many else 2))):
        paths = _paths(doc)
        if draw(st.integers(min_value=0, max_value=3)) != 0:
            # Three times in four a leaf (a value), else any place (an object, an array).
            paths = [p for p in paths if not isinstance(_get(doc, p), dict | list)] or paths
        path = draw(st.sampled_from(paths))
        here = _get(doc, path)
        op = draw(
            st.sampled_from(
                ("alike",) * 3
                + ("replace",) * 2
                + ("delete", "add", "duplicate", "retype", "wrap", "repeat")
            )
        )
        if op == "alike":
            # The right type with a hostile value: gets past the type checks to the code after.
            doc = _set(doc, path, draw(alike(here)))
        elif op == "replace":
            doc = _set(doc, path, draw(values))
        elif op == "delete":
            doc = _delete(doc, path)
        elif op == "add" and isinstance(here, dict):
            here[draw(st.sampled_from(vocabulary) | escaped_text(12))] = draw(values)
        elif op == "duplicate" and isinstance(here, dict) and here:
            key = draw(st.sampled_from(sorted(here)))
            pairs = [*here.items(), (key, draw(values))]
            if draw(st.booleans()):
                pairs.reverse()  # the hostile copy first, or last
            doc = _set(doc, path, Pairs(pairs))
        elif op == "retype":
            # A value of another field in its place: the right kind of value, the wrong type.
            donor = draw(st.sampled_from(_paths(seed)))
            doc = _set(doc, path, copy.deepcopy(_get(seed, donor)))
        elif op == "wrap":
            doc = _set(doc, path, [here] if draw(st.booleans()) else {"value": here})
        elif op == "repeat" and isinstance(here, list) and here:
            # Past the bounds the code keeps: 512 measurements, 1 024 SenML records.
            doc = _set(doc, path, here * draw(st.sampled_from([2, 3, 64, 513, 1025])))
        if isinstance(doc, Pairs):
            break  # the root is now a written form, not a mutable document
    return doc


@st.composite
def byte_mutations(draw: Callable[..., Any], data: bytes) -> bytes:
    """``data`` with up to three byte-level changes: bit flips, cuts, insertions, deletions,
    repeated slices, or unchanged."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "splice"]))
        at = draw(st.integers(min_value=0, max_value=len(buf)))
        if op == "flip" and buf:
            at = min(at, len(buf) - 1)
            buf[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            piece = draw(
                st.sampled_from(
                    [b'"', b"\\", b"\x00", b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"{", b"]",
                     b",", b"\\u", b"\xf4\x90\x80\x80", b"\xe2\x80\xa8"]
                )
                | st.binary(min_size=1, max_size=8)
            )  # fmt: skip
            buf[at:at] = piece
        elif op == "delete":
            del buf[at : at + draw(st.integers(min_value=1, max_value=16))]
        elif op == "splice" and buf:
            end = min(len(buf), at + draw(st.integers(min_value=1, max_value=64)))
            buf[at:at] = buf[at:end] * draw(st.integers(min_value=1, max_value=50))
    return bytes(buf)


STYLES = st.builds(Style, st.booleans(), st.booleans(), st.booleans())


@st.composite
def mutated_json(draw: Callable[..., Any], seed: Any, vocabulary: list[str]) -> bytes:
    """The bytes of a mutated ``seed``: structure first, then (one time in four) bytes."""
    doc = draw(mutated_document(seed, vocabulary))
    data = dump(doc, draw(STYLES)).encode("utf-8", "surrogatepass")
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        data = draw(byte_mutations(data))
    return data


# --- topics ------------------------------------------------------------------------------------

TOPIC_PIECES = (
    "",
    "+",
    "#",
    "v3",
    "devices",
    "up",
    "application",
    "device",
    "event",
    "cityhub",
    "ingest",
    "app@",
    "@tenant",
    "a@b@c",
    "0004A30B001C0530",
    "0004a30b001c053g",
    "\u00e9",
    "\U0001f600",
    "\u202e",
    " ",
    "$SYS",
    "\x00",
)


@st.composite
def near_valid_topic(draw: Callable[..., Any], topic: str) -> str:
    """``topic``, or it with segments dropped, added, emptied, replaced (Unicode, wildcards,
    other formats' words) or grown very long. Always a string MQTT can carry (valid UTF-8)."""
    if draw(st.integers(min_value=0, max_value=3)) != 0:
        return topic  # three times in four: the message's own topic
    parts = topic.split("/")
    segment = st.sampled_from(TOPIC_PIECES) | st.text(
        alphabet=st.characters(codec="utf-8"), max_size=12
    )
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        op = draw(st.sampled_from(["drop", "add", "replace", "long", "case"]))
        at = draw(st.integers(min_value=0, max_value=max(0, len(parts) - 1)))
        if op == "drop" and len(parts) > 1:
            del parts[at]
        elif op == "add":
            parts.insert(at, draw(segment))
        elif op == "replace" and parts:
            parts[at] = draw(segment)
        elif op == "long" and parts:
            parts[at] = parts[at] + draw(st.sampled_from(["a", "\u00e9", "/", "\U0001f600"])) * (
                draw(st.integers(min_value=1, max_value=20_000))
            )
        elif op == "case" and parts:
            parts[at] = parts[at].swapcase()
    return "/".join(parts)


# --- binary payloads ---------------------------------------------------------------------------


def _lpp_value(key: str) -> st.SearchStrategy[Any]:
    """Values that fit the LPP type ``key`` (integers in the smallest range any type takes;
    object types with their keys)."""
    small = st.integers(min_value=0, max_value=30)  # +-32.767 fits every object type
    objects = {
        "accelerometer": ("x", "y", "z"),
        "gyrometer": ("x", "y", "z"),
        "gps": ("latitude", "longitude", "altitude"),
        "colour": ("r", "g", "b"),
    }
    if key in objects:
        return st.fixed_dictionaries(dict.fromkeys(objects[key], small))
    return st.integers(min_value=0, max_value=1)


def lpp_items() -> st.SearchStrategy[list[tuple[int, str, Any]]]:
    """Valid Cayenne LPP items: any channel, any known type, a value it can carry."""
    channels = st.integers(min_value=0, max_value=255)
    item = st.sampled_from(TYPE_KEYS).flatmap(
        lambda key: st.tuples(channels, st.just(key), _lpp_value(key))
    )
    return st.lists(item, max_size=12)


@st.composite
def binary_payloads(draw: Callable[..., Any]) -> bytes:
    """Raw bytes, or valid Cayenne LPP with mutated channels, types and lengths."""
    kind = draw(st.sampled_from(["random", "lpp", "lpp", "lpp-mutated", "lpp-mutated", "long"]))
    if kind == "random":
        return bytes(draw(st.binary(max_size=256)))
    if kind == "long":
        unit = draw(st.binary(min_size=1, max_size=4))
        return unit * draw(st.integers(min_value=1, max_value=60_000))
    data = encode_lpp(draw(lpp_items()))
    if kind == "lpp":
        return data
    buf = bytearray(data)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["type", "channel", "truncate", "extend", "flip"]))
        if op == "type" and buf:
            at = draw(st.integers(min_value=0, max_value=len(buf) - 1))
            buf[at] = draw(st.integers(min_value=0, max_value=255))
        elif op == "channel" and buf:
            buf[0] = draw(st.integers(min_value=0, max_value=255))
        elif op == "truncate":
            del buf[draw(st.integers(min_value=0, max_value=len(buf))) :]
        elif op == "extend":
            buf += draw(st.binary(min_size=1, max_size=6))
        elif op == "flip" and buf:
            at = draw(st.integers(min_value=0, max_value=len(buf) - 1))
            buf[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
    return bytes(buf)
