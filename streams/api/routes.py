"""The route table: every operation of the API once, read by the app (to route) and by the
OpenAPI generator (to document). A route added here is served and documented; nothing else has
to change. The subscription routes' models come from the sinks registry when the document is
built (a model may be given as a function that returns it), so every delivery kind registered
by then is documented.
"""

from __future__ import annotations

from cityhub.connectors.sinks import public_models, subscription_models
from cityhub.schemas.aggregate import MAX_WINDOW_SECONDS
from cityhub.schemas.registry import (
    DataSubjectLink,
    DeviceSpec,
    DeviceTypeSpec,
    TenantSpec,
)
from cityhub.schemas.subscription import SUBSCRIPTION_ID_PATTERN, ReplaySpec
from cityhub.streams.api import handlers as h
from cityhub.streams.api.aggregates import AggregateList, list_aggregates
from cityhub.streams.api.catalogue import CATALOGUE_ROUTES
from cityhub.streams.api.consents import CONSENT_ROUTES
from cityhub.streams.api.data_requests import DATA_REQUEST_ROUTES
from cityhub.streams.api.dead_letters import DEAD_LETTER_ROUTES
from cityhub.streams.api.device_health import DEVICE_HEALTH_ROUTES
from cityhub.streams.api.erasure import ERASURE_ROUTES
from cityhub.streams.api.live import stream_subscription
from cityhub.streams.api.models import (
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    ApiKeySpec,
    DeviceList,
    DeviceOut,
    DeviceTypeList,
    DeviceTypeOut,
    ImportReportOut,
    SubscriptionOutModels,
    TenantList,
    TenantOut,
    subscription_out_models,
)
from cityhub.streams.api.open_data import OPEN_DATA_ROUTES
from cityhub.streams.api.processing import PROCESSING_ROUTES
from cityhub.streams.api.processing_log import PROCESSING_LOG_ROUTES
from cityhub.streams.api.resident import ME_ROUTES
from cityhub.streams.api.resident_tokens import TOKEN_ROUTES
from cityhub.streams.api.route_model import (
    ID_SCHEMA,
    PREFIX,
    TENANT_PARAM,
    Param,
    Route,
)
from cityhub.streams.api.sharing import SHARING_ROUTES
from cityhub.streams.api.subscription_status import SUBSCRIPTION_STATUS_ROUTES
from cityhub.streams.registry.paging import MAX_PAGE_SIZE

__all__ = ["PREFIX", "ROUTES", "Param", "Route"]


def _subscription_out() -> SubscriptionOutModels:
    return subscription_out_models(tuple(public_models().values()))


TENANT = TENANT_PARAM
TYPE_ID = Param("id", "path", ID_SCHEMA, "The device type's id.", required=True)
DEVICE_ID = Param("id", "path", ID_SCHEMA, "The device's id.", required=True)
SUBSCRIPTION_ID = Param(
    "id",
    "path",
    {"type": "string", "pattern": SUBSCRIPTION_ID_PATTERN},
    "The subscription's id.",
    required=True,
)
KEY_ID = Param("id", "path", {"type": "string"}, "The API key's id.", required=True)
LIMIT = Param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "default": 100},
    f"Items per page; values above {MAX_PAGE_SIZE} are served as {MAX_PAGE_SIZE}.",
)
CURSOR = Param(
    "cursor",
    "query",
    {"type": "string"},
    "The next_cursor of the previous page (also in its Link header); absent for the first.",
)

FROM_TIME = Param(
    "fromTime",
    "query",
    {"type": "string", "format": "date-time"},
    "Start at the first item routed at or after this RFC 3339 time (ignored with Last-Event-ID).",
)

