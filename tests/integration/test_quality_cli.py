"""A device type's quality through the registry CLI on the real local Kafka: set at creation,
shown, changed, cleared; what it cannot mean is refused with the field named."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from cityhub.streams.registry import cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

Invoke = Callable[..., Result]


@pytest.fixture
def cityhub() -> Invoke:
    main = click.Group("cityhub")
    cli.mount(main)
    env = {"CITYHUB_KAFKA__TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}"}
    runner = CliRunner()

    def invoke(*args: str, expect: int = 0) -> Result:
        result = runner.invoke(main, list(args), env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == expect, result.output
        assert "Traceback" not in result.output
        return result

    return invoke


def quality_of(cityhub: Invoke) -> Any:
    return json.loads(cityhub("types", "get", "--tenant", "city", "air", "--json").stdout)[
        "quality"
    ]


def test_a_types_quality_from_the_cli(cityhub: Invoke) -> None:
    cityhub("tenants", "create", "city", "--name", "City")
    limits = {"limits": {"pm2_5": {"max": 500, "flat_line_seconds": None}}}
    cityhub(
        "types",
        "create",
        "--tenant",
        "city",
        "air",
        "--name",
        "Air",
        "--quality",
        json.dumps(limits),
    )
    assert quality_of(cityhub) == {
        "limits": {"pm2_5": {"max": 500.0, "flat_line_seconds": None}},
        "fault_fields": None,
    }
    shown = cityhub("types", "get", "--tenant", "city", "air").stdout
    assert "pm2_5" in shown
    # an update of another option keeps the quality as it was (left-out limits stay left out)
    cityhub("types", "update", "--tenant", "city", "air", "--name", "Air quality")
    assert quality_of(cityhub)["limits"] == {"pm2_5": {"max": 500.0, "flat_line_seconds": None}}
    cityhub(
        "types", "update", "--tenant", "city", "air", "--quality", '{"fault_fields": ["status"]}'
    )
    assert quality_of(cityhub) == {"limits": {}, "fault_fields": ["status"]}
    cityhub("types", "update", "--tenant", "city", "air", "--no-quality")
    assert quality_of(cityhub) is None
    refused = cityhub(
        "types",
        "update",
        "--tenant",
        "city",
        "air",
        "--quality",
        '{"limits": {"pm2_5": {"min": 5, "max": 1}}}',
        expect=2,
    )
    assert "limits.pm2_5" in refused.output
    refused = cityhub("types", "update", "--tenant", "city", "air", "--quality", "{", expect=2)
    assert "--quality" in refused.output
