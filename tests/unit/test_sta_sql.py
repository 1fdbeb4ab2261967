"""$filter and $orderby of Observations compiled to SQL: user input only in parameters, the
columns each property maps to, navigation handed to the caller, and clean 400s."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from cityhub.streams.sensorthings import expr as expr_module
from cityhub.streams.sensorthings import sql as sql_module
from cityhub.streams.sensorthings.expr import (
    Binary,
    Call,
    Expr,
    Negate,
    Not,
    NotSupported,
    Path,
    QueryError,
)
from cityhub.streams.sensorthings.ids import event_id_bounds, observation_id
from cityhub.streams.sensorthings.parser import (
    MAX_OPERATORS,
    MAX_OPTION_LENGTH,
    parse_filter,
    parse_orderby,
)
from cityhub.streams.sensorthings.sql import Params, compile_filter, compile_orderby

HANDED: list[Expr] = []


def navigation(expr: Expr, params: Params) -> str:
    HANDED.append(expr)
    return f"NAV({params.add('pairs')})"


def compile(text: str) -> tuple[str, dict[str, object]]:
    params = Params()
    return compile_filter(parse_filter(text), params, navigation), params.values


def test_user_input_travels_as_parameters_only() -> None:
    sql, params = compile("result eq 'x''); DROP TABLE observations; --'")
    assert "DROP" not in sql
    assert params == {"p0": "x'); DROP TABLE observations; --"}
    assert sql == "COALESCE((doc->>'value') = %(p0)s::text, FALSE)"


def test_properties_map_to_columns_by_the_type_they_meet() -> None:
    number = "COALESCE(value_number > %(p0)s::double precision, FALSE)"
    assert compile("result gt 3")[0] == number
    assert compile("result eq true")[0] == "COALESCE(value_boolean = %(p0)s, FALSE)"
    sql, params = compile(
        "phenomenonTime ge 2026-11-01T00:00:00Z and resultTime lt '2026-11-02T00:00:00Z'"
    )
    assert "observed_at >= %(p0)s::timestamptz" in sql
    assert "received_at < %(p1)s::timestamptz" in sql
    assert params["p1"] == datetime(2026, 11, 2, tzinfo=UTC)
    assert compile("result eq null")[0] == "(value_number IS NULL)"


def test_ids_become_ranges_of_event_ids() -> None:
    event = uuid.uuid4()
    number = observation_id(event)
    low, high = event_id_bounds(number)
    assert low <= event <= high
    sql, params = compile(f"id eq {number}")
    assert sql == "(event_id BETWEEN %(p0)s AND %(p1)s)"
    assert params == {"p0": low, "p1": high}
    assert compile(f"{number} lt id")[0] == "(event_id > %(p0)s)"
    assert compile("id eq -1")[0] == "FALSE"
    with pytest.raises(NotSupported):
        compile("id eq 'abc'")


def test_navigation_parts_are_handed_to_the_caller_whole() -> None:
    HANDED.clear()
    sql, _ = compile("Datastream/id eq 5 and result gt 1 or not FeatureOfInterest/name eq 'x'")
    assert sql.count("NAV(") == 2
    assert [str(e) for e in HANDED] == [
        str(parse_filter("Datastream/id eq 5")),
        str(parse_filter("not FeatureOfInterest/name eq 'x'")),
    ]
    with pytest.raises(NotSupported, match="mix"):
        compile("result eq Datastream/id")


@pytest.mark.parametrize(
    "text",
    [
        "phenomenonTime gt 3",
        "phenomenonTime gt 'yesterday'",
        "nosuch eq 1",
        "result",
        "length(phenomenonTime) eq 1",
        "result eq true and result gt true",
        "geo.intersects(result, geography'POINT(1 1)')",
    ],
)
def test_bad_filters_are_query_errors(text: str) -> None:
    with pytest.raises(QueryError):
        compile(text)


def test_functions() -> None:
    assert compile("year(phenomenonTime) eq 2026")[0].startswith(
        "COALESCE(EXTRACT(YEAR FROM (observed_at AT TIME ZONE 'UTC'))"
    )
    assert "strpos" in compile("substringof('1', result)")[0]
    assert "floor(0.5 + value_number)" in compile("round(result) eq 2")[0]
    assert "NULLIF" in compile("result div 0 eq 1")[0]


def test_orderby_ends_with_the_event_id() -> None:
    params = Params()
    order = compile_orderby(parse_orderby("phenomenonTime desc, result"), params)
    assert order == (
        "observed_at DESC NULLS LAST, value_number ASC NULLS FIRST, "
        "(doc->>'value') ASC NULLS FIRST, event_id ASC"
    )
    with pytest.raises(NotSupported):
        compile_orderby(parse_orderby("Datastream/name"), params)


@pytest.mark.parametrize(
    "text",
    [
        "year('0001-01-01T00:00:00+01:00') eq 1",
        "phenomenonTime gt '9999-12-31T23:59:59-23:59'",
        "resultTime lt '2100-06-01T00:00:00Z'",
        "phenomenonTime gt '2026-11-01T10:00:00'",
    ],
)
def test_quoted_times_pass_the_same_gate_as_unquoted_ones(text: str) -> None:
    with pytest.raises(QueryError, match="date-time"):
        compile(text)


def test_quoted_times_inside_the_range() -> None:
    sql, params = compile("phenomenonTime gt '2026-11-01T10:00:00+01:00'")
    assert sql == "COALESCE(observed_at > %(p0)s::timestamptz, FALSE)"
    assert params == {"p0": datetime(2026, 11, 1, 9, tzinfo=UTC)}


def _nodes(expr: Expr) -> int:
    match expr:
        case Binary(left=left, right=right):
            return 1 + _nodes(left) + _nodes(right)
        case Not(operand=operand) | Negate(operand=operand):
            return 1 + _nodes(operand)
        case Call(args=args):
            return 1 + sum(_nodes(a) for a in args)
    return 1


@pytest.mark.parametrize(
    ("unit", "sep"),
    [
        ("id eq 1", " or "),
        ("true", " or "),
        ("result eq 1", " and "),
        ("Datastream/id eq 1 and result eq 1", " or "),
        ("not (result eq 1)", " and "),
    ],
)
def test_compiling_reads_each_node_a_bounded_number_of_times(
    unit: str, sep: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiler asked for every path under each and/or anew: a 4 KB filter of 372
    comparisons took 150 ms on the event loop (quadratic). Now each node is read a bounded
    number of times, whatever the filter's length: counted, not timed, so it cannot flake."""
    original = expr_module.paths_of
    visits = 0

    def counted(expr: Expr) -> list[Path]:
        nonlocal visits
        visits += 1
        return original(expr)

    # paths_of recurses through the module's global: every node it reads is counted.
    monkeypatch.setattr(expr_module, "paths_of", counted)
    monkeypatch.setattr(sql_module, "paths_of", counted)
    # As long a filter as the parser takes: its length, and its number of operators.
    per_unit = unit.count(" and ") + unit.count(" or ") + 1  # its own, and the one after it
    count = min(
        (MAX_OPTION_LENGTH + len(sep)) // (len(unit) + len(sep)), (MAX_OPERATORS + 1) // per_unit
    )
    tree = parse_filter(sep.join([unit] * count))
    compile_filter(tree, Params(), navigation)
    assert visits <= 3 * _nodes(tree)
