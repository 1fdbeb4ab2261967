"""The NGSI-LD mapping of devices: models, attributes, unit codes, ids and representations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cityhub.connectors.ngsi_ld.entities import (
    DeviceFacts,
    GeoPoint,
    Reading,
    entity,
    entity_id,
    entity_types,
    fragment,
    parse_entity_id,
    temporal_entity,
)
from cityhub.connectors.ngsi_ld.models import (
    UNIT_CODES,
    EntityMapping,
    SmartDataModel,
    attribute_value,
    camel_case,
    mapping_for,
    suggested_model,
)
from cityhub.schemas.quantities import QUANTITIES
from cityhub.schemas.registry import (
    Classification,
    DeviceType,
    DeviceTypeSpec,
    FieldMapping,
    NgsiLdAttribute,
    NgsiLdSpec,
)

T0 = "2026-12-03T10:00:00.000Z"
T1 = "2026-12-03T10:05:00.000Z"


def _type(
    fields: list[FieldMapping] | None = None, ngsi_ld: NgsiLdSpec | None = None
) -> DeviceType:
    return DeviceType(
        tenant="city",
        id="t",
        name="T",
        decoder="network",
        fields=fields or [],
        only_mapped=False,
        classification=Classification.PUBLIC,
        created_at=T0,
        updated_at=T0,
        ngsi_ld=ngsi_ld,
    )


def _device(mapping: EntityMapping, **kw: object) -> DeviceFacts:
    return DeviceFacts("city", "dev-1", "Device one", mapping, **kw)  # type: ignore[arg-type]


def test_camel_case_of_quantities() -> None:
    assert camel_case("relative_humidity") == "relativeHumidity"
    assert camel_case("pm2_5") == "pm25"
    assert camel_case("battery_voltage") == "batteryVoltage"
    assert camel_case("co2") == "co2"


@pytest.mark.parametrize(
    ("quantities", "model"),
    [
        (["sound_level", "battery"], SmartDataModel.NOISE_LEVEL_OBSERVED),
        (["temperature", "pm10"], SmartDataModel.AIR_QUALITY_OBSERVED),
        (["temperature", "wind_speed"], SmartDataModel.WEATHER_OBSERVED),
        (["occupancy"], SmartDataModel.PARKING_SPOT),
        (["temperature", "relative_humidity"], SmartDataModel.DEVICE),
        ([], SmartDataModel.DEVICE),
    ],
)
def test_the_model_a_types_quantities_suggest(quantities: list[str], model: SmartDataModel) -> None:
    assert suggested_model(quantities) is model


def test_a_type_without_settings_maps_by_its_field_mappings() -> None:
    mapping = mapping_for(_type([FieldMapping(field="laeq_1", quantity="sound_level")]))
    assert mapping.model is SmartDataModel.NOISE_LEVEL_OBSERVED
    assert mapping.rule("sound_level").attribute == "LAeq"
    assert mapping.rule("sound_level_max").attribute == "LAmax"
    assert mapping.rule("battery_voltage").attribute == "batteryVoltage"
    assert mapping_for(_type()).model is SmartDataModel.DEVICE
    assert mapping_for(None).model is SmartDataModel.DEVICE


def test_a_type_names_its_model_and_attributes() -> None:
    spec = NgsiLdSpec(
        model=SmartDataModel.WEATHER_OBSERVED,
        attributes=[
            NgsiLdAttribute(quantity="distance", attribute="snowHeight", unit_code="CMT"),
            NgsiLdAttribute(quantity="relative_humidity", attribute="relativeHumidity"),
        ],
    )
    mapping = mapping_for(_type(ngsi_ld=spec))
    assert mapping.model is SmartDataModel.WEATHER_OBSERVED
    assert mapping.rule("barometric_pressure").attribute == "atmosphericPressure"
    assert attribute_value(mapping.rule("distance"), 12, "m") == (12, "CMT")
    # The model's attribute name kept: its transform (percent to fraction) too.
    assert attribute_value(mapping.rule("relative_humidity"), 50, "%RH") == (0.5, "C62")
    assert mapping.quantities_of("snowHeight") == {"distance"}


def test_a_default_name_that_a_type_gave_to_another_quantity_is_changed() -> None:
    spec = NgsiLdSpec(attributes=[NgsiLdAttribute(quantity="co2", attribute="temperature")])
    mapping = mapping_for(_type(ngsi_ld=spec))
    assert mapping.rule("co2").attribute == "temperature"
    assert mapping.rule("temperature").attribute == "temperatureValue"
    assert mapping.quantities_of("temperature") == {"co2"}


def test_a_quantity_named_like_a_reserved_attribute_gets_another_name() -> None:
    mapping = EntityMapping(SmartDataModel.DEVICE)
    assert mapping.rule("location").attribute == "locationValue"
    assert mapping.rule("name").attribute == "nameValue"


def test_the_spec_refuses_reserved_and_repeated_attributes() -> None:
    with pytest.raises(ValidationError, match="uses itself"):
        NgsiLdAttribute(quantity="temperature", attribute="location")
    with pytest.raises(ValidationError, match="once"):
        NgsiLdSpec(
            attributes=[
                NgsiLdAttribute(quantity="temperature", attribute="t"),
                NgsiLdAttribute(quantity="temperature", attribute="u"),
            ]
        )
    with pytest.raises(ValidationError):
        NgsiLdAttribute(quantity="temperature", attribute="t", unit_code="celsius")
    spec = DeviceTypeSpec.model_validate(
        {"id": "aq", "name": "AQ", "ngsi_ld": {"model": "AirQualityObserved"}}
    )
    assert spec.ngsi_ld is not None
    assert spec.ngsi_ld.model is SmartDataModel.AIR_QUALITY_OBSERVED
    with pytest.raises(ValidationError):
        DeviceTypeSpec.model_validate({"id": "aq", "name": "AQ", "ngsi_ld": {"model": "Car"}})


def test_every_catalogue_unit_has_a_unit_code_or_is_a_position() -> None:
    units = {unit for unit in QUANTITIES.values() if unit is not None}
    assert units <= set(UNIT_CODES)
    assert UNIT_CODES["Cel"] == "CEL"
    assert UNIT_CODES["ug/m3"] == "GQ"
    assert UNIT_CODES["dB"] == "2N"
    assert UNIT_CODES["%"] == "P1"


def test_values_change_form_only_where_the_model_says_so() -> None:
    parking = EntityMapping(SmartDataModel.PARKING_SPOT)
    assert attribute_value(parking.rule("occupancy"), 1, None) == ("occupied", None)
    assert attribute_value(parking.rule("occupancy"), False, None) == ("free", None)
    assert attribute_value(parking.rule("occupancy"), "closed", None) == ("closed", None)
    device = EntityMapping(SmartDataModel.DEVICE)
    assert attribute_value(device.rule("battery"), 80, "%") == (0.8, "C62")
    # A battery in volts under the battery quantity is not a percentage: left as it is.
    assert attribute_value(device.rule("battery"), 3.6, "V") == (3.6, "VLT")
    assert attribute_value(device.rule("temperature"), 21.5, "Cel") == (21.5, "CEL")
    assert attribute_value(device.rule("temperature"), 21.5, None) == (21.5, None)
    assert attribute_value(device.rule("switch"), True, None) == (True, None)


def test_entity_ids_are_urns_that_parse_back() -> None:
    urn = entity_id("AirQualityObserved", "city", "aq-0042")
    assert urn == "urn:ngsi-ld:AirQualityObserved:city:aq-0042"
    ref = parse_entity_id(urn)
    assert ref is not None
    assert (ref.type, ref.tenant, ref.device_id) == ("AirQualityObserved", "city", "aq-0042")
    for other in ("urn:ngsi-ld:X:city", "urn:ngsi-ld:X:City:d", "urn:x:X:a:b", "a:b:c:d:e"):
        assert parse_entity_id(other) is None


def test_an_observed_model_device_is_two_entities() -> None:
    aq = EntityMapping(SmartDataModel.AIR_QUALITY_OBSERVED)
    assert [m.value for m in entity_types(aq)] == ["AirQualityObserved", "Device"]
    assert [m.value for m in entity_types(EntityMapping(SmartDataModel.DEVICE))] == ["Device"]


def test_the_normalized_entity_of_an_air_quality_device() -> None:
    device = _device(
        EntityMapping(SmartDataModel.AIR_QUALITY_OBSERVED),
        location=GeoPoint(4.9, 52.37, 2.0),
        area="centrum",
    )
    readings = [
        Reading("pm2_5", 12.0, "ug/m3", T0),
        Reading("pm2_5", 14.0, "ug/m3", T1),
        Reading("relative_humidity", 55, "%RH", T0),
    ]
    doc = entity(device, "AirQualityObserved", readings)
    assert doc is not None
    assert doc["id"] == "urn:ngsi-ld:AirQualityObserved:city:dev-1"
    assert doc["pm25"] == {"type": "Property", "value": 14.0, "observedAt": T1, "unitCode": "GQ"}
    assert doc["relativeHumidity"]["value"] == 0.55
    assert doc["location"] == {
        "type": "GeoProperty",
        "value": {"type": "Point", "coordinates": [4.9, 52.37, 2.0]},
    }
    assert doc["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:city:dev-1"}
    assert doc["dateObserved"]["value"] == {"@type": "DateTime", "@value": T1}
    described = entity(device, "Device", readings)
    assert described is not None
    assert "pm25" not in described
    assert "refDevice" not in described
    assert described["controlledProperty"]["value"] == ["pm25", "relativeHumidity"]


def test_attrs_keeps_the_named_attributes_and_drops_an_entity_without_any() -> None:
    device = _device(EntityMapping(SmartDataModel.DEVICE))
    readings = [Reading("temperature", 20.5, "Cel", T0), Reading("battery", 90, "%", T0)]
    doc = entity(device, "Device", readings, attrs={"temperature"})
    assert doc == {
        "id": "urn:ngsi-ld:Device:city:dev-1",
        "type": "Device",
        "temperature": {"type": "Property", "value": 20.5, "observedAt": T0, "unitCode": "CEL"},
    }
    assert entity(device, "Device", readings, attrs={"pm25"}) is None


def test_the_temporal_entity_holds_instances_newest_first() -> None:
    device = _device(EntityMapping(SmartDataModel.NOISE_LEVEL_OBSERVED))
    readings = [
        Reading("sound_level", 61.0, "dB", T1, "e2"),
        Reading("sound_level", 58.0, "dB", T0, "e1"),
        Reading("battery", 70, "%", T0, "e0"),
    ]
    doc = temporal_entity(device, "NoiseLevelObserved", readings, attrs={"LAeq"})
    assert doc["id"] == "urn:ngsi-ld:NoiseLevelObserved:city:dev-1"
    assert [i["value"] for i in doc["LAeq"]] == [61.0, 58.0]
    assert doc["LAeq"][0]["instanceId"] == "urn:uuid:e2"
    assert doc["LAeq"][0]["unitCode"] == "2N"
    assert "batteryLevel" not in doc


def test_an_observations_fragment_names_its_model_entity() -> None:
    device = _device(EntityMapping(SmartDataModel.PARKING_SPOT))
    assert fragment(device, Reading("occupancy", 1, None, T0)) == {
        "id": "urn:ngsi-ld:ParkingSpot:city:dev-1",
        "type": "ParkingSpot",
        "status": {"type": "Property", "value": "occupied", "observedAt": T0},
    }


def test_the_cli_reads_a_types_ngsi_ld_options() -> None:
    import click

    from cityhub.streams.registry.cli.device_types import _ngsi_spec, _ngsi_text

    spec = _ngsi_spec("WeatherObserved", ("distance=snowHeight:CMT", "uv_index=uvIndex"))
    assert spec is not None
    assert spec.model is SmartDataModel.WEATHER_OBSERVED
    assert spec.attributes[0] == NgsiLdAttribute(
        quantity="distance", attribute="snowHeight", unit_code="CMT"
    )
    assert _ngsi_text(spec) == "WeatherObserved distance=snowHeight:CMT uv_index=uvIndex"
    assert _ngsi_spec(None, ()) is None
    assert _ngsi_text(None) == "-"
    for bad in ("distance", "distance=location", "distance=x:celsius"):
        with pytest.raises(click.BadParameter):
            _ngsi_spec(None, (bad,))
