"""The daily open-data files, read back as a user would: with pyarrow and with DuckDB.

Typed Parquet columns, the CSV's header and values, deterministic bytes (two writers, any
order of windows), atomic replacement, a rewrite that keeps the rows a file had, and file names
that cannot name anything but a day."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from cityhub.schemas.open_data import OpenWindow
from cityhub.streams.opendata import files

DAY = date(2026, 12, 3)


def window(
    hour: int,
    area: str = "centrum",
    quantity: str = "pm10",
    *,
    mean: float = 21.0,
    minimum: float | None = 12.0,
    day: date = DAY,
) -> OpenWindow:
    start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    return OpenWindow(
        dataset="air-quality",
        area=area,
        quantity=quantity,
        unit="ug/m3",
        window_start=start.isoformat().replace("+00:00", "Z"),
        window_end=start.replace(hour=hour + 1).isoformat().replace("+00:00", "Z")
        if hour < 23
        else f"{day.isoformat()}T23:59:59Z",
        mean=mean,
        min=minimum,
        max=None if minimum is None else 30.0,
        readings=12,
        published_at=f"{day.isoformat()}T{hour:02d}:05:00.123Z",
    )


WINDOWS = [
    window(3, "west", "pm10", mean=17.0),
    window(1, "centrum", "pm2_5", mean=8.0, minimum=None),
    window(1, "centrum", "pm10", mean=21.0),
    window(2, "other-areas", "pm10", mean=19.5),
]


def test_parquet_has_typed_columns_and_reads_back_equal(tmp_path: Path) -> None:
    rows = files.write_day(tmp_path, "air-quality", DAY, WINDOWS)
    path = tmp_path / "air-quality" / "2026-12-03.parquet"
    table = pq.read_table(path)
    assert table.schema.field("window_start").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("mean").type == pa.float64()
    assert table.schema.field("readings").type == pa.int64()
    assert table.num_rows == 4
    # Sorted by start, area, quantity; a personal window's extremes are nulls.
    assert table.column("area").to_pylist() == ["centrum", "centrum", "other-areas", "west"]
    assert table.column("quantity").to_pylist()[:2] == ["pm10", "pm2_5"]
    assert table.column("min").to_pylist()[1] is None
    assert files.read_day(tmp_path, "air-quality", DAY) == rows
    assert rows == [files.canonical(w) for w in files.sorted_windows(WINDOWS)]


def test_duckdb_reads_both_files_as_a_user_would(tmp_path: Path) -> None:
    files.write_day(tmp_path, "air-quality", DAY, WINDOWS)
    folder = tmp_path / "air-quality"
    con = duckdb.connect()
    from_parquet = con.execute(
        "SELECT area, quantity, mean, min, readings, epoch_ms(window_start) FROM read_parquet(?) "
        "ORDER BY window_start, area, quantity",
        [str(folder / "2026-12-03.parquet")],
    ).fetchall()
    from_csv = con.execute(
        "SELECT area, quantity, mean, min, readings, epoch_ms(window_start) FROM read_csv_auto(?) "
        "ORDER BY window_start, area, quantity",
        [str(folder / "2026-12-03.csv")],
    ).fetchall()
    assert len(from_parquet) == len(from_csv) == 4
    for p, c in zip(from_parquet, from_csv, strict=True):
        assert p[:5] == c[:5]
        assert p[5] == c[5]  # both read as the same instant
    assert from_parquet[0][:5] == ("centrum", "pm10", 21.0, 12.0, 12)
    assert from_parquet[0][5] == datetime(2026, 12, 3, 1, tzinfo=UTC).timestamp() * 1000
    assert from_parquet[1][3] is None  # an empty CSV cell and a Parquet null alike
    # Aggregating over the files is what a user does with them.
    (mean,) = con.execute(
        "SELECT avg(mean) FROM read_parquet(?) WHERE quantity = 'pm10'",
        [str(folder / "2026-12-03.parquet")],
    ).fetchone() or (None,)
    assert mean == pytest.approx((21.0 + 19.5 + 17.0) / 3)


def test_csv_reads_back_with_pyarrow_and_has_the_header(tmp_path: Path) -> None:
    files.write_day(tmp_path, "air-quality", DAY, WINDOWS)
    raw = (tmp_path / "air-quality" / "2026-12-03.csv").read_bytes()
    assert raw.splitlines()[0].decode() == ",".join(files.COLUMNS)
    table = pacsv.read_csv(tmp_path / "air-quality" / "2026-12-03.csv")
    assert table.num_rows == 4
    assert table.column("mean").to_pylist() == [21.0, 8.0, 19.5, 17.0]


def test_the_bytes_do_not_depend_on_the_order_or_the_writer(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    files.write_day(a, "air-quality", DAY, WINDOWS)
    files.write_day(b, "air-quality", DAY, list(reversed(WINDOWS)) + WINDOWS[:1])
    for fmt in ("csv", "parquet"):
        name = f"air-quality/2026-12-03.{fmt}"
        assert (a / name).read_bytes() == (b / name).read_bytes(), fmt


def test_a_rewrite_keeps_the_rows_the_file_had_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    files.write_day(tmp_path, "air-quality", DAY, WINDOWS[:2])
    rows = files.write_day(tmp_path, "air-quality", DAY, WINDOWS[2:])
    assert len(rows) == 4
    assert len(files.read_day(tmp_path, "air-quality", DAY)) == 4
    assert sorted(p.name for p in (tmp_path / "air-quality").iterdir()) == [
        "2026-12-03.csv",
        "2026-12-03.parquet",
    ]
    assert files.list_days(tmp_path, "air-quality") == [DAY]


def test_a_damaged_file_is_read_as_empty_and_then_rewritten(tmp_path: Path) -> None:
    path = files.day_path(tmp_path, "air-quality", DAY, "parquet")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    assert files.read_day(tmp_path, "air-quality", DAY) == []
    files.write_day(tmp_path, "air-quality", DAY, WINDOWS)
    assert len(files.read_day(tmp_path, "air-quality", DAY)) == 4


@pytest.mark.parametrize(
    "name",
    [
        "../2026-12-03.csv",
        "2026-12-03.csv/..",
        "..%2F2026-12-03.csv",
        "2026-02-30.csv",
        "2026-12-03.txt",
        "2026-12-03",
        "\uff12\uff10\uff12\uff16-12-03.csv",  # full-width digits
        "/etc/passwd",
        "2026-12-03.parquet.tmp",
        "",
    ],
)
def test_a_file_name_is_a_day_and_a_format_or_nothing(name: str) -> None:
    assert files.parse_file_name(name) is None


def test_file_names_parse_and_paths_stay_inside(tmp_path: Path) -> None:
    assert files.parse_file_name("2026-12-03.parquet") == (DAY, "parquet")
    assert files.day_path(tmp_path, "noise", DAY, "csv") == tmp_path / "noise" / "2026-12-03.csv"
    for bad in ("..", "a/b", "", "UPPER"):
        with pytest.raises(ValueError):
            files.day_path(tmp_path, bad, DAY, "csv")


def test_a_filtered_read_makes_only_the_rows_asked_for(tmp_path: Path) -> None:
    files.write_day(tmp_path, "air-quality", DAY, WINDOWS)
    centrum = files.read_day(tmp_path, "air-quality", DAY, area="centrum")
    assert [(w.area, w.quantity) for w in centrum] == [("centrum", "pm10"), ("centrum", "pm2_5")]
    one = files.read_day(tmp_path, "air-quality", DAY, area="centrum", quantity="pm2_5")
    assert [w.mean for w in one] == [8.0]
    assert files.read_day(tmp_path, "air-quality", DAY, area="nowhere") == []


def test_times_in_another_rfc_3339_form_are_written_in_the_canonical_one(tmp_path: Path) -> None:
    odd = window(5).model_copy(update={"window_start": "2026-12-03T06:00:00+01:00"})
    (row,) = files.write_day(tmp_path, "air-quality", DAY, [odd])
    assert row.window_start == "2026-12-03T05:00:00.000Z"
    assert files.read_day(tmp_path, "air-quality", DAY) == [row]


def test_files_that_already_hold_the_rows_are_not_rewritten(tmp_path: Path) -> None:
    files.write_day(tmp_path, "air-quality", DAY, WINDOWS)
    path = files.day_path(tmp_path, "air-quality", DAY, "parquet")
    before = path.stat().st_mtime_ns, path.stat().st_ino
    files.write_day(tmp_path, "air-quality", DAY, WINDOWS[:2])
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    files.day_path(tmp_path, "air-quality", DAY, "csv").unlink()
    files.write_day(tmp_path, "air-quality", DAY, WINDOWS[:2])  # a missing CSV is written
    assert files.day_path(tmp_path, "air-quality", DAY, "csv").exists()
