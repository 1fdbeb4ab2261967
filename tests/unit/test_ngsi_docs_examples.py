"""docs/ngsi-ld.md's examples hold on the simulated fleet they are written for: the entity they
read exists and measures what they ask of it, and the device type they PUT keeps what the fleet
registered (a PUT replaces the whole spec: a field left out is cleared).

The fleet is that of `make run` (`cityhub run --simulate`'s defaults) and of `cityhub simulate`
(its defaults), both with the default seed; the example must hold for both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import pytest

from cityhub.connectors.ngsi_ld.models import EntityMapping
from cityhub.schemas.registry import DeviceTypeSpec, SmartDataModel
from cityhub.streams.cli import run, simulate
from cityhub.streams.devtools.simulator.fleet import build_fleet
from cityhub.streams.devtools.simulator.registration import TENANT, expected_interval

PAGE = Path(__file__).resolve().parents[2] / "docs" / "ngsi-ld.md"
ENTITY = re.compile(r"urn:ngsi-ld:(?P<type>\w+):(?P<tenant>[\w-]+):(?P<device>[a-z0-9._-]+)")


def _defaults(command: click.Command) -> dict[str, Any]:
    return {p.name: p.default for p in command.params if p.name is not None}


RUN = _defaults(run)
SIMULATE = _defaults(simulate)
FLEETS = {
    "make run": build_fleet(RUN["devices"]),
    "cityhub simulate": build_fleet(SIMULATE["devices"], seed=SIMULATE["seed"]),
}


def _examples() -> str:
    """The page's "Examples" part (up to the next part of level 2)."""
    return PAGE.read_text(encoding="utf-8").split("### Examples", 1)[1].split("\n## ", 1)[0]


def _commands(section: str) -> list[str]:
    """The shell commands of the section's code blocks: continuation lines joined, and a line
    break inside single quotes (a JSON body) kept in its command; comments left out."""
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    lines = "\n".join(blocks).splitlines()
    text = "\n".join(x for x in lines if not x.lstrip().startswith("#")).replace("\\\n", " ")
    commands, current, quoted = [], "", False
    for char in text:
        if char == "'":
            quoted = not quoted
        if char == "\n" and not quoted:
            commands.append(current)
            current = ""
        else:
            current += char
    commands.append(current)
    return [c for c in commands if c.strip()]


@pytest.mark.parametrize("fleet", FLEETS, ids=str)
def test_the_entities_read_exist_and_have_the_attributes_asked(fleet: str) -> None:
    devices = {d.device_id: d for d in FLEETS[fleet].devices}
    checked = 0
    for command in _commands(_examples()):
        for found in ENTITY.finditer(command):
            assert found["tenant"] == TENANT
            device = devices.get(found["device"])
            assert device is not None, f"{fleet}'s fleet has no {found['device']}"
            mapping = EntityMapping(SmartDataModel(found["type"]))
            for attrs in re.findall(r"attrs=([\w,]+)", command):
                for attribute in attrs.split(","):
                    quantities = mapping.quantities_of(attribute) & set(device.quantities)
                    assert quantities, f"{found['device']} has no {attribute} in {fleet}"
            checked += 1
    assert checked >= 2


def test_the_type_put_keeps_the_fleets_expected_interval() -> None:
    section = _examples()
    puts = [c for c in _commands(section) if "-X PUT" in c and "/device-types/" in c]
    assert len(puts) == 1
    body = re.search(r"-d '(.*?)'", puts[0], re.DOTALL)
    assert body is not None
    spec = DeviceTypeSpec.model_validate(json.loads(body[1]))
    assert spec.ngsi_ld is not None
    # What `make run` registered the type with; without it, the PUT would clear it.
    assert spec.expected_interval_seconds == expected_interval(RUN["devices"], RUN["rate"])
    prose = re.sub(r"```.*?```", "", section, flags=re.DOTALL)
    assert "`expected_interval_seconds`" in prose, "the text says why the body repeats it"
    assert "replaces the whole" in prose
