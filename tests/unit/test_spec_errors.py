"""Validation errors as a person reads them in the CLI and the import reports: an unknown
field's message lists the fields known where it is (nested in lists and in dicts keyed by a
quantity), and names the whole by what it is (a row, a command's option)."""

from __future__ import annotations

from typing import Any

import click
import pytest
from pydantic import BaseModel, ValidationError

from cityhub.schemas.quality import QualitySpec
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec
from cityhub.streams.registry.cli.device_types import QualityParam
from cityhub.streams.registry.spec_errors import field_errors


def _errors(model: type[BaseModel], doc: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(doc)
    return [(e.field, e.message) for e in field_errors(caught.value, model=model)]


def test_an_unknown_field_lists_the_fields_known_where_it_is() -> None:
    device = _errors(DeviceSpec, {"id": "a", "name": "b", "type": "t", "nope": 1})
    assert device[0][0] == "nope"
    assert device[0][1].startswith("unknown field; known fields: id, name, type, dev_eui")
    fields = _errors(DeviceTypeSpec, {"id": "t", "name": "T", "fields": [{"fild": "x"}]})
    known = "unknown field; known fields: field, quantity, unit, scale, offset"
    assert ("fields.0.fild", known) in fields
    quality = _errors(QualitySpec, {"limits": {"water_level": {"minn": 1}}})
    assert quality == [
        (
            "limits.water_level.minn",
            "unknown field; known fields: min, max, max_rate_per_second, flat_line_seconds",
        )
    ]


def test_the_quality_option_names_itself_not_an_import_row() -> None:
    # A review got "row: invalid JSON" and the device import's columns for `types --quality`.
    for text, expected in (
        ('{"limits": {"pm2_5": {"mx": 1}}}', "known fields: min, max"),
        ("{not json", "--quality: invalid JSON"),
    ):
        with pytest.raises(click.BadParameter) as refused:
            QualityParam().convert(text, None, None)
        assert expected in refused.value.format_message()
        assert "dev_eui" not in refused.value.format_message()
        assert "row" not in refused.value.format_message()