_READ = (403, 404)
_WRITE = (403, 404, 413, 415)

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/tenants",
        "listTenants",
        "List tenants (admin)",
        "tenants",
        h.list_tenants,
        response=TenantList,
        problems=(403,),
    ),
    Route(
        "POST",
        "/tenants",
        "createTenant",
        "Create a tenant (admin)",
        "tenants",
        h.create_tenant,
        status=201,
        response=TenantOut,
        body=TenantSpec,
        problems=(403, 409, 413, 415),
        headers=("Location",),
    ),
    Route(
        "GET",
        "/tenants/{tenant}/device-types",
        "listDeviceTypes",
        "List device types",
        "device-types",
        h.list_types,
        response=DeviceTypeList,
        params=(TENANT, LIMIT, CURSOR),
        problems=_READ,
        headers=("Link",),
    ),
    Route(
        "POST",
        "/tenants/{tenant}/device-types",
        "createDeviceType",
        "Create a device type",
        "device-types",
        h.create_type,
        status=201,
        response=DeviceTypeOut,
        body=DeviceTypeSpec,
        params=(TENANT,),
        problems=(*_WRITE, 409),
        headers=("Location",),
    ),
    Route(
        "GET",
        "/tenants/{tenant}/device-types/{id}",
        "getDeviceType",
        "Read a device type",
        "device-types",
        h.get_type,
        response=DeviceTypeOut,
        params=(TENANT, TYPE_ID),
        problems=_READ,
    ),
    Route(
        "PUT",
        "/tenants/{tenant}/device-types/{id}",
        "replaceDeviceType",
        "Replace a device type (the whole spec; its id must be the path's)",
        "device-types",
        h.replace_type,
        response=DeviceTypeOut,
        body=DeviceTypeSpec,
        params=(TENANT, TYPE_ID),
        problems=(*_WRITE, 409),
    ),
    Route(
        "DELETE",
        "/tenants/{tenant}/device-types/{id}",
        "deleteDeviceType",
        "Delete a device type no device uses",
        "device-types",
        h.delete_type,
        status=204,
        params=(TENANT, TYPE_ID),
        problems=(*_READ, 409),
    ),
    Route(
        "GET",
        "/tenants/{tenant}/devices",
        "listDevices",
        "List devices, filtered and paged",
        "devices",
        h.list_devices,
        response=DeviceList,
        params=(
            TENANT,
            Param("type", "query", ID_SCHEMA, "Only devices of this device type."),
            Param("area", "query", {"type": "string"}, "Only devices in this area."),
            Param("tag", "query", {"type": "string"}, "Only devices with this tag."),
            Param("active", "query", {"type": "boolean"}, "Only active (or inactive) devices."),
            LIMIT,
            CURSOR,
        ),
        problems=_READ,
        headers=("Link",),
    ),
    Route(
        "POST",
        "/tenants/{tenant}/devices",
        "createDevice",
        "Register a device",
        "devices",
        h.create_device,
        status=201,
        response=DeviceOut,
        body=DeviceSpec,
        params=(TENANT,),
        problems=(*_WRITE, 409),
        headers=("Location",),
    ),
    Route(
        "POST",
        "/tenants/{tenant}/devices/_import",
        "importDevices",
        "Import devices from a CSV (The Things Stack's columns) or a JSON array; report each row",
        "devices",
        h.import_devices,
        response=ImportReportOut,
        body_types=("text/csv", "application/json"),
        params=(
            TENANT,
            Param(
                "type",
                "query",
                ID_SCHEMA,
                "Device type of rows that name none (The Things Stack's exports have no type).",
            ),
            Param(
                "ttsTenant",
                "query",
                {"type": "string", "maxLength": 36},
                "The Things Stack tenant (the @tenant of its MQTT topics) that its JSON end "
                "devices are bound to with their application; none: a single-tenant TTS.",
            ),
        ),
        problems=_WRITE,
    ),
    Route(
        "GET",
        "/tenants/{tenant}/devices/{id}",
        "getDevice",
        "Read a device",
        "devices",
        h.get_device,
        response=DeviceOut,
        params=(TENANT, DEVICE_ID),
        problems=_READ,
    ),
    Route(
        "PUT",
        "/tenants/{tenant}/devices/{id}",
        "replaceDevice",
        "Replace a device (the whole spec; an omitted app_key keeps the stored one)",
        "devices",
        h.replace_device,
        response=DeviceOut,
        body=DeviceSpec,
        params=(TENANT, DEVICE_ID),
        problems=(*_WRITE, 409),
    ),
    Route(
        "PUT",
        "/tenants/{tenant}/devices/{id}/data-subject",
        "linkDataSubject",
        "Link a device of a personal type to a data subject (a pseudonymous id)",
        "devices",
        h.link_subject,
        response=DeviceOut,
        body=DataSubjectLink,
        params=(TENANT, DEVICE_ID),
        problems=_WRITE,
    ),
    Route(
        "DELETE",
        "/tenants/{tenant}/devices/{id}/data-subject",
        "unlinkDataSubject",
        "Unlink a device's data subject",
        "devices",
        h.unlink_subject,
        status=204,
        params=(TENANT, DEVICE_ID),
        problems=_READ,
    ),
    Route(
        "DELETE",
        "/tenants/{tenant}/devices/{id}",
        "deleteDevice",
        "Delete a device",
        "devices",
        h.delete_device,
        status=204,
        params=(TENANT, DEVICE_ID),
        problems=_READ,
    ),
    Route(
        "GET",
        "/keys",
        "listKeys",
        "List API keys (never their secrets)",
        "keys",
        h.list_keys,
        response=ApiKeyList,
        params=(Param("tenant", "query", ID_SCHEMA, "Only the keys of this tenant."),),
        problems=(403,),
    ),
    Route(
        "POST",
        "/keys",
        "createKey",
        "Create an API key; its secret is in this response only",
        "keys",
        h.create_key,
        status=201,
        response=ApiKeyCreated,
        body=ApiKeySpec,
        problems=(403, 404, 409, 413, 415),
        headers=("Location",),
    ),
    Route(
        "POST",
        "/keys/{id}/revoke",
        "revokeKey",
        "Revoke an API key, at once and for good",
        "keys",
        h.revoke_key,
        response=ApiKeyOut,
        params=(KEY_ID,),
        problems=(403, 404),
    ),
    Route(
        "GET",
        "/tenants/{tenant}/subscriptions",
        "listSubscriptions",
        "List the tenant's subscriptions (never a webhook secret)",
        "subscriptions",
        h.list_subscriptions,
        response=lambda: _subscription_out().list,
        params=(TENANT,),
        problems=(*_READ, 503),
    ),
    Route(
        "POST",
        "/tenants/{tenant}/subscriptions",
        "createSubscription",
        "Create a subscription; a webhook secret cityhub generates is in this response only",
        "subscriptions",
        h.create_subscription,
        status=201,
        response=lambda: _subscription_out().created,
        body=lambda: subscription_models().spec,
        params=(TENANT,),
        problems=(*_WRITE, 409, 503),
        headers=("Location",),
    ),
    Route(
        "GET",
        "/tenants/{tenant}/subscriptions/{id}",
        "getSubscription",
        "Read a subscription (never its webhook secret)",
        "subscriptions",
        h.get_subscription,
        response=lambda: _subscription_out().out,
        params=(TENANT, SUBSCRIPTION_ID),
        problems=(*_READ, 503),
    ),
    Route(
        "DELETE",
        "/tenants/{tenant}/subscriptions/{id}",
        "deleteSubscription",
        "Delete a subscription",
        "subscriptions",
        h.delete_subscription,
        status=204,
        params=(TENANT, SUBSCRIPTION_ID),
        problems=(*_READ, 503),
    ),
    Route(
        "POST",
        "/tenants/{tenant}/subscriptions/{id}/pause",
        "pauseSubscription",
        "Pause a subscription: nothing is delivered, its Kafka position is kept",
        "subscriptions",
        h.pause_subscription,
        response=lambda: _subscription_out().out,
        params=(TENANT, SUBSCRIPTION_ID),
        problems=(*_READ, 503),
    ),
    Route(
        "POST",
        "/tenants/{tenant}/subscriptions/{id}/resume",
        "resumeSubscription",
        "Resume a paused (or failing) subscription",
        "subscriptions",
        h.resume_subscription,
        response=lambda: _subscription_out().out,
        params=(TENANT, SUBSCRIPTION_ID),
        problems=(*_READ, 503),
    ),
    Route(
        "POST",
        "/tenants/{tenant}/subscriptions/{id}/replay",
        "replaySubscription",
        "Deliver again from a time or an offset of the subscription's topic (webhook and MQTT "
        "deliveries; Kafka subscribers seek their own consumer, live streams use Last-Event-ID)",
        "subscriptions",
        h.replay_subscription,
        status=202,
        response=lambda: _subscription_out().out,
        body=ReplaySpec,
        params=(TENANT, SUBSCRIPTION_ID),
        problems=(*_WRITE, 409, 503),
    ),
    Route(
        "GET",
        "/tenants/{tenant}/subscriptions/{id}/events",
        "streamSubscription",
        "A live stream of an sse subscription's items as Server-Sent Events (text/event-stream); "
        "resume with Last-Event-ID, or start at ?fromTime=. The stream ends with a comment "
        "line ': closed: <why>' once the key is revoked or the subscription deleted or paused",
        "subscriptions",
        stream_subscription,
        params=(TENANT, SUBSCRIPTION_ID, FROM_TIME),
        problems=(*_READ, 409, 429, 503),
        media_type="text/event-stream",
    ),
    Route(
        "GET",
        "/tenants/{tenant}/aggregates",
        "listAggregates",
        "Window aggregates of one device or area that overlap a time range (current revisions)",
        "aggregates",
        list_aggregates,
        response=AggregateList,
        params=(
            TENANT,
            Param("deviceId", "query", ID_SCHEMA, "The device (exactly one of deviceId, area)."),
            Param("area", "query", {"type": "string"}, "An area of the tenant (or deviceId)."),
            Param(
                "areaTenant",
                "query",
                ID_SCHEMA,
                "The tenant whose area `area` is, when not the path's: another tenant's area "
                "is read under an active agreement that shares its area aggregates.",
            ),
            Param(
                "from",
                "query",
                {"type": "string", "format": "date-time"},
                "Windows ending after this time (RFC 3339).",
                required=True,
            ),
            Param(
                "to",
                "query",
                {"type": "string", "format": "date-time"},
                "Windows starting before this time (RFC 3339); to - from is at most "
                "CITYHUB_AGGREGATION__QUERY_MAX_RANGE_SECONDS (7 days by default).",
                required=True,
            ),
            Param("quantity", "query", {"type": "string"}, "Only this quantity."),
            Param(
                "windowSize",
                "query",
                {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW_SECONDS},
                "Only windows of this size, in seconds (60, 900, 3600 by default).",
            ),
            Param(
                "processingActivity",
                "query",
                ID_SCHEMA,
                "The processing activity (its slug in the tenant's register) a personal "
                "window is read for; without it, or when it does not admit the window, personal "
                "windows are withheld (and counted).",
            ),
        ),
        problems=(*_READ, 503),
    ),
    *PROCESSING_ROUTES,
    *PROCESSING_LOG_ROUTES,
    *ERASURE_ROUTES,
    *CONSENT_ROUTES,
    *TOKEN_ROUTES,
    *ME_ROUTES,
    *CATALOGUE_ROUTES,
    *DATA_REQUEST_ROUTES,
    *SHARING_ROUTES,
    *OPEN_DATA_ROUTES,
    *DEVICE_HEALTH_ROUTES,
    *SUBSCRIPTION_STATUS_ROUTES,
    *DEAD_LETTER_ROUTES,
)
"""Every operation of the API; all need a key but the register's public reads.
``/api/v1/openapi.json`` is served beside them, without a key."""
