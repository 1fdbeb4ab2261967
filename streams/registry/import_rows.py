"""What an import body becomes: one row per device, valid or not, and where each came from.

Pure: the types the CSV and JSON readers (``import_csv.py``, ``import_json.py``) share, the limit
on rows, and the check that no two rows of one file name the same id or DevEUI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cityhub.schemas.registry import DeviceSpec, normalise_dev_eui
from cityhub.streams.service_errors import FieldError, Invalid

MAX_IMPORT_ROWS: Final = 100_000
"""Most data rows one import may carry; a bigger file is refused whole (split it)."""


class TooManyRows(Invalid):
    """An import with more than ``max_rows`` data rows (refused whole; the caller may name its
    own limit)."""

    def __init__(self, detail: str, *, max_rows: int) -> None:
        super().__init__(detail)
        self.max_rows = max_rows


Row = DeviceSpec | Sequence[FieldError]
"""One parsed row: a valid spec, or the reasons it is not one."""


@dataclass(frozen=True, slots=True)
class ParsedImport:
    """A parsed import body: the rows for ``Registry.import_devices`` and what a report needs to
    point a person at each of them."""

    rows: list[Row]
    lines: list[int]
    """Where each row starts: its line in the CSV file, or its 1-based position in the array."""
    ids: list[str | None]
    """Each row's device id, when it has one (also for rows with errors)."""
    ignored_columns: tuple[str, ...] = ()
    """CSV header columns cityhub does not know, in header order (not TTS's dropped ones)."""


class Duplicates:
    """Finds ids and DevEUIs already used by an earlier row of the same file."""

    __slots__ = ("_eui_rows", "_id_rows")

    def __init__(self) -> None:
        self._id_rows: dict[str, str] = {}
        self._eui_rows: dict[str, str] = {}

    def check(self, row: Row, where: str, device_id: str | None, dev_eui: object) -> Row:
        """``row`` with an error added for an id or DevEUI that an earlier row has; remembers
        both, a bad row's too, so that a later row cannot silently take a broken row's place.
        ``where`` names the row in messages (``line 7``, ``item 3``)."""
        eui = row.dev_eui if isinstance(row, DeviceSpec) else eui_or_none(dev_eui)
        extra: list[FieldError] = []
        if device_id is not None:
            first = self._id_rows.setdefault(device_id, where)
            if first != where:
                extra.append(FieldError("id", f"{device_id!r} is already used on {first}"))
        if eui is not None:
            first = self._eui_rows.setdefault(eui, where)
            if first != where:
                extra.append(FieldError("dev_eui", f"{eui!r} is already used on {first}"))
        if not extra:
            return row
        return [*([] if isinstance(row, DeviceSpec) else row), *extra]


def eui_or_none(value: object) -> str | None:
    """``value`` as a normalised DevEUI, or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return normalise_dev_eui(value)
    except ValueError:
        return None
