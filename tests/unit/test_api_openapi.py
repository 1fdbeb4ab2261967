"""The OpenAPI document: served without a key, one operation per served route, every reference
resolvable, and real responses valid against the schemas it documents."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry as RefRegistry
from referencing import Resource
from referencing.jsonschema import DRAFT202012

from cityhub.streams.api.openapi import OPENAPI_PATH, build_openapi
from cityhub.streams.api.routes import ROUTES

from .test_api_support import APP_KEY, Api, device, running_api

A = "/api/v1/tenants/acme"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api() as running:
        yield running


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _validator(doc: dict[str, Any], pointer: str) -> Draft202012Validator:
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry: RefRegistry[Any] = RefRegistry().with_resource("urn:openapi", resource)
    return Draft202012Validator({"$ref": f"urn:openapi#{pointer}"}, registry=registry)


def test_every_route_is_documented_with_problems_and_security() -> None:
    doc = build_openapi(max_body_bytes=1024, max_import_bytes=4096)
    assert doc["openapi"].startswith("3.1")
    for route in ROUTES:
        operation = doc["paths"][route.path][route.method.lower()]
        responses = operation["responses"]
        assert str(route.status) in responses
        assert "500" in responses
        # A public route (the register of processing activities) asks for no key.
        if route.public:
            assert operation["security"] == []
            assert "401" not in responses
        elif route.resident:
            # A resident's route takes a resident's token, never an API key.
            assert "401" in responses
            assert operation["security"] == [{"resident": []}]
        else:
            assert "401" in responses
            assert "security" not in operation
        for status in route.problems:
            content = responses[str(status)]["content"]
            assert "application/problem+json" in content
        assert operation["operationId"] == route.operation_id
        for name in (p.strip("{}") for p in route.path.split("/") if p.startswith("{")):
            assert any(p["name"] == name and p["in"] == "path" for p in operation["parameters"])
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_every_reference_resolves() -> None:
    doc = build_openapi(max_body_bytes=1024, max_import_bytes=4096)
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.removeprefix("#/components/schemas/") in schemas


def test_the_document_is_valid_openapi_3_1() -> None:
    import schemathesis  # a dev dependency: its absence must fail, not skip

    doc = build_openapi(max_body_bytes=1024, max_import_bytes=4096)
    schema = schemathesis.openapi.from_dict(doc)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == len(ROUTES) + 1


async def test_served_without_a_key_and_responses_match_it(api: Api) -> None:
    status, doc, _ = await api.call("GET", OPENAPI_PATH, None)
    assert status == 200
    assert doc["info"]["title"]
    body = device("x-1", dev_eui="70B3D57ED0062B09", app_key=APP_KEY, tags=["a"])
    status, created, _ = await api.call("POST", f"{A}/devices", json=body)
    assert status == 201
    operation = doc["paths"]["/tenants/{tenant}/devices"]["post"]
    pointer = operation["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    _validator(doc, pointer.removeprefix("#")).validate(created)
    status, problem, _ = await api.call("GET", f"{A}/devices/none")
    pointer = operation["responses"]["404"]["content"]["application/problem+json"]["schema"]
    _validator(doc, pointer["$ref"].removeprefix("#")).validate(problem)
    status, listing, _ = await api.call("GET", f"{A}/devices")
    schema = doc["paths"]["/tenants/{tenant}/devices"]["get"]["responses"]["200"]
    ref = schema["content"]["application/json"]["schema"]["$ref"]
    _validator(doc, ref.removeprefix("#")).validate(listing)


CACHEABLE = {
    "/open/datasets",
    "/open/datasets/{dataset}",
    "/open/datasets/{dataset}/windows",
    "/open/datasets/{dataset}/files",
    "/open/datasets/{dataset}/files/{file}",
    "/open/catalog",
}
"""The routes that answer with an ETag and honour If-None-Match (open_data_answers.cached_answer
and the catalogue); tests/unit/test_api_conditional_requests.py calls each for real."""


def test_conditional_reads_are_documented_with_their_304() -> None:
    doc = build_openapi(max_body_bytes=1024, max_import_bytes=4096)
    assert {route.path for route in ROUTES if route.cacheable} == CACHEABLE
    for path, item in doc["paths"].items():
        for operation in item.values():
            responses = operation["responses"]
            params = {(p["name"], p["in"]) for p in operation.get("parameters", [])}
            if path not in CACHEABLE:
                assert "304" not in responses, path
                assert ("If-None-Match", "header") not in params, path
                continue
            assert ("If-None-Match", "header") in params, path
            assert {"ETag", "Cache-Control"} <= set(responses["200"]["headers"]), path
            not_modified = responses["304"]
            assert "content" not in not_modified  # no body
            assert set(not_modified["headers"]) >= {"API-Version", "ETag", "Cache-Control"}
            # Open data's 304 keeps its Link (the licence); the catalogue has none.
            assert ("Link" in not_modified["headers"]) == path.startswith("/open/datasets")


def test_every_media_type_a_route_serves_is_documented() -> None:
    doc = build_openapi(max_body_bytes=1024, max_import_bytes=4096)
    file = doc["paths"]["/open/datasets/{dataset}/files/{file}"]["get"]["responses"]["200"]
    assert set(file["content"]) == {"text/csv", "application/vnd.apache.parquet"}
    assert file["content"]["text/csv"]["schema"] == {"type": "string"}
    assert file["content"]["application/vnd.apache.parquet"] == {}  # bytes: no schema
    assert {"Link", "Content-Disposition"} <= set(file["headers"])
    catalogue = doc["paths"]["/open/catalog"]["get"]["responses"]["200"]["content"]
    assert set(catalogue) == {"application/ld+json", "text/turtle", "application/json"}
    assert catalogue["application/ld+json"]["schema"] == {"type": "object"}
    assert catalogue["text/turtle"]["schema"] == {"type": "string"}
    stream = doc["paths"]["/open/stream"]["get"]["responses"]["200"]
    assert set(stream["content"]) == {"text/event-stream"}
    assert "Link" in stream["headers"]
