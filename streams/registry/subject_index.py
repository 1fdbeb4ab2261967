"""Which devices each data subject of a tenant is linked to: the registry view's index for
"devices of subject S in tenant T" (a resident's own access needs it).

Only linked devices take room: a device without a subject costs nothing here. Pure, no I/O.
"""

from __future__ import annotations

from collections import Counter


class SubjectIndex:
    """Device ids per (tenant, data subject). A subject id means something only within its
    tenant: two tenants may choose the same pseudonym for different residents."""

    __slots__ = ("_ids", "_linked_of_type")

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], set[str]] = {}
        self._linked_of_type: Counter[tuple[str, str]] = Counter()

    def __len__(self) -> int:
        """How many (tenant, subject) pairs have at least one device."""
        return len(self._ids)

    def add(self, tenant: str, subject: str, device_id: str, type_id: str) -> None:
        """Note that the device (of type ``type_id``) is linked to the subject."""
        ids = self._ids.setdefault((tenant, subject), set())
        if device_id not in ids:
            ids.add(device_id)
            self._linked_of_type[(tenant, type_id)] += 1

    def remove(self, tenant: str, subject: str, device_id: str, type_id: str) -> None:
        """Forget the link, if there is one; a subject left without devices is dropped."""
        ids = self._ids.get((tenant, subject))
        if ids is None or device_id not in ids:
            return
        ids.discard(device_id)
        if not ids:
            del self._ids[(tenant, subject)]
        use = (tenant, type_id)
        self._linked_of_type[use] -= 1
        if self._linked_of_type[use] <= 0:
            del self._linked_of_type[use]

    def linked_of_type(self, tenant: str, type_id: str) -> int:
        """How many of the tenant's devices of this type are linked to a subject."""
        return self._linked_of_type.get((tenant, type_id), 0)

    def device_ids(self, tenant: str, subject: str) -> list[str]:
        """The ids of the subject's devices in the tenant, in order (empty if none)."""
        return sorted(self._ids.get((tenant, subject), ()))
