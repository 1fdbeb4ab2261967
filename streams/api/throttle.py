"""The API's quota middleware: a request rate per API key, and one answer to every quota.

Promises, for every request of the app it is installed on:

- a request beyond its caller's token bucket (``quotas.api_requests_per_second`` and
  ``quotas.api_burst``, per API process) is answered 429 with ``Retry-After`` (whole seconds, at
  least 1) before any handler runs or any secret is hashed. The caller is the API key's id,
  read from the secret itself (``chk_<key id>_<random>``) when it names a key the registry
  knows and has not revoked; any other request (no key, a malformed or unknown one) counts
  against its client address (an IPv6 address by its /64, which one host usually holds), so
  guessing keys is slowed as much as anything else. The address is the TCP peer's: behind a
  reverse proxy every client shares the proxy's, so set the limit with that in mind;
- ``/metrics``, ``/healthz`` and the OpenAPI document are never limited;
- every ``QuotaExceeded`` a handler raises (subscriptions, live streams, imports) is answered
  as the same RFC 9457 problem: type ``quota-exceeded``, the quota's name, its value and the
  setting that raises it (``quota``, ``limit``, ``setting``);
- every refusal is counted in ``cityhub_api_throttled_total{reason, tenant}``: ``reason`` is the
  quota (``api_requests_per_key`` and ``api_requests_per_address`` for the rate), ``tenant`` the
  tenant that owns the key or the subscription, empty for an address. Both label sets are
  bounded: no key id, address or path ever becomes a label.

A key whose id is known but whose secret is wrong still counts against that key's bucket: the
id is not a secret (an admin lists it), so whoever knows it can spend that key's requests, but
never more than the bucket allows, and can learn nothing from it.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Hashable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import Counter

from cityhub.streams.api.auth import MAX_SECRET_LENGTH
from cityhub.streams.api.openapi import OPENAPI_PATH
from cityhub.streams.api.problems import problem_response
from cityhub.streams.api.rate_limit import RateLimiter, retry_after_seconds
from cityhub.streams.quotas import QUOTA_PROBLEM_TYPE, QuotaExceeded
from cityhub.streams.registry.principals import KEY_PREFIX
from cityhub.streams.registry.service import Registry

EXEMPT_PATHS = frozenset({"/metrics", "/healthz", OPENAPI_PATH})
"""Paths that are never rate-limited: probes and scrapers poll them, and they need no key."""

RATE_QUOTA = "api_requests_per_second"
BY_KEY = "api_requests_per_key"
BY_ADDRESS = "api_requests_per_address"

THROTTLED = Counter(
    "cityhub_api_throttled_total",
    "API requests refused by a quota, by reason (the quota: api_requests_per_key, "
    "api_requests_per_address, subscriptions_per_tenant, devices_per_tenant, "
    "live_streams_per_tenant, live_streams_per_subscription, import_max_bytes, import_max_rows) "
    "and tenant (empty when the caller is only an address).",
    ["reason", "tenant"],
)

_MAX_INSTANCE = 256


def presented_key_id(headers: Mapping[str, str]) -> str | None:
    """The key id in the request's API key secret (``chk_<id>_<random>``), or None when it
    presents none or one of another shape. Reads the id only: nothing is hashed or checked."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        secret = token.strip()
    else:
        secret = headers.get("X-API-Key", "").strip()
    if len(secret) > MAX_SECRET_LENGTH or not secret.startswith(KEY_PREFIX):
        return None
    key_id, sep, rest = secret[len(KEY_PREFIX) :].partition("_")
    return key_id if key_id and sep and rest else None


def client_network(remote: str | None) -> str:
    """The client address a request without a usable key is counted under: an IPv4 address
    as it is (also when mapped into IPv6), an IPv6 address as its /64."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote[:64]  # not an IP address (a Unix socket): one caller per name
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def quota_problem(exc: QuotaExceeded, instance: str) -> web.Response:
    """The problem response of a quota refusal: its status, ``Retry-After`` when it has one,
    and the quota's name, value and setting."""
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return problem_response(
        exc.status,
        exc.detail,
        instance,
        title=exc.title,
        headers=headers,
        extra={
            "type": QUOTA_PROBLEM_TYPE,
            "quota": exc.quota,
            "limit": exc.limit,
            "setting": exc.setting,
        },
    )


def quota_middleware(
    registry: Registry,
    limiter: RateLimiter,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Middleware:
    """The middleware described in the module's docstring, for one app: ``registry`` tells
    known keys, ``limiter`` holds the buckets (one per API process)."""

    def caller(request: web.Request) -> tuple[Hashable, str, str]:
        """(bucket key, reason, tenant label) of a request."""
        key_id = presented_key_id(request.headers)
        if key_id is not None:
            key = registry.view.api_key(key_id)
            if key is not None and key.revoked_at is None:
                return ("key", key_id), BY_KEY, key.tenant
        return ("address", client_network(request.remote)), BY_ADDRESS, ""

    def check_rate(request: web.Request) -> None:
        bucket, reason, tenant = caller(request)
        wait = limiter.take(bucket, clock())
        if wait <= 0:
            return
        who = "This API key" if reason == BY_KEY else "This client address (without a valid key)"
        raise QuotaExceeded(
            f"{who} made more than {limiter.burst} requests at once or more than "
            f"{limiter.rate:g} per second; wait {retry_after_seconds(wait)} s and slow down.",
            quota=RATE_QUOTA,
            limit=limiter.rate,
            status=429,
            retry_after=retry_after_seconds(wait),
            tenant=tenant,
            reason=reason,
        )

    @web.middleware
    async def quotas(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path not in EXEMPT_PATHS:
                check_rate(request)
            return await handler(request)
        except QuotaExceeded as exc:
            THROTTLED.labels(exc.reason, exc.tenant or "").inc()
            return quota_problem(exc, request.path[:_MAX_INSTANCE])

    return quotas
