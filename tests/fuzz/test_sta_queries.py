"""SensorThings query options, generated from the grammar and mutated: every one parses to a
tree or is a QueryError (a 400), and every tree evaluates over an entity and compiles to SQL
for Observations, or is a QueryError; nothing else is ever raised (which would be a 500).
``make fuzz`` runs 100 000 examples each."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from cityhub.streams.sensorthings.evaluate import many, matches
from cityhub.streams.sensorthings.expr import Expr, QueryError
from cityhub.streams.sensorthings.parser import parse_filter, parse_options
from cityhub.streams.sensorthings.sql import Params, compile_filter, compile_orderby

from .profile import fuzz

PATHS = [
    "result", "phenomenonTime", "resultTime", "id", "@iot.id", "name", "description",
    "location", "time", "properties/area", "Datastream/id", "Datastream/name",
    "Datastream/Thing/name", "Datastream/ObservedProperty/definition",
    "FeatureOfInterest/feature", "Thing/Locations/location", "Datastreams/name", "nosuch",
]  # fmt: skip
LITERALS = [
    "1", "0", "-3", "2.5", "1e308", "9223372036854775807", "99999999999999999999",
    "'x'", "''", "'it''s'", "null", "true", "false",
    "2026-11-01T00:00:00Z", "2026-11-01", "'2026-11-01T00:00:00+01:00'",
    "geography'POINT(4.9 52.3)'", "geography'POLYGON((4 52, 5 52, 5 53, 4 52))'",
    "geography'LINESTRING(4 52, 5 53)'",
]  # fmt: skip
FUNCTIONS = {
    "substringof": 2, "contains": 2, "startswith": 2, "endswith": 2, "length": 1,
    "indexof": 2, "substring": 2, "tolower": 1, "toupper": 1, "trim": 1, "concat": 2,
    "year": 1, "month": 1, "day": 1, "hour": 1, "minute": 1, "second": 1,
    "fractionalseconds": 1, "date": 1, "time": 1, "now": 0, "round": 1, "floor": 1,
    "ceiling": 1, "geo.distance": 2, "geo.intersects": 2, "st_within": 2, "st_equals": 2,
}  # fmt: skip
OPERATORS = ["eq", "ne", "gt", "ge", "lt", "le", "and", "or", "add", "sub", "mul", "div", "mod"]


def _call(name: str, args: list[str]) -> str:
    return f"{name}({', '.join(args)})"


expressions = st.recursive(
    st.sampled_from(PATHS + LITERALS),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(OPERATORS), inner).map(" ".join),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"-{e}"),
        st.sampled_from(sorted(FUNCTIONS)).flatmap(
            lambda name: st.lists(inner, min_size=FUNCTIONS[name], max_size=FUNCTIONS[name]).map(
                lambda args: _call(name, args)
            )
        ),
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: Any, text: str) -> str:
    """``text`` with a few characters deleted, repeated or replaced."""
    chars = list(text)
    for _ in range(draw(st.integers(0, 3))):
        if not chars:
            break
        at = draw(st.integers(0, len(chars) - 1))
        how = draw(st.sampled_from(["drop", "twice", "swap"]))
        if how == "drop":
            del chars[at]
        elif how == "twice":
            chars.insert(at, chars[at])
        else:
            chars[at] = draw(st.sampled_from(list("()',/- $;=eqa1")))
    return "".join(chars)


ENTITY = {
    "name": "air-1",
    "description": "d",
    "time": datetime(2026, 11, 1, tzinfo=UTC),
    "result": 3.5,
    "location": {"type": "Point", "coordinates": [4.9, 52.3]},
    "properties": {"area": "a"},
}


def _resolve(path: tuple[str, ...]) -> Any:
    if path[0] == "Datastreams":
        return many(["a", "b"])
    if path[0] == "nosuch":
        raise QueryError("no such property")
    value: Any = ENTITY.get(path[-1] if len(path) > 1 else path[0])
    return value


def _navigation(expr: Expr, params: Params) -> str:
    return f"NAV({params.add('x')})"


def _run(text: str) -> str:
    try:
        tree = parse_filter(text)
    except QueryError:
        return "400 at parse"
    outcomes = []
    for step in (
        lambda: matches(tree, _resolve),
        lambda: compile_filter(tree, Params(), _navigation),
    ):
        try:
            step()
            outcomes.append("ok")
        except QueryError:
            outcomes.append("400")
    return "parsed: " + "/".join(outcomes)


@fuzz
@given(text=expressions.flatmap(lambda e: st.one_of(st.just(e), mutated(e))))
def test_filters_give_trees_values_and_sql_or_query_errors(text: str) -> None:
    event(_run(text))


@fuzz
@given(
    options=st.dictionaries(
        st.sampled_from(["$filter", "$orderby", "$expand", "$select", "$top", "$skip", "$count"]),
        st.one_of(
            expressions,
            expressions.map(lambda e: f"{e} desc, id"),
            expressions.map(lambda e: f"Datastreams($filter={e};$top=2;$expand=Observations)"),
            st.text(max_size=40),
        ),
        max_size=4,
    )
)
def test_option_sets_give_a_query_or_a_query_error(options: dict[str, str]) -> None:
    try:
        query = parse_options(options)
    except QueryError:
        event("400")
        return
    with contextlib.suppress(QueryError):
        compile_orderby(query.orderby, Params())
    event("parsed")
