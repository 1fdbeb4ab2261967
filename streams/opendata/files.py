"""The daily open-data files: one CSV and one Parquet file per dataset and UTC day.

``<files_dir>/<dataset>/<YYYY-MM-DD>.csv`` and ``.parquet`` hold every published window of that
dataset whose start lies in that day, one row each, sorted by (window start, area, quantity),
so that any process writing the same windows writes the same bytes. A file is written to a
temporary file beside it and renamed over it (readers never see half a file), and a rewrite
keeps the rows the file already had (windows are published once and never revised, so the
union of what two writers saw is the truth). Paths are made from a configured dataset id and a
``date``, never from raw input: a request's file name is parsed into a date first.

The Parquet columns are typed (timestamps in UTC, float64 values, int64 counts); the CSV has the
same columns with RFC 3339 times, empty for a missing extreme.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

# pyarrow ships no type information (no py.typed, no stubs): its objects are Any here.
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from cityhub.schemas.open_data import OpenWindow
from cityhub.schemas.registry import ID_PATTERN
from cityhub.schemas.timefmt import parse_rfc3339, rfc3339_from_datetime

log = logging.getLogger("cityhub.opendata.files")

CSV = "csv"
PARQUET = "parquet"
FORMATS: dict[str, str] = {CSV: "text/csv", PARQUET: "application/vnd.apache.parquet"}
"""The file formats and their media types."""

COLUMNS = (
    "dataset",
    "area",
    "quantity",
    "unit",
    "window_start",
    "window_end",
    "mean",
    "min",
    "max",
    "readings",
    "published_at",
)
SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("area", pa.string(), nullable=False),
        pa.field("quantity", pa.string(), nullable=False),
        pa.field("unit", pa.string()),
        pa.field("window_start", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("window_end", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("mean", pa.float64(), nullable=False),
        pa.field("min", pa.float64()),
        pa.field("max", pa.float64()),
        pa.field("readings", pa.int64(), nullable=False),
        pa.field("published_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)
"""The Parquet schema of a daily file (the CSV's columns, in the same order)."""

_ID = re.compile(ID_PATTERN)
_FILE_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(csv|parquet)$")


_CANONICAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def canonical_time(text: str) -> str:
    """``text`` (RFC 3339) in the one form the API, the files and the stream use
    (``2026-12-04T05:00:00.000Z``, what the publisher writes: then only checked, which is
    fast). Raises InvalidTimestamp (a ValueError) for a time that is not RFC 3339."""
    if _CANONICAL_TIME.fullmatch(text):
        try:
            datetime.fromisoformat(text)
            return text
        except ValueError:
            pass  # a date the calendar does not have: the full parser says why
    return rfc3339_from_datetime(parse_rfc3339(text))


def canonical(window: OpenWindow) -> OpenWindow:
    """``window`` with its times in canonical form (``canonical_time``): a window read back
    from a file equals the one read from the topic. Raises InvalidTimestamp for a time that is
    not RFC 3339."""
    start = canonical_time(window.window_start)
    end = canonical_time(window.window_end)
    published = canonical_time(window.published_at)
    if (start, end, published) == (window.window_start, window.window_end, window.published_at):
        return window
    return window.model_copy(
        update={"window_start": start, "window_end": end, "published_at": published}
    )


def _time(text: str) -> datetime:
    """A canonical time as an aware datetime (rows are canonical by the time this runs)."""
    return datetime.fromisoformat(text)


def _from_ms(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")[:-6] + "Z"


def sort_key(window: OpenWindow) -> tuple[str, str, str]:
    """The order of rows in a file and of items in the API: start, area, quantity (canonical
    times sort as text)."""
    return (window.window_start, window.area, window.quantity)


def sorted_windows(windows: Iterable[OpenWindow]) -> list[OpenWindow]:
    """One row per key (the last one given wins), in file order, with canonical times."""
    by_key = {}
    for w in windows:
        w = canonical(w)
        by_key[w.key] = w
    return sorted(by_key.values(), key=sort_key)


def table_of(windows: Iterable[OpenWindow]) -> pa.Table:
    """The typed table of ``windows`` (sorted, one row per key)."""
    rows = sorted_windows(windows)
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for w in rows:
        columns["dataset"].append(w.dataset)
        columns["area"].append(w.area)
        columns["quantity"].append(w.quantity)
        columns["unit"].append(w.unit)
        columns["window_start"].append(_time(w.window_start))
        columns["window_end"].append(_time(w.window_end))
        columns["mean"].append(w.mean)
        columns["min"].append(w.min)
        columns["max"].append(w.max)
        columns["readings"].append(w.readings)
        columns["published_at"].append(_time(w.published_at))
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def windows_of(table: pa.Table) -> list[OpenWindow]:
    """The windows of a daily file's table (the inverse of ``table_of``)."""
    table = table.select(list(COLUMNS)).cast(SCHEMA)
    # Times as integers: pyarrow makes a tz-aware datetime per value slowly (it tries to
    # import pytz for each one), and the API wants the text anyway.
    times = ("window_start", "window_end", "published_at")
    columns = {
        name: (
            table.column(name).cast(pa.int64()) if name in times else table.column(name)
        ).to_pylist()
        for name in COLUMNS
    }
    result = []
    for i in range(table.num_rows):
        result.append(
            OpenWindow(
                dataset=columns["dataset"][i],
                area=columns["area"][i],
                quantity=columns["quantity"][i],
                unit=columns["unit"][i],
                window_start=_from_ms(columns["window_start"][i]),
                window_end=_from_ms(columns["window_end"][i]),
                mean=columns["mean"][i],
                min=columns["min"][i],
                max=columns["max"][i],
                readings=columns["readings"][i],
                published_at=_from_ms(columns["published_at"][i]),
            )
        )
    return result


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def csv_bytes(windows: Iterable[OpenWindow]) -> bytes:
    """The CSV file of ``windows``: a header, then one row per window in file order (RFC 3339
    times, ``\\r\\n`` line ends as RFC 4180 says, UTF-8)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for w in sorted_windows(windows):
        writer.writerow(
            (
                w.dataset,
                w.area,
                w.quantity,
                w.unit or "",
                w.window_start,
                w.window_end,
                _number(w.mean),
                _number(w.min),
                _number(w.max),
                str(w.readings),
                w.published_at,
            )
        )
    return out.getvalue().encode()


def parquet_bytes(windows: Iterable[OpenWindow]) -> bytes:
    """The Parquet file of ``windows`` (zstd-compressed, with statistics)."""
    sink = io.BytesIO()
    pq.write_table(table_of(windows), sink, compression="zstd")
    return sink.getvalue()


def valid_dataset_id(dataset: str) -> bool:
    """Whether ``dataset`` may name a folder (a registry id: no slash, no dot-dot)."""
    return _ID.fullmatch(dataset) is not None and dataset not in {".", ".."}


def day_path(files_dir: Path, dataset: str, day: date, fmt: str) -> Path:
    """The file of ``dataset``'s ``day`` in format ``fmt`` (``csv`` or ``parquet``)."""
    if not valid_dataset_id(dataset) or fmt not in FORMATS:
        raise ValueError("not a dataset id or a file format")
    return files_dir / dataset / f"{day.isoformat()}.{fmt}"


def parse_file_name(name: str) -> tuple[date, str] | None:
    """``YYYY-MM-DD.csv`` or ``.parquet`` as (day, format); None for any other name (a path,
    a traversal, a date the calendar does not have)."""
    match = _FILE_NAME.fullmatch(name)
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1)), match.group(2)
    except ValueError:
        return None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so
    that a reader (or another writer) sees the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_day(
    files_dir: Path,
    dataset: str,
    day: date,
    *,
    area: str | None = None,
    quantity: str | None = None,
) -> list[OpenWindow]:
    """The windows in ``dataset``'s Parquet file of ``day``, only those of ``area`` and
    ``quantity`` when given (filtered while reading: the others are never made); none when
    there is no file; a file that cannot be read is logged and read as empty."""
    path = day_path(files_dir, dataset, day, PARQUET)
    if not path.exists():
        return []
    filters = [(name, "=", value) for name, value in (("area", area), ("quantity", quantity))]
    wanted = [f for f in filters if f[2] is not None]
    try:
        return windows_of(pq.read_table(path, filters=wanted or None))
    except Exception:  # a file another version wrote, or a damaged disk: the topic rewrites it
        log.exception("cannot read the open-data file %s; served as empty", path)
        return []


