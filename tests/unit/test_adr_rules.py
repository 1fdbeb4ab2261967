"""The NL API Design Rules' pure parts: the query check that lists every fault, the casing rule
for query keys, the headers every response gets, the CORS decisions, and the route table held
to them (no broker, no server)."""

from __future__ import annotations

import re

import pytest

from cityhub.schemas.settings import HttpSettings
from cityhub.streams.api.adr_headers import (
    CORS_ALLOW_HEADERS,
    CorsPolicy,
    charset_content_type,
    is_trailing_slash,
    rule_headers,
    valid_origin,
)
from cityhub.streams.api.query_rules import (
    SUPPORTED_KEYWORDS,
    is_lower_camel_case,
    lower_camel_case,
    query_errors,
    unsupported_keywords,
    value_error,
)
from cityhub.streams.api.route_model import API_VERSION, PREFIX, Param
from cityhub.streams.api.routes import ROUTES

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")

PARAMS = (
    Param("deviceId", "query", {"type": "string", "pattern": "^[a-z0-9-]{1,8}$"}, "A device."),
    Param("from", "query", {"type": "string", "format": "date-time"}, "From.", required=True),
    Param("windowSize", "query", {"type": "integer", "minimum": 1, "maximum": 86400}, "Size."),
    Param("active", "query", {"type": "boolean"}, "Active."),
    Param("legalBasis", "query", {"type": "string", "enum": ["Consent", "PublicTask"]}, "Basis."),
    Param("name", "query", {"type": "string", "maxLength": 5}, "A name."),
    Param("tenant", "path", {"type": "string"}, "The tenant.", required=True),
)


def fields(errors: list[object]) -> list[str]:
    return [e.field for e in errors]  # type: ignore[attr-defined]


def test_a_valid_query_has_no_errors() -> None:
    query = [
        ("deviceId", "a-1"),
        ("from", "2026-11-29T10:00:00+01:00"),
        ("windowSize", "60"),
        ("active", "false"),
        ("legalBasis", "Consent"),
        ("name", "abc"),
    ]
    assert query_errors(PARAMS, query) == []
    # An unencoded '+' of an offset arrives as a space, and is read as the handlers read it.
    assert query_errors(PARAMS, [("from", "2026-11-29T10:00:00 01:00")]) == []
    # An empty value is an absent one.
    assert query_errors(PARAMS, [("from", "2026-11-29T10:00:00Z"), ("deviceId", "")]) == []


def test_every_fault_is_listed_at_once_and_no_value_is_repeated() -> None:
    secret = "chk_secretvalue_1234567890"
    query = [
        ("deviceId", "NOT VALID"),
        ("windowSize", "0"),
        ("active", "maybe"),
        ("legalBasis", "Whim"),
        ("name", "too long"),
        ("device_id", "x"),
        ("apikey", secret),
        ("windowSize", "60"),
    ]
    errors = query_errors(PARAMS, query)
    assert fields(errors) == [
        "device_id",
        "apikey",
        "windowSize",
        "deviceId",
        "from",
        "windowSize",
        "active",
        "legalBasis",
        "name",
    ]
    message = {e.field: e.message for e in reversed(errors)}  # a field's first fault
    assert message["device_id"] == (
        "unknown query parameter; it is called deviceId (query keys are lowerCamelCase)"
    )
    assert message["windowSize"] == "given more than once; give it once"
    assert message["from"].startswith("required; an RFC 3339 time")
    for error in errors:
        assert secret not in error.message
        assert "NOT VALID" not in error.message
        assert "Whim" not in error.message


def test_an_unknown_key_names_the_route_s_keys() -> None:
    (error,) = query_errors(PARAMS[:2], [("from", "2026-11-29T10:00:00Z"), ("limit", "5")])
    assert error.field == "limit"
    assert error.message == "unknown query parameter; this route takes deviceId, from"
    (error,) = query_errors((), [("x", "1")])
    assert error.message == "unknown query parameter; this route takes none"


