"""The registry CLI's output and argument checks, over the in-memory store (no Kafka). The same
commands run on the real Kafka in tests/integration/test_registry_cli.py."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner, Result

from cityhub.streams.registry import cli
from cityhub.streams.registry.cli import session as cli_session
from cityhub.streams.registry.store import InMemoryRegistryStore


@pytest.fixture
def cityhub(monkeypatch: pytest.MonkeyPatch) -> click.Group:
    store = InMemoryRegistryStore()  # one store for all the test's commands, like one topic
    monkeypatch.setattr(cli_session, "store_factory", lambda settings: store)
    main = click.Group("cityhub")
    cli.mount(main)
    return main


def invoke(main: click.Group, *args: str, expect: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == expect, result.output
    return result


def test_tables_and_json(cityhub: click.Group) -> None:
    assert invoke(cityhub, "tenants", "list").stdout == "(none)\n"
    invoke(cityhub, "tenants", "create", "acme", "--name", "Acme")
    invoke(cityhub, "types", "create", "--tenant", "acme", "air", "--name", "Air")
    invoke(
        cityhub, "devices", "create", "--tenant", "acme", "a-1", "--type", "air",
        "--lat", "52.37", "--lon", "4.89", "--alt", "3", "--tag", "x", "--tag", "y", "--inactive",
    )  # fmt: skip

    table = invoke(cityhub, "devices", "list", "--tenant", "acme").stdout.splitlines()
    assert table[0].split() == [
        "ID",
        "TYPE",
        "DEV_EUI",
        "NAME",
        "AREA",
        "LOCATION",
        "TAGS",
        "ACTIVE",
    ]
    assert table[1].split() == ["a-1", "air", "a-1", "52.37,4.89,3m", "x", "y", "no"]
    shown = json.loads(
        invoke(cityhub, "devices", "get", "--tenant", "acme", "a-1", "--json").stdout
    )
    assert shown["location"] == {"latitude": 52.37, "longitude": 4.89, "altitude": 3.0}
    assert shown["has_app_key"] is False
    assert shown["active"] is False


def test_key_secret_is_printed_once(cityhub: click.Group) -> None:
    invoke(cityhub, "tenants", "create", "acme", "--name", "Acme")

    created = invoke(
        cityhub, "keys", "create", "--tenant", "acme", "--role", "subscriber", "--name", "dash"
    )

    secret = created.stdout.split("Secret: ", 1)[1].strip()
    assert "only time the secret is shown" in created.stderr
    for listing in ("list", "list --json"):
        assert secret not in invoke(cityhub, "keys", *listing.split()).output


def test_bad_arguments_exit_1_before_the_registry(cityhub: click.Group) -> None:
    lat_only = invoke(
        cityhub, "devices", "create", "--tenant", "acme", "a-1", "--type", "air", "--lat", "52",
        expect=1,
    )  # fmt: skip
    assert lat_only.stderr == "Error: give --lat and --lon together (and --alt only with them)\n"

    bad_eui = invoke(
        cityhub, "devices", "create", "--tenant", "acme", "a-1", "--type", "air",
        "--dev-eui", "XYZ", expect=1,
    )  # fmt: skip
    assert bad_eui.stderr.splitlines() == [
        "Error: invalid device",
        "  dev_eui: must be 16 hexadecimal digits, got 'XYZ'",
    ]

    bad_field = invoke(
        cityhub, "types", "create", "--tenant", "acme", "t", "--name", "T", "--field", "oops",
        expect=2,
    )  # fmt: skip
    assert "FIELD=QUANTITY[:UNIT][*SCALE][+OFFSET]" in bad_field.stderr


def test_a_refused_model_is_named_in_words_not_by_its_class() -> None:
    from cityhub.streams.privacy.resident_token_service import TokenSpec

    @click.command()
    def issue() -> None:
        with cli_session.reported_errors():
            TokenSpec.model_validate({"name": "phone\u202e"})

    result = CliRunner().invoke(issue, [])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "Error: invalid resident token"
    assert "TokenSpec" not in result.stderr


def test_a_terminal_gets_every_invisible_character_escaped() -> None:
    from cityhub.streams.registry.cli.output import printable

    assert printable("Dam square") == "Dam square"
    assert printable("ab\U000e0041\U000e0042cd") == "ab\\U000e0041\\U000e0042cd"  # tags
    assert printable("a\u202eb\x1b]0;t\x07") == "a\\u202eb\\u001b]0;t\\u0007"
    assert printable("x\u00ady\u200fz") == "x\\u00ady\\u200fz"
