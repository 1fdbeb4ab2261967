"""Quotas: the error that says a tenant or an API key reached one of its limits.

The limits are settings (``cityhub.schemas.settings.QuotaSettings``, ``CITYHUB_QUOTAS__...``);
each place that enforces one raises ``QuotaExceeded`` naming it: the subscriptions service
(``subscriptions_per_tenant``), the registry's devices (``devices_per_tenant``; an import's
rows past it are refused as rows instead), the live streams (``live_streams_per_tenant``,
``live_streams_per_subscription``), the device import (``import_max_bytes``,
``import_max_rows``) and the API's rate limit (``api_requests_per_second``). The API answers
every one of them alike (``cityhub.streams.api.throttle``): an RFC 9457 problem of type
``quota-exceeded`` with the quota's name, its value and the setting that raises it, counted in
``cityhub_api_throttled_total{reason}``.
"""

from __future__ import annotations

from cityhub.streams.service_errors import ServiceError

QUOTA_PROBLEM_TYPE = "https://cityhub.example/problems/quota-exceeded"


def quota_setting(quota: str) -> str:
    """The environment variable that sets a quota (``CITYHUB_QUOTAS__<QUOTA>``)."""
    return f"CITYHUB_QUOTAS__{quota.upper()}"


class QuotaExceeded(ServiceError):
    """A request that would take a tenant or a key past one of its quotas.

    ``status`` says what the client can do: 409 (the tenant is at its limit until it frees
    something), 429 with ``retry_after`` seconds (try again later), 413 (send less).
    ``tenant`` labels the refusal's metric; it must be a tenant that exists (or None), never a
    value taken from the request unchecked, so that the metric's series stay bounded.
    """

    title = "Quota exceeded"

    def __init__(
        self,
        detail: str,
        *,
        quota: str,
        limit: int | float,
        status: int = 409,
        retry_after: int | None = None,
        tenant: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.quota = quota
        self.reason = reason or quota
        """The refusal's label in ``cityhub_api_throttled_total``: the quota, unless one quota
        is refused for different callers (the request rate: by key or by address)."""
        self.limit = limit
        self.status = status
        self.retry_after = retry_after
        self.tenant = tenant
        super().__init__(
            f"{detail} The limit is quotas.{quota} = {limit}; the hub's operator can raise it "
            f"with {self.setting}."
        )

    @property
    def setting(self) -> str:
        """The environment variable an operator sets to change this quota."""
        return quota_setting(self.quota)