@pytest.mark.parametrize(
    ("schema", "raw", "wrong"),
    [
        ({"type": "integer", "minimum": 1}, "0", "an integer of at least 1"),
        ({"type": "integer", "maximum": 9}, "10", "an integer of at most 9"),
        ({"type": "integer"}, "١٢", "an integer"),  # Arabic-Indic digits
        ({"type": "integer"}, "6_0", "an integer"),
        ({"type": "integer"}, " 60", "an integer"),
        ({"type": "integer"}, "9" * 19, "an integer"),
        ({"type": "boolean"}, "yes", "true or false"),
        ({"type": "string", "format": "date-time"}, "2026-11-29T10:00:00", "not a time"),
        ({"type": "string", "format": "date-time"}, "2100-01-01T00:00:00Z", "not a time"),
        ({"type": "string", "enum": ["a", "b"]}, "c", "one of a, b"),
        ({"type": "string", "pattern": "^[a-z]+$"}, "A", "pattern"),
        ({"type": "string", "maxLength": 3}, "abcd", "at most 3 characters"),
    ],
)
def test_each_keyword_is_checked(schema: dict[str, object], raw: str, wrong: str) -> None:
    problem = value_error(schema, raw)
    assert problem is not None
    assert wrong in problem


@pytest.mark.parametrize(
    ("schema", "raw"),
    [
        ({"type": "integer", "minimum": 1, "maximum": 9}, "9"),
        ({"type": "integer"}, "-3"),
        ({"type": "boolean"}, "TRUE"),
        ({"type": "boolean"}, "0"),
        ({"type": "string", "format": "date-time"}, "1970-01-01T00:00:00Z"),
        ({"type": "string"}, "anything at all"),
    ],
)
def test_good_values_pass(schema: dict[str, object], raw: str) -> None:
    assert value_error(schema, raw) is None


def test_lower_camel_case() -> None:
    for good in ("from", "deviceId", "windowSize", "fromTime", "$top", "limit2"):
        assert is_lower_camel_case(good), good
    for bad in ("device_id", "window-size", "WindowSize", "2nd", "deviceID_", "a b"):
        assert not is_lower_camel_case(bad), bad
    assert lower_camel_case("window_size") == "windowSize"
    assert lower_camel_case("processing_activity") == "processingActivity"
    assert lower_camel_case("tts-tenant") == "ttsTenant"
    assert lower_camel_case("from") == "from"


def test_every_documented_query_key_is_lower_camel_case_and_checkable() -> None:
    for route in ROUTES:
        for param in route.params:
            assert unsupported_keywords(param.schema) == set(), (route.operation_id, param.name)
            if param.location == "query":
                assert is_lower_camel_case(param.name), (route.operation_id, param.name)
    assert "format" in SUPPORTED_KEYWORDS


def test_no_route_answers_422_and_paths_are_kebab_case() -> None:
    segment = re.compile(r"^([a-z0-9]+(-[a-z0-9]+)*|\{[^}]+\}|_[a-z]+)$")
    for route in ROUTES:
        assert 422 not in route.problems, route.operation_id
        assert route.status < 400
        assert not route.path.endswith("/")
        for part in route.path.strip("/").split("/"):
            assert segment.match(part), (route.operation_id, part)


def test_the_service_roots_are_the_services_own() -> None:
    from cityhub.streams.api.adr import SERVICE_ROOTS
    from cityhub.streams.ngsi_ld.api import BASE as NGSI_LD_BASE
    from cityhub.streams.sensorthings.routes import ROOT as STA_ROOT

    assert {root + "/" for root in (PREFIX, STA_ROOT, NGSI_LD_BASE)} == SERVICE_ROOTS


def test_the_version_is_semver_with_the_prefix_s_major() -> None:
    assert SEMVER.match(API_VERSION)
    assert PREFIX.endswith("/v" + API_VERSION.split(".")[0])


