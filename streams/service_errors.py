"""The errors of the hub's services, as the operator API answers them and the CLI prints them.

The registry (``streams/registry/``), the subscriptions service, the quotas and the compacted
stores raise these; the API turns each into an RFC 9457 problem document with its ``status``,
``title``, ``detail`` and the fields at fault (``streams/api/problems.py``), and the CLI prints
``Error: <detail>`` with the same fields. The module imports nothing of the services, so that
every one of them, and the API, can import it without importing another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cityhub.schemas.errors import CityhubError


@dataclass(frozen=True, slots=True)
class FieldError:
    """One field at fault in a request, a spec or a row of an import."""

    field: str
    """Dotted path of the offending field, e.g. ``location.latitude`` or ``dev_eui``."""
    message: str


class ServiceError(CityhubError):
    """Base of the errors the API turns into RFC 9457 problem responses."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)


class Invalid(ServiceError):
    # 400, not 422: the NL API Design Rules answer every invalid input with 400.
    status = 400
    title = "Invalid input"


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"


class Unauthenticated(ServiceError):
    status = 401
    title = "Unauthenticated"


class Unavailable(ServiceError):
    """A compacted topic (the registry's, the subscriptions') could not be written or read back
    in time; trying again may work."""

    retriable = True
    status = 503
    title = "Registry unavailable"
