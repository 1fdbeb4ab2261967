"""The uses counted under each agreement, summed over the processes that counted them.

Pure: no I/O. A store feeds it the ``agreement-usage`` topic's records (keyed
``usage/<agreement id>/<process>``, each a process's cumulative totals, ``AgreementUsage``);
``of(agreement)`` sums them. What both parties of an agreement see as its ``usage``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from cityhub.schemas.sharing import AgreementUsage
from cityhub.streams.compacted_view import CompactedView

log = logging.getLogger("cityhub.sharing.usage")


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """The uses under one agreement: items delivered and items read, and when a counting
    process last wrote (None: nothing was counted yet)."""

    delivered: int = 0
    read: int = 0
    last_at: str | None = None

    def public(self) -> dict[str, object]:
        return {"delivered": self.delivered, "read": self.read, "updated_at": self.last_at}


class UsageView(CompactedView):
    """Every process's latest totals per agreement. ``apply`` never raises."""

    def __init__(self) -> None:
        super().__init__(log, "usage record")
        self._records: dict[str, dict[str, AgreementUsage]] = {}

    def _apply(self, key: str, value: bytes | None) -> None:
        """A tombstone forgets a process's totals."""
        kind, _, rest = key.partition("/")
        agreement, _, process = rest.rpartition("/")
        if kind != "usage" or not agreement or not process:
            raise ValueError("not a usage key")
        if value is None:
            self._records.get(agreement, {}).pop(process, None)
            return
        record = AgreementUsage.model_validate(json.loads(value))
        if record.key != key:
            raise ValueError(f"key does not match the record's ({record.key})")
        self._records.setdefault(agreement, {})[process] = record

    def of(self, agreement_id: str) -> UsageTotals:
        """The uses under ``agreement_id``, summed over every process that counted."""
        records = self._records.get(agreement_id)
        if not records:
            return UsageTotals()
        return UsageTotals(
            delivered=sum(r.delivered for r in records.values()),
            read=sum(r.read for r in records.values()),
            last_at=max(r.at for r in records.values()),
        )

    def count(self) -> int:
        """Usage records held (agreement x process)."""
        return sum(len(r) for r in self._records.values())
