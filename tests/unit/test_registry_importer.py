"""The bulk import parser: The Things Stack's CSV, cityhub's columns, JSON, and every kind of bad
row and bad file. Pure: no broker."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from cityhub.schemas.registry import DeviceSpec, Location
from cityhub.streams.registry.import_rows import ParsedImport, Row
from cityhub.streams.registry.importer import content_type_for, parse_import, read_import
from cityhub.streams.registry.spec_errors import describe_errors
from cityhub.streams.service_errors import FieldError, Invalid

FIXTURES = Path(__file__).parent.parent / "fixtures"
CSV = "text/csv"
JSON = "application/json"


def specs(rows: Sequence[Row]) -> list[DeviceSpec]:
    return [row for row in rows if isinstance(row, DeviceSpec)]


def errors_of(row: Row) -> dict[str, str]:
    assert not isinstance(row, DeviceSpec), f"expected errors, got {row!r}"
    return {error.field: error.message for error in row}


def csv_body(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


# --- The Things Stack's CSV --------------------------------------------------------------------


def test_tts_export_imports_with_a_default_type() -> None:
    body = (FIXTURES / "tts_devices.csv").read_bytes()

    parsed = read_import(body, CSV, default_type="city-sensor")

    assert len(parsed.rows) == 5
    devices = specs(parsed.rows)
    assert len(devices) == 5, [describe_errors(r) for r in parsed.rows if isinstance(r, list)]
    first = devices[0]
    assert first.id == "air-centrum-01"
    assert first.dev_eui == "70b3d57ed0061a01"
    assert first.name == "Air quality Dam square"
    assert first.type == "city-sensor"
    assert first.app_key is not None
    assert first.app_key.get_secret_value() == "8A1C5F3B2D7E4A6C9B0F1E2D3C4B5A69"
    assert first.location is None
    assert first.active
    assert devices[2].app_key is None  # an empty app_key cell: no key
    # No id: The Things Stack's fallback, eui-<DevEUI>; no name: the id.
    assert devices[3].id == "eui-a84041000181c0df"
    assert devices[3].name == "eui-a84041000181c0df"
    assert parsed.lines == [2, 3, 4, 5, 6]
    assert parsed.ids[3] == "eui-a84041000181c0df"
    # Every column of that file is one of TTS's: nothing reported as unknown.
    assert parsed.ignored_columns == ()


def test_tts_export_without_type_column_or_default_is_refused_whole() -> None:
    body = (FIXTURES / "tts_devices.csv").read_bytes()

    with pytest.raises(Invalid, match="no 'type' column and no default type"):
        parse_import(body, CSV)


def test_comma_and_semicolon_separated_files_give_the_same_devices() -> None:
    header = ["id", "dev_eui", "join_eui", "type", "latitude", "longitude", "tags"]
    row = ["a-1", "70B3D57ED0000001", "0000000000000000", "air", "52.1", "4.9", "air city"]

    with_semicolons = parse_import(csv_body(";".join(header), ";".join(row)), CSV)
    with_commas = parse_import(csv_body(",".join(header), ",".join(row)), CSV)

    assert with_semicolons == with_commas
    assert specs(with_commas)[0].location == Location(latitude=52.1, longitude=4.9)
    assert specs(with_commas)[0].tags == ["air", "city"]


def test_bom_case_insensitive_header_aliases_blank_lines_and_crlf() -> None:
    body = (
        "\ufeff\r\nID;DevEUI_unknown;Dev_EUI;App_EUI;Type;Lat;Lon;Active\r\n"
        "\r\n"
        "b-1;x;70-B3-D5-7E-D0-00-00-01;70B3D57ED0000000;air;52,37;4,89;no\r\n"
        ";;;\r\n"
        "b-2;x;70B3D57ED0000002;70B3D57ED0000000;air;;;YES\r\n"
    ).encode()

    parsed = read_import(body, "text/csv; charset=UTF-8")

    first, second = specs(parsed.rows)
    assert first.dev_eui == "70b3d57ed0000001"
    assert first.location == Location(latitude=52.37, longitude=4.89)  # decimal commas
    assert first.active is False
    assert second.active is True
    assert second.location is None
    assert parsed.lines == [4, 6]
    assert parsed.ignored_columns == ("DevEUI_unknown",)


def test_cityhub_columns_and_quoted_values() -> None:
    body = csv_body(
        "id,name,type,latitude,longitude,altitude,area,tags,active",
        'c-1,"Rembrandtpark, east",soil,52.366,4.85,-3.5,nieuw-west,park|lawn  irrigation,true',
        'c-2,"two\nlines",soil,,,,,,',
        "c-3,,soil,,,,,,",
    )

    parsed = read_import(body, CSV)
    one, three = specs(parsed.rows)

    assert one.name == "Rembrandtpark, east"
    assert one.location == Location(latitude=52.366, longitude=4.85, altitude=-3.5)
    assert one.area == "nieuw-west"
    assert one.tags == ["park", "lawn", "irrigation"]
    # a quoted cell may span lines, but a name is one line (schemas/plain_text.py)
    assert errors_of(parsed.rows[1])["name"].startswith("must be one line")
    assert three.name == "c-3"
    assert one.dev_eui is None  # a plain MQTT sensor
    assert parsed.lines == [2, 3, 5]  # the row that spans two lines starts on line 3


def test_every_kind_of_bad_row_is_named_with_its_reason() -> None:
    body = (FIXTURES / "cityhub_devices_bad.csv").read_bytes()

    parsed = read_import(body, CSV)
    by_id = dict(zip(parsed.ids, parsed.rows, strict=True))

    assert [s.id for s in specs(parsed.rows)] == ["park-01", "park-10"]
    assert parsed.ignored_columns == ("colour",)
    assert errors_of(by_id["park-02"]) == {
        "dev_eui": "must be 16 hexadecimal digits, got 'XYZ'",
    }
    assert errors_of(by_id["park-03"]) == {
        "location.latitude": "must be between -90 and 90, got '91'",
    }
    assert errors_of(by_id["park-04"])["type"].startswith("required")
    bad_id_and_flag = errors_of(by_id["Park 05"])
    assert bad_id_and_flag["id"].startswith("must be 1 to 63 lower-case letters")
    assert bad_id_and_flag["active"] == "must be true or false, got 'maybe'"
    assert errors_of(parsed.rows[5]) == {"id": "'park-01' is already used on line 2"}
    assert errors_of(by_id["park-07"]) == {
        "dev_eui": "'70b3d57ed0062b01' is already used on line 2",
    }
    assert errors_of(by_id["park-08"]) == {
        "location.longitude": "required: give latitude and longitude together",
    }
    app_key = errors_of(by_id["park-09"])["app_key"]
    assert app_key == "must be 32 hexadecimal digits (the value is not shown)"
    assert "0123" not in app_key
    assert errors_of(parsed.rows[10]) == {
        "row": "has 4 values but the header has 12 columns "
        "(quote values that contain the separator)",
    }
    assert parsed.lines == list(range(2, 13))


def test_a_bad_row_s_id_still_counts_as_taken() -> None:
    # The first row is bad; the second must not silently take its place.
    body = csv_body("id;type;latitude;longitude", "d-1;air;95;4", "d-1;air;52;4")

    rows = parse_import(body, CSV)

    assert errors_of(rows[1]) == {"id": "'d-1' is already used on line 2"}


@pytest.mark.parametrize(
    ("cells", "field", "message"),
    [
        ("x;air;52;200;", "location.longitude", "must be between -180 and 180, got '200'"),
        ("x;air;52;4;99999", "location.altitude", "must be between -500 and 10000, got '99999'"),
        ("x;air;north;4;", "location.latitude", "must be a number, got 'north'"),
        ("x;air;nan;4;", "location.latitude", "must be a number, got 'nan'"),
        ("x;air;;;12", "location.altitude", "needs a latitude and a longitude"),
        ("x;Air Sensor;52;4;", "type", "must be a device type id"),
    ],
)
def test_field_checks(cells: str, field: str, message: str) -> None:
    rows = parse_import(csv_body("id;type;latitude;longitude;altitude", cells), CSV)

    assert errors_of(rows[0])[field].startswith(message)


def test_row_without_id_or_dev_eui_and_join_eui_checked() -> None:
    rows = parse_import(
        csv_body("id;dev_eui;join_eui;type", ";;;air", "j-1;70B3D57ED0000001;nope;air"), CSV
    )

    assert errors_of(rows[0]) == {"id": "required: give an id or a dev_eui"}
    assert errors_of(rows[1]) == {"join_eui": "must be 16 hexadecimal digits, got 'nope'"}


def test_too_many_tags_and_bad_tag() -> None:
    tags = "|".join(f"t{n}" for n in range(40))
    rows = parse_import(csv_body("id;type;tags", f"a;air;{tags}", "b;air;ok|no#pe"), CSV)

    assert errors_of(rows[0]) == {"tags": "at most 32 tags"}
    assert errors_of(rows[1])["tags.1"].startswith("must be letters, digits")


# --- bodies that cannot be read ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (b"id;type\n\xff\xfe;air\n", CSV, "not UTF-8 text: byte 0xff on line 2"),
        (b"", CSV, "empty"),
        (b"\n  \n", CSV, "empty"),
        (b"name;type\nx;air\n", CSV, "neither an 'id' nor a 'dev_eui' column"),
        (b"id;type;ID\n", CSV, "column 'id' twice"),
        (b"id,type\n", "text/csv; charset=latin-1", "charset 'latin-1'"),
        (b"id,type\n", "application/xml", "unsupported content type 'application/xml'"),
        (b'{"id": "x"}', JSON, "array of device objects, got an object"),
        (b"[{", JSON, "not valid JSON"),
        (b"id;type\nx;" + b"a" * 200_000 + b"\n", CSV, "cannot be read at line 2: field larger"),
    ],
)
def test_unreadable_bodies_raise_invalid(body: bytes, content_type: str, match: str) -> None:
    with pytest.raises(Invalid, match=match):
        parse_import(body, content_type)


def test_row_cap() -> None:
    body = csv_body("id;type", *(f"d-{n};air" for n in range(11)))

    assert len(parse_import(body, CSV, max_rows=11)) == 11
    with pytest.raises(Invalid, match="at most 10 devices"):
        parse_import(body, CSV, max_rows=10)
    as_json = json.dumps([{"id": f"d-{n}", "name": "d", "type": "air"} for n in range(11)])
    with pytest.raises(Invalid, match="at most 10 devices, got 11"):
        parse_import(as_json.encode(), JSON, max_rows=10)


# --- JSON --------------------------------------------------------------------------------------


def test_json_array_of_specs() -> None:
    body = json.dumps(
        [
            {
                "id": "j-1",
                "name": "J one",
                "type": "air",
                "dev_eui": "70B3D57ED0000001",
                "location": {"latitude": 52.1, "longitude": 4.9},
                "tags": ["a"],
                "app_key": "00112233445566778899AABBCCDDEEFF",
            },
            {"id": "j-2", "name": "J two"},
            {"id": "j-3", "name": "J three", "type": "air", "location": {"latitude": -91}},
            {"id": "j-4", "name": "J four", "type": "air", "colour": "red"},
            "not an object",
            {"id": "j-1", "name": "again", "type": "air", "dev_eui": "70b3d57ed0000001"},
        ]
    ).encode()

    parsed = read_import(body, "application/json; charset=utf-8", default_type="water")

    first = parsed.rows[0]
    assert isinstance(first, DeviceSpec)
    assert first.dev_eui == "70b3d57ed0000001"
    second = parsed.rows[1]
    assert isinstance(second, DeviceSpec)
    assert second.type == "water"
    assert errors_of(parsed.rows[2]) == {
        "location.latitude": "must be between -90 and 90, got -91",
        "location.longitude": "required",
    }
    assert errors_of(parsed.rows[3])["colour"].startswith("unknown field")
    assert errors_of(parsed.rows[4]) == {"row": "must be a JSON object, got a string"}
    assert errors_of(parsed.rows[5]) == {
        "id": "'j-1' is already used on item 1",
        "dev_eui": "'70b3d57ed0000001' is already used on item 1",
    }
    assert parsed.lines == [1, 2, 3, 4, 5, 6]
    assert parsed.ids == ["j-1", "j-2", "j-3", "j-4", None, "j-1"]


def test_json_without_type_and_no_default_is_a_row_error() -> None:
    rows = parse_import(b'[{"id": "x", "name": "X"}]', "application/vnd.cityhub+json")

    assert errors_of(rows[0]) == {"type": "required"}


def test_json_app_key_is_never_echoed() -> None:
    rows = parse_import(b'[{"id": "x", "name": "X", "type": "a", "app_key": 12345}]', JSON)

    assert "12345" not in describe_errors(errors_of_list(rows[0]))


def errors_of_list(row: Row) -> list[FieldError]:
    assert not isinstance(row, DeviceSpec)
    return list(row)


def test_helpers() -> None:
    assert content_type_for("devices.JSON") == JSON
    assert content_type_for("export.csv") == CSV
    errors = [FieldError("a", "x"), FieldError("b", "y")]
    assert describe_errors(errors) == "a: x; b: y"
    assert isinstance(read_import(b"id\n", CSV, default_type="t"), ParsedImport)
