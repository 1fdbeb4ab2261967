"""The migration files' names, order and packaging (no database)."""

from __future__ import annotations

import pytest

from cityhub.schemas.errors import ConfigurationError
from cityhub.streams.history.migrate import (
    Migration,
    load_migrations,
    ordered,
    parse_file_name,
    pending,
)


def test_file_names_give_version_and_description() -> None:
    assert parse_file_name("0001_observations_and_aggregates.sql") == (
        1,
        "observations and aggregates",
    )
    assert parse_file_name("0012_x.sql") == (12, "x")
    for not_a_migration in ("README.md", "1_x.sql", "0001-x.sql", "0001_X.sql", "0001_x.sql~"):
        assert parse_file_name(not_a_migration) is None


def _m(version: int) -> Migration:
    return Migration(version, f"m{version}", "SELECT 1")


def test_ordered_sorts_and_refuses_gaps_and_repeats() -> None:
    assert [m.version for m in ordered([_m(2), _m(1), _m(3)])] == [1, 2, 3]
    with pytest.raises(ValueError, match="without gaps"):
        ordered([_m(1), _m(3)])
    with pytest.raises(ValueError, match="without gaps"):
        ordered([_m(1), _m(1)])


def test_pending_is_what_the_database_lacks() -> None:
    migrations = [_m(1), _m(2), _m(3)]
    assert [m.version for m in pending(migrations, set())] == [1, 2, 3]
    assert [m.version for m in pending(migrations, {1, 2})] == [3]
    assert pending(migrations, {1, 2, 3}) == []


def test_a_database_newer_than_the_code_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"versions \[4\].*newer cityhub"):
        pending([_m(1), _m(2), _m(3)], {1, 2, 3, 4})


def test_the_packaged_migrations_load_and_make_the_contract_tables() -> None:
    migrations = load_migrations()
    assert migrations[0].version == 1
    first = migrations[0].sql
    for table in ("CREATE TABLE observations (", "CREATE TABLE aggregates ("):
        assert table in first
    assert "PARTITION BY RANGE (observed_at)" in first
    assert "PARTITION BY RANGE (window_start)" in first
