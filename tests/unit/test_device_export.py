"""``cityhub devices export``: every device of a tenant (across pages) as the JSON array that
``devices import`` takes back, into the same tenant (nothing changes, app keys and data-subject
links kept) or another; no app key, no data subject, no other tenant's device. Pure: the
in-memory registry and key store, no broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from cityhub.schemas.settings import Settings
from cityhub.streams.privacy.keys_store import InMemorySubjectKeyStore
from cityhub.streams.registry import cli
from cityhub.streams.registry.cli import session as cli_session
from cityhub.streams.registry.store import InMemoryRegistryStore

SUBJECT = "res-7f3a9c21"
APP_KEY = "00112233445566778899aabbccddeeff"


@pytest.fixture
def store() -> InMemoryRegistryStore:
    return InMemoryRegistryStore()


@pytest.fixture
def cityhub(monkeypatch: pytest.MonkeyPatch, store: InMemoryRegistryStore) -> click.Group:
    keys = InMemorySubjectKeyStore()

    def key_store(settings: Settings) -> InMemorySubjectKeyStore:
        return keys

    monkeypatch.setattr(cli_session, "store_factory", lambda settings: store)
    monkeypatch.setattr(cli_session, "key_store_factory", key_store)
    main = click.Group("cityhub")
    cli.mount(main)
    return main


def _ok(main: click.Group, *args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def _devices(main: click.Group, tenant: str) -> dict[str, dict[str, Any]]:
    """Each device of ``tenant`` as ``devices list --json`` shows it, without its timestamps;
    a device's data subject as ``devices get`` shows it."""
    out: dict[str, dict[str, Any]] = {}
    cursor: list[str] = []
    while True:
        page = json.loads(
            _ok(main, "devices", "list", "--tenant", tenant, "--limit", "1000", "--json", *cursor)
        )
        for doc in page["items"]:
            out[doc["id"]] = {k: v for k, v in doc.items() if k not in {"created_at", "updated_at"}}
        if page["next_cursor"] is None:
            break
        cursor = ["--cursor", page["next_cursor"]]
    if "tr-1" in out:
        shown = json.loads(_ok(main, "devices", "get", "--tenant", tenant, "tr-1", "--json"))
        out["tr-1"]["data_subject"] = shown["data_subject"]
    return out


def test_an_export_is_an_import_that_changes_nothing(cityhub: click.Group, tmp_path: Path) -> None:
    for tenant in ("city", "port"):
        _ok(cityhub, "tenants", "create", tenant, "--name", tenant)
        _ok(cityhub, "types", "create", "--tenant", tenant, "aq", "--name", "Air")
        _ok(cityhub, "types", "create", "--tenant", tenant, "tracker", "--name", "Tracker",
            "--classification", "personal")  # fmt: skip
    rows = [
        {"id": f"aq-{i:04d}", "name": f"Air {i}", "type": "aq", "dev_eui": f"{i:016x}"}
        for i in range(1, 1101)  # more than one page (1 000)
    ]
    rows[0] |= {
        "location": {"latitude": 52.37, "longitude": 4.89, "altitude": 2.5},
        "area": "centrum",
        "tags": ["roof", "school"],
        "active": False,
        "network": {"server": "tts", "application": "city-air", "tenant": "city"},
        "expected_interval_seconds": 900,
        "app_key": APP_KEY,
    }
    rows.append({"id": "tr-1", "name": "Tracker", "type": "tracker", "data_subject": SUBJECT})
    source = tmp_path / "devices.json"
    source.write_text(json.dumps(rows))
    _ok(cityhub, "devices", "import", "--tenant", "city", str(source))
    _ok(cityhub, "devices", "create", "--tenant", "port", "other", "--type", "aq")

    exported = json.loads(_ok(cityhub, "devices", "export", "--tenant", "city"))
    assert [d["id"] for d in exported] == sorted(r["id"] for r in rows)
    first = exported[0]
    assert first == {k: v for k, v in rows[0].items() if k != "app_key"}
    text = json.dumps(exported)
    assert APP_KEY not in text
    assert SUBJECT not in text
    assert "other" not in {d["id"] for d in exported}

    before = _devices(cityhub, "city")
    assert before["aq-0001"]["has_app_key"] is True
    assert before["tr-1"]["data_subject"] == SUBJECT
    back = tmp_path / "export.json"
    back.write_text(json.dumps(exported))
    report = json.loads(_ok(cityhub, "devices", "import", "--tenant", "city", str(back), "--json"))
    assert (report["created"], report["updated"], report["failed"]) == (0, len(rows), 0)
    assert _devices(cityhub, "city") == before  # keys and links kept

    # Into another tenant with the same types: the same devices, without keys and links.
    _ok(cityhub, "tenants", "create", "copy", "--name", "Copy")
    _ok(cityhub, "types", "create", "--tenant", "copy", "aq", "--name", "Air")
    _ok(cityhub, "types", "create", "--tenant", "copy", "tracker", "--name", "Tracker",
        "--classification", "personal")  # fmt: skip
    for doc in exported:
        doc["id"] = f"c-{doc['id']}"
        doc.pop("dev_eui", None)  # a DevEUI is unique across tenants
    back.write_text(json.dumps(exported))
    report = json.loads(_ok(cityhub, "devices", "import", "--tenant", "copy", str(back), "--json"))
    assert (report["created"], report["failed"]) == (len(rows), 0), report
    copy = _devices(cityhub, "copy")
    assert copy["c-aq-0001"]["area"] == "centrum"
    assert copy["c-aq-0001"]["has_app_key"] is False


