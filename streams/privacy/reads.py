"""Personal items read through the tenant's API (today: aggregates classified ``personal``, of
personal devices without a data subject): returned only for a processing activity the request
names that admits them (the same check as a subscription's, ``purpose.check_activity``), and
every read of them is written to the processing log before the answer goes out.

A request that names no activity, or one that does not admit an item, gets the rest of its
answer and a count of what was withheld: never an error, never the withheld items.

Another tenant's personal item read under an agreement of a personal offer (issue 13) is
checked against the provider's activity the offer names, as a delivery is
(``PrivacyGate.admit_read`` with the grant), and its read is logged in the provider's
processing log under that activity, with the reader as recipient."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cityhub.schemas.processing_log import processing_record
from cityhub.streams.privacy.gate import PrivacyGate
from cityhub.streams.privacy.log_writer import ProcessingLogSink
from cityhub.streams.privacy.purpose import (
    PERSONAL,
    PersonalMark,
    aggregate_mark,
    granted_activity,
)
from cityhub.streams.sharing.grants import Grant


def _no_grant(item: Mapping[str, Any]) -> Grant | None:
    return None


@dataclass(frozen=True, slots=True)
class PersonalReads:
    """The check and the log of personal items read through the API."""

    gate: PrivacyGate
    log: ProcessingLogSink
    category_of: Callable[[str, str], str]
    """A device's personal-data category, from its tenant and id (the registry's view)."""

    def _mark(self, item: Mapping[str, Any]) -> PersonalMark:
        owner, device = item.get("tenant"), item.get("device_id")
        return aggregate_mark(
            owner if isinstance(owner, str) else None,
            device if isinstance(device, str) else None,
            self.category_of,
        )

    async def admitted(
        self,
        tenant: str,
        activity: str | None,
        items: Sequence[Mapping[str, Any]],
        *,
        reader: str,
        grant_of: Callable[[Mapping[str, Any]], Grant | None] = _no_grant,
    ) -> tuple[list[Mapping[str, Any]], int]:
        """``items`` without the personal ones that activity ``activity`` of the reader's
        ``tenant`` (the key's own, never a path's) does not admit, and how many were withheld;
        the read of those it returns is logged first (raises when the log cannot be written:
        nothing personal goes out unlogged). ``grant_of``: the agreement an item of another
        tenant is read under (then the provider's activity decides, module docstring)."""
        started = time.time()
        out: list[Mapping[str, Any]] = []
        admitted: dict[tuple[str, str], int] = {}
        """Personal items returned, by the (tenant, activity) whose log records the read."""
        withheld = 0
        for item in items:
            if item.get("classification") != PERSONAL:
                out.append(item)
                continue
            mark = self._mark(item)
            grant = grant_of(item)
            provider = granted_activity(tenant, mark, grant, datetime.now(UTC))
            if provider is None:
                grant = None  # not under an agreement now: the reader's own activity decides
            if self.gate.admit_read(tenant, activity, mark, grant) is not None:
                withheld += 1
                continue
            out.append(item)
            slug = provider if provider is not None else activity
            assert slug is not None  # only a named activity admits
            logged = (mark.tenant if provider is not None else tenant, slug)
            admitted[logged] = admitted.get(logged, 0) + 1
        records = []
        for (owner, slug), personal in admitted.items():
            found = self.gate.activities.get(owner, slug)
            records.append(
                processing_record(
                    name="cityhub.read",
                    trace=None,
                    parent_span_id=None,
                    started=started,
                    ended=time.time(),
                    ok=True,
                    activity_id=found.id if found is not None else slug,
                    tenant=owner,
                    subject="",
                    recipient=reader,
                    items=personal,
                    action="read",
                )
            )
        if records:
            await self.log.write(records)
        return out, withheld


def withheld_note(withheld: int) -> dict[str, Any]:
    """What an answer says of the personal items it left out."""
    if not withheld:
        return {}
    return {
        "personal_withheld": withheld,
        "personal_note": "personal items are returned only for a processing activity of your "
        "tenant that admits them: name it with processingActivity=<slug>",
    }