def write_day(
    files_dir: Path, dataset: str, day: date, windows: Iterable[OpenWindow]
) -> list[OpenWindow]:
    """Write ``dataset``'s files of ``day`` with ``windows`` and the rows its Parquet file
    already held (Parquet first, then CSV); return the rows the files hold. Files that already
    hold exactly these rows are left as they are (a restart replays every day of the topic;
    another process may have written them)."""
    existing = read_day(files_dir, dataset, day)
    rows = sorted_windows([*existing, *windows])
    if rows == existing and day_path(files_dir, dataset, day, CSV).exists():
        return rows
    write_atomic(day_path(files_dir, dataset, day, PARQUET), parquet_bytes(rows))
    write_atomic(day_path(files_dir, dataset, day, CSV), csv_bytes(rows))
    return rows


def list_days(files_dir: Path, dataset: str) -> list[date]:
    """The days ``dataset`` has a Parquet file for, oldest first."""
    if not valid_dataset_id(dataset):
        return []
    folder = files_dir / dataset
    if not folder.is_dir():
        return []
    days = set()
    for entry in folder.iterdir():
        parsed = parse_file_name(entry.name)
        if parsed is not None and parsed[1] == PARQUET:
            days.add(parsed[0])
    return sorted(days)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC start of ``day`` and of the next."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, datetime.fromordinal(day.toordinal() + 1).replace(tzinfo=UTC)
