"""The registry CLI on the real local Kafka: each command starts a store that reads the registry
topic, so every step here also checks that the previous command's write is on the topic.

Each test has its own topic prefix (``CITYHUB_KAFKA__TOPIC_PREFIX``), hence its own registry.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from cityhub.streams.registry import cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FIXTURES = Path(__file__).parent.parent / "fixtures"

Invoke = Callable[..., Result]


@pytest.fixture
def cityhub() -> Invoke:
    """Run ``cityhub <args>`` in-process against a registry of this test's own."""
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


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def test_bootstrap_a_tenant_and_its_keys(cityhub: Invoke) -> None:
    cityhub("tenants", "create", "acme", "--name", "Acme Sensors")
    listed = cityhub("tenants", "list")
    assert "acme" in listed.stdout
    assert "Acme Sensors" in listed.stdout

    created = cityhub("keys", "create", "--tenant", "acme", "--role", "operator", "--name", "ci")
    assert "only time the secret is shown" in created.stderr
    secret = created.stdout.split("Secret: ", 1)[1].strip()
    assert secret.startswith("chk_")
    admin = as_json(
        cityhub("keys", "create", "--tenant", "acme", "--role", "admin", "--name", "ops", "--json")
    )
    assert admin["role"] == "admin"
    assert admin["secret"].startswith("chk_")

    table = cityhub("keys", "list", "--tenant", "acme").stdout
    machine = cityhub("keys", "list", "--json").stdout
    for secret_text in (secret, admin["secret"]):
        assert secret_text not in table
        assert secret_text not in machine
        assert secret_text.rsplit("_", 1)[1] not in machine  # not even the random part
    keys = {k["name"]: k for k in json.loads(machine)}
    assert set(keys) == {"ci", "ops"}
    assert "secret_sha256" not in keys["ci"]

    revoked = cityhub("keys", "revoke", keys["ci"]["id"])
    assert f"Revoked API key {keys['ci']['id']}" in revoked.stdout
    after = {k["name"]: k for k in as_json(cityhub("keys", "list", "--json"))}
    assert after["ci"]["revoked_at"] is not None
    assert after["ops"]["revoked_at"] is None


def test_registry_errors_exit_1_with_the_reason(cityhub: Invoke) -> None:
    cityhub("tenants", "create", "acme", "--name", "Acme")

    again = cityhub("tenants", "create", "acme", "--name", "Acme", expect=1)
    assert again.stderr.startswith("Error: ")
    assert "acme" in again.stderr

    bad = cityhub("tenants", "create", "Not An Id", "--name", "x", expect=1)
    assert "id: must be 1 to 63 lower-case letters" in bad.stderr

    no_type = cityhub("devices", "create", "--tenant", "acme", "d-1", "--type", "nope", expect=1)
    assert no_type.stderr.startswith("Error: ")
    assert "nope" in no_type.stderr

    unknown = cityhub("devices", "get", "--tenant", "acme", "d-1", expect=1)
    assert unknown.stderr.startswith("Error: ")


