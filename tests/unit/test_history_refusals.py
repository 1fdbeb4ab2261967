"""Which refusals of the history store are about a row (dead-letter it) and which about the
store (pause, as for an outage): by SQLSTATE class."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from cityhub.streams.history.writer import outage_kind, row_fault


@pytest.mark.parametrize(
    "exc",
    [
        errors.NumericValueOutOfRange("value out of range"),  # 22003
        errors.InvalidDatetimeFormat("bad time"),  # 22007
        errors.CharacterNotInRepertoire("NUL"),  # 22021
        errors.CheckViolation("check"),  # 23514
        errors.ProgramLimitExceeded("index row size exceeds btree maximum"),  # 54000
    ],
)
def test_what_a_row_holds_is_the_row_s_fault(exc: psycopg.Error) -> None:
    assert row_fault(exc)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (errors.UndefinedTable('relation "observations" does not exist'), "refuses the writes"),
        (errors.InsufficientPrivilege("permission denied"), "refuses the writes"),
        (errors.ReadOnlySqlTransaction("read-only"), "refuses the writes"),
        (errors.DiskFull("no space left"), "refuses the writes"),
        (errors.InvalidPassword("password authentication failed"), "refused the login"),
        (psycopg.OperationalError("connection refused"), "does not answer"),
        (TimeoutError(), "history.write_timeout_seconds"),
    ],
)
def test_the_state_of_the_store_is_an_outage(exc: BaseException, kind: str) -> None:
    assert not row_fault(exc)
    assert kind in outage_kind(exc)