def test_rule_headers_on_a_json_response() -> None:
    headers = rule_headers({"Content-Type": "application/json"}, api_version="1.2.3")
    assert headers == {
        "API-Version": "1.2.3",
        "Cache-Control": "no-store",
        "Strict-Transport-Security": "max-age=31536000",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
        "Referrer-Policy": "no-referrer",
    }


def test_a_handler_s_policy_is_kept_and_made_to_forbid_frames() -> None:
    page = {
        "Content-Type": "text/html",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
        "Cache-Control": "max-age=60",
    }
    headers = rule_headers(page, api_version="1.0.0")
    assert "Content-Security-Policy" not in headers  # kept as the handler set it
    assert headers["Cache-Control"] == "no-store"  # replaced: nothing of the API is cached
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    loose = rule_headers({"Content-Security-Policy": "default-src 'self';"}, api_version="1.0.0")
    assert loose["Content-Security-Policy"] == "default-src 'self'; frame-ancestors 'none'"


def test_charset_only_where_it_applies() -> None:
    assert charset_content_type("text/event-stream") == "text/event-stream; charset=utf-8"
    assert charset_content_type("text/csv; charset=iso-8859-1") is None
    assert charset_content_type("application/json") is None  # JSON defines no charset
    assert charset_content_type("application/problem+json") is None
    assert charset_content_type(None) is None


def test_trailing_slash() -> None:
    assert is_trailing_slash("/api/v1/tenants/", served_as_is=False)
    assert not is_trailing_slash("/api/v1/tenants", served_as_is=False)
    assert not is_trailing_slash("/", served_as_is=False)
    assert not is_trailing_slash("/sta/v1.1/", served_as_is=True)


def test_cors_allow_list() -> None:
    policy = CorsPolicy.of(["https://dash.city.example"], open_paths=["/api/v1/openapi.json"])
    allowed = policy.response_headers("https://dash.city.example", "/api/v1/keys")
    assert allowed["Access-Control-Allow-Origin"] == "https://dash.city.example"
    assert allowed["Vary"] == "Origin"
    assert "API-Version" in allowed["Access-Control-Expose-Headers"]
    # Another origin, or none: no CORS header, but the answer still varies by Origin.
    assert policy.response_headers("https://evil.example", "/api/v1/keys") == {"Vary": "Origin"}
    assert policy.response_headers(None, "/api/v1/keys") == {"Vary": "Origin"}
    # The OpenAPI document: every origin.
    open_doc = policy.response_headers("https://evil.example", "/api/v1/openapi.json")
    assert open_doc["Access-Control-Allow-Origin"] == "*"
    assert "Vary" not in open_doc
    preflight = policy.preflight_headers(
        "https://dash.city.example", "/api/v1/keys", {"POST", "GET"}
    )
    assert preflight is not None
    assert preflight["Access-Control-Allow-Methods"] == "GET, POST"
    assert preflight["Access-Control-Allow-Headers"] == CORS_ALLOW_HEADERS
    assert int(preflight["Access-Control-Max-Age"]) > 0
    assert policy.preflight_headers("https://evil.example", "/api/v1/keys", {"GET"}) is None
    # No allow-list: nothing but the open paths, and no Vary.
    assert CorsPolicy.of([]).response_headers("https://dash.city.example", "/x") == {}


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "https://dash.city.example/",
        "https://dash.city.example/app",
        "HTTPS://Dash.example",
        "dash.city.example",
        "ftp://dash.city.example",
        "null",
    ],
)
def test_an_allow_list_takes_origins_only(origin: str) -> None:
    assert not valid_origin(origin)
    with pytest.raises(ValueError, match="not a web origin"):
        CorsPolicy.of([origin])
    with pytest.raises(ValueError):
        HttpSettings(cors_allowed_origins=(origin,))


def test_origins_with_ports_and_addresses_are_taken() -> None:
    origins = ("http://127.0.0.1:5173", "https://[::1]:8443", "https://dash.city.example")
    assert all(valid_origin(o) for o in origins)
    assert HttpSettings(cors_allowed_origins=origins).cors_allowed_origins == origins
