"""Ids and DevEUIs that writes in flight are taking, so two writes cannot take the same one.

A write returns once the registry's view shows it, so between the check (is the id free in the
view?) and the view showing the new record, another request could pass the same check. A write
therefore holds its tokens meanwhile: ``tenant/<id>``, ``type/<tenant>/<id>``, ``device/<id>``,
``eui/<dev eui>``. The hold is per registry instance; two instances writing the same new id at
the same moment could both succeed (the later record wins), which an operator workflow does not
do.

Device ids and DevEUIs are unique across tenants, so a taken one must be refused (409) even when
another tenant has it; the refusal says no more than that. The same words whether another
tenant's device has it or another tenant's write in flight holds it, nothing of whose it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cityhub.streams.service_errors import Conflict, FieldError

ID_NOT_AVAILABLE = "this device id is not available; choose another"
EUI_NOT_AVAILABLE = "this DevEUI is not available"


def not_available(token: str) -> Conflict:
    """The refusal of an id or DevEUI (``device/<id>``, ``eui/<eui>``) that is not the
    caller's tenant's to take; other tokens (tenants, types) only clash within one tenant."""
    if token.startswith("device/"):
        return Conflict(ID_NOT_AVAILABLE, errors=[FieldError("id", ID_NOT_AVAILABLE)])
    if token.startswith("eui/"):
        return Conflict(EUI_NOT_AVAILABLE, errors=[FieldError("dev_eui", EUI_NOT_AVAILABLE)])
    return Conflict("another request is writing the same record; try again")


class Reservations:
    """The tokens that this registry instance's writes in flight hold, each with its tenant."""

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}

    @contextmanager
    def hold(self, tenant: str, *tokens: str) -> Iterator[None]:
        """Hold ids and DevEUIs that a write of ``tenant`` is about to take, so a concurrent
        write in this instance cannot take them too before the view shows the first. One that
        another tenant's write holds is *not available*, in the same words as one that another
        tenant's device has: a probe cannot tell the two apart."""
        self.refuse_held_elsewhere(tenant, *tokens)
        if any(t in self._holders for t in tokens):
            raise Conflict("another request is writing the same id or DevEUI; try again")
        self._holders.update(dict.fromkeys(tokens, tenant))
        try:
            yield
        finally:
            for token in tokens:
                self._holders.pop(token, None)

    def refuse_held_elsewhere(self, tenant: str, *tokens: str) -> None:
        """Conflict (*not available*) if another tenant's write in flight holds a token."""
        for token in tokens:
            holder = self._holders.get(token)
            if holder is not None and holder != tenant:
                raise not_available(token)

    def row_error(self, tenant: str, token: str, field: str, what: str) -> FieldError | None:
        """The import row error for an id or DevEUI that a write in flight holds, if one does:
        *not available* if another tenant's write holds it."""
        holder = self._holders.get(token)
        if holder is None:
            return None
        if holder != tenant:
            return not_available(token).errors[0]
        return FieldError(field, f"another request is writing this {what}")