def test_types_devices_import_list_and_delete(cityhub: Invoke, tmp_path: Path) -> None:
    cityhub("tenants", "create", "parks", "--name", "Parks department")
    cityhub(
        "types",
        "create",
        "--tenant",
        "parks",
        "soil",
        "--name",
        "Soil moisture probe",
        "--classification",
        "public",
        "--field",
        "water=soil_moisture:%",
        "--field",
        "t_raw=temperature:Cel*0.1+-40",
    )
    soil = as_json(cityhub("types", "get", "--tenant", "parks", "soil", "--json"))
    assert soil["classification"] == "public"
    assert soil["fields"][1] == {
        "field": "t_raw",
        "quantity": "temperature",
        "unit": "Cel",
        "scale": 0.1,
        "offset": -40.0,
    }
    assert "soil" in cityhub("types", "list", "--tenant", "parks").stdout

    cityhub(
        "devices",
        "create",
        "--tenant",
        "parks",
        "probe-1",
        "--type",
        "soil",
        "--dev-eui",
        "70-B3-D5-7E-D0-00-AA-01",
        "--name",
        "Probe by the pond",
        "--lat",
        "52.358",
        "--lon",
        "4.868",
        "--area",
        "zuid",
        "--tag",
        "pond",
    )
    probe = as_json(cityhub("devices", "get", "--tenant", "parks", "probe-1", "--json"))
    assert probe["dev_eui"] == "70b3d57ed000aa01"
    assert probe["location"] == {"latitude": 52.358, "longitude": 4.868, "altitude": None}

    # A file with every kind of bad row: the good rows are imported, each bad one is named.
    report = cityhub(
        "devices",
        "import",
        "--tenant",
        "parks",
        str(FIXTURES / "cityhub_devices_bad.csv"),
        expect=1,
    )
    assert "2 created, 0 updated, 9 failed" in report.stdout
    assert "ignored unknown columns: colour" in report.stderr
    lines = report.stdout.splitlines()
    for expected in (
        "row 2 (line 3, id park-02): dev_eui: must be 16 hexadecimal digits, got 'XYZ'",
        "row 3 (line 4, id park-03): location.latitude: must be between -90 and 90",
        "row 4 (line 5, id park-04): type: required",
        "row 6 (line 7, id park-01): id: 'park-01' is already used on line 2",
        "row 9 (line 10, id park-09): app_key: must be 32 hexadecimal digits",
        "row 11 (line 12, id ?): row: has 4 values but the header has 12 columns",
    ):
        assert any(line.startswith(expected) for line in lines), (expected, report.stdout)

    # The Things Stack's export has no type column: --default-type gives one. Run twice: the
    # second time every device is updated, none created.
    tts = str(FIXTURES / "tts_devices.csv")
    first = as_json(
        cityhub("devices", "import", "--tenant", "parks", tts, "--default-type", "soil", "--json")
    )
    assert (first["created"], first["updated"], first["failed"]) == (5, 0, 0)
    second = cityhub("devices", "import", "--tenant", "parks", tts, "--default-type", "soil")
    assert "0 created, 5 updated, 0 failed" in second.stdout

    # A JSON import, and a DevEUI another device already has.
    body = [
        {"id": "probe-2", "name": "Probe 2", "type": "soil", "area": "west", "tags": ["pond"]},
        {"id": "probe-3", "name": "Probe 3", "type": "soil", "dev_eui": "70b3d57ed000aa01"},
    ]
    (tmp_path / "more.json").write_text(json.dumps(body))
    more = cityhub("devices", "import", "--tenant", "parks", str(tmp_path / "more.json"), expect=1)
    assert "1 created, 0 updated, 1 failed" in more.stdout
    assert "row 2 (item 2, id probe-3): dev_eui:" in more.stdout

    everything = as_json(cityhub("devices", "list", "--tenant", "parks", "--json"))
    ids = [d["id"] for d in everything["items"]]
    assert ids == sorted(ids)
    assert len(ids) == 1 + 2 + 5 + 1
    assert all("app_key" not in d and "app_key_sha256" not in d for d in everything["items"])
    with_key = {d["id"]: d["has_app_key"] for d in everything["items"]}
    assert with_key["air-centrum-01"] is True
    assert with_key["noise-oost-01"] is False

    in_pond = cityhub("devices", "list", "--tenant", "parks", "--tag", "pond").stdout
    assert "probe-1" in in_pond
    assert "probe-2" in in_pond
    assert "park-01" not in in_pond
    page = as_json(cityhub("devices", "list", "--tenant", "parks", "--limit", "3", "--json"))
    assert len(page["items"]) == 3
    assert page["next_cursor"] is not None
    inactive = as_json(cityhub("devices", "list", "--tenant", "parks", "--inactive", "--json"))
    assert [d["id"] for d in inactive["items"]] == ["park-10"]

    # A type in use cannot go; once its devices are gone, it can.
    in_use = cityhub("types", "delete", "--tenant", "parks", "soil", expect=1)
    assert in_use.stderr.startswith("Error: ")
    for device_id in ids:
        cityhub("devices", "delete", "--tenant", "parks", device_id)
    assert "(none)" in cityhub("devices", "list", "--tenant", "parks").stdout
    cityhub("types", "delete", "--tenant", "parks", "soil")
    assert as_json(cityhub("types", "list", "--tenant", "parks", "--json"))["items"] == []


def test_an_unreadable_file_is_refused_before_kafka(cityhub: Invoke, tmp_path: Path) -> None:
    bad = tmp_path / "devices.csv"
    bad.write_bytes(b"id;type\n\xff;soil\n")

    result = cityhub("devices", "import", "--tenant", "parks", str(bad), expect=1)

    assert result.stderr.startswith("Error: the file is not UTF-8 text")
