"""The query parameters the docs name for /api/v1 are the ones the API takes (its OpenAPI
document): the API answers an old snake_case name (`device_id`) with 400 "unknown query
parameter; it is called deviceId", so a doc that still gives one sends its reader into that.

Checked: every query string of an /api/v1 URL in README.md and docs/*.md, and every table row or
paragraph that names a route: it may not give a route's camelCase parameter in snake_case
(JSON body properties keep snake_case, so only the names of the route's own query parameters
count). docs/api-conventions.md's table of renamed parameters is left out: it names the old ones
on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cityhub.streams.api.openapi import build_openapi

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RENAMES = ROOT / "docs" / "api-conventions.md"
URL = re.compile(r"/api/v1(?P<path>/[^\s?'\"`)]*)\?(?P<query>[^\s'\"`)]+)")


def _query_params(doc: dict[str, Any]) -> dict[str, set[str]]:
    """Each path of the document with the query parameters of its operations."""
    components = doc.get("components", {}).get("parameters", {})
    params: dict[str, set[str]] = {}
    for path, operations in doc["paths"].items():
        names = params.setdefault(path, set())
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for param in operation.get("parameters", []):
                if "$ref" in param:
                    param = components[param["$ref"].rsplit("/", 1)[-1]]
                if param["in"] == "query":
                    names.add(param["name"])
    return params


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _path_pattern(path: str) -> re.Pattern[str]:
    """The path as the docs write it: a placeholder as ``{...}`` or as a value (``acme``)."""
    parts = re.split(r"\{[^}]+\}", path)
    body = r"(?:\{[^}]+\}|[\w.-]+)".join(re.escape(part) for part in parts)
    return re.compile(body + r"(?![\w/{-])")


def _route(url_path: str, patterns: dict[str, re.Pattern[str]]) -> str | None:
    """The document's path of a URL's path; of several, the one with most literal text."""
    matching = [path for path, rx in patterns.items() if rx.fullmatch(url_path)]
    return max(matching, key=lambda p: len(re.sub(r"\{[^}]+\}", "", p)), default=None)


def _units(text: str) -> Iterator[tuple[int, str]]:
    """Table rows one by one, other text by paragraph; with the first line's number."""
    start, lines = 0, list[str]()
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("|"):
            if lines:
                yield start, "\n".join(lines)
                lines = []
            yield number, line
        elif not line.strip():
            if lines:
                yield start, "\n".join(lines)
                lines = []
        else:
            if not lines:
                start = number
            lines.append(line)
    if lines:
        yield start, "\n".join(lines)


def _wrong(name: str, text: str, params: dict[str, set[str]], *, prose: bool = True) -> list[str]:
    patterns = {path: _path_pattern(path) for path in params}
    wrong: list[str] = []
    for url in URL.finditer(text):
        line = text.count("\n", 0, url.start()) + 1
        path = _route(url["path"], patterns)
        if path is None:
            continue
        for pair in url["query"].split("&"):
            param = pair.split("=", 1)[0]
            if param and param not in params[path]:
                wrong.append(f"{name}:{line}: {path} takes no ?{param}=")
    if prose:
        for line, unit in _units(text):
            for path, names in params.items():
                if not patterns[path].search(unit):
                    continue
                for param in sorted(names):
                    snake = _snake(param)
                    if snake != param and f"`{snake}`" in unit:
                        wrong.append(f"{name}:{line}: {path}'s `{snake}` is `{param}`")
    return wrong


@pytest.fixture(scope="module")
def params() -> dict[str, set[str]]:
    return _query_params(build_openapi(max_body_bytes=1024, max_import_bytes=4096))


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_docs_name_the_query_parameters_the_api_takes(
    page: Path, params: dict[str, set[str]]
) -> None:
    text = page.read_text(encoding="utf-8")
    wrong = _wrong(page.name, text, params, prose=page != RENAMES)
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_wrong_names(params: dict[str, set[str]]) -> None:
    text = (
        "| `GET /api/v1/me/aggregates` | `from`, `to`, `device_id` |\n"
        "| `GET /api/v1/me/aggregates/x` | `device_id` (no such route) |\n"
        "\n"
        "The body of `POST /tenants/{tenant}/devices` has `data_subject`.\n"
        "\n"
        "curl 'http://127.0.0.1:8080/api/v1/tenants/acme/aggregates?device_id=a&from=x'\n"
        "curl 'http://127.0.0.1:8080/api/v1/tenants/acme/devices/_import?ttsTenant=w'\n"
    )
    assert _wrong("t.md", text, params) == [
        "t.md:6: /tenants/{tenant}/aggregates takes no ?device_id=",
        "t.md:1: /me/aggregates's `device_id` is `deviceId`",
    ]