def test_filters_narrow_the_export(cityhub: click.Group) -> None:
    _ok(cityhub, "tenants", "create", "city", "--name", "City")
    _ok(cityhub, "types", "create", "--tenant", "city", "aq", "--name", "Air")
    _ok(cityhub, "devices", "create", "--tenant", "city", "a", "--type", "aq", "--area", "west")
    _ok(cityhub, "devices", "create", "--tenant", "city", "b", "--type", "aq", "--inactive")
    west = json.loads(_ok(cityhub, "devices", "export", "--tenant", "city", "--area", "west"))
    assert [d["id"] for d in west] == ["a"]
    off = json.loads(_ok(cityhub, "devices", "export", "--tenant", "city", "--inactive"))
    assert [d["id"] for d in off] == ["b"]


def test_tenants_text_reaches_the_terminal_without_escapes(
    cityhub: click.Group, store: InMemoryRegistryStore
) -> None:
    # A review stored clear-screen, window-title and hyperlink escapes through the API: they
    # came out raw in `devices get` and `sharing show`. Such a name is refused now
    # (schemas/plain_text.py), but a record stored before the rule still shows.
    hostile = "a\x00\x1b[2J\x1b]0;pwned\x07\x1b]8;;http://evil/\x07x\u2028\u202eevil"
    _ok(cityhub, "tenants", "create", "city", "--name", "City")
    _ok(cityhub, "types", "create", "--tenant", "city", "aq", "--name", "Air")
    refused = CliRunner().invoke(
        cityhub, ["devices", "create", "--tenant", "city", "d1", "--type", "aq", "--name", hostile]
    )
    assert refused.exit_code != 0
    assert "\x1b" not in refused.output
    _ok(cityhub, "devices", "create", "--tenant", "city", "d1", "--type", "aq", "--name", "Ok")
    entry = store.view.device_by_id("d1")
    assert entry is not None

    async def store_as_before_the_rule() -> None:
        await store.start()
        await store.put(entry.to_device().model_copy(update={"name": hostile}))
        await store.stop()

    asyncio.run(store_as_before_the_rule())
    for args in (("get", "--tenant", "city", "d1"), ("list", "--tenant", "city")):
        out = _ok(cityhub, "devices", *args)
        assert "\x1b" not in out
        assert "\x07" not in out
        assert "\x00" not in out
        assert "\u202e" not in out
        assert "\\u001b]0;pwned\\u0007" in out  # shown, escaped
    # JSON escapes them by itself.
    doc = json.loads(_ok(cityhub, "devices", "get", "--tenant", "city", "d1", "--json"))
    assert doc["name"] == hostile
