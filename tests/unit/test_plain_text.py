"""Free text that reads as it is stored: one rule (``cityhub.schemas.plain_text``) for every
name, title, description, purpose and reason a client gives, whichever model takes it."""

from __future__ import annotations

from typing import Any

import markupsafe
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from cityhub.schemas.data_request import DataRequestSpec
from cityhub.schemas.data_request import record_key as request_key
from cityhub.schemas.plain_text import lines, one_line, shown
from cityhub.schemas.processing import ActivitySpec, ProcessingActivity
from cityhub.schemas.processing import record_key as activity_key
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, TenantSpec
from cityhub.schemas.registry import record_key as registry_key
from cityhub.schemas.sharing import OfferSpec
from cityhub.schemas.subscription import SubscriptionSpec
from cityhub.streams.console.app import template_environment
from cityhub.streams.console.device import observation_line
from cityhub.streams.opendata.requests import DataRequests
from cityhub.streams.opendata.requests_store import InMemoryDataRequestStore
from cityhub.streams.opendata.requests_view import DataRequestView
from cityhub.streams.privacy import html as register_pages
from cityhub.streams.privacy.resident_token_service import TokenSpec
from cityhub.streams.privacy.view import RegisterView
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.view import RegistryView
from cityhub.streams.service_errors import Invalid
from cityhub.streams.sharing.view import OfferView

from .test_api_support import seeded_registry
from .test_consent_support import activity, build_world

REFUSED_ANYWHERE = ["\u202e", "\u202a", "\u2066", "\u2069", "\ufeff", "\x00", "\x1b", "\x85"]
"""Bidirectional override, embedding, isolates, BOM, NUL, ESC, a C1 control."""
REFUSED_IN_ONE_LINE = ["\n", "\r", "\t", "\u2028", "\u2029"]

OFFER = {
    "id": "temps",
    "title": "Temperatures",
    "description": "Every thermometer",
    "selection": {"device_types": ["th"]},
    "kinds": ["observations"],
    "purposes": ["heat plan"],
    "licence": "CC-BY-4.0",
}
ONE_LINE_FIELDS: list[tuple[type[BaseModel], dict[str, Any], str]] = [
    (TenantSpec, {"id": "acme", "name": "Acme"}, "name"),
    (DeviceTypeSpec, {"id": "th", "name": "Thermo"}, "name"),
    (DeviceSpec, {"id": "d-1", "name": "Meter", "type": "th"}, "name"),
    (
        SubscriptionSpec,
        {"id": "s", "name": "Feed", "delivery": {"kind": "sse"}},
        "name",
    ),
    (OfferSpec, OFFER, "title"),
    (TokenSpec, {"name": "phone"}, "name"),
    (
        DataRequestSpec,
        {"title": "Trees", "data": "Tree positions", "purpose": "Shade maps"},
        "title",
    ),
    (ActivitySpec, activity("heat").model_dump(mode="json"), "name"),
]


@pytest.mark.parametrize("char", REFUSED_ANYWHERE + REFUSED_IN_ONE_LINE)
@pytest.mark.parametrize(
    ("model", "doc", "field"), ONE_LINE_FIELDS, ids=[m.__name__ for m, _, _ in ONE_LINE_FIELDS]
)
def test_a_name_that_would_read_otherwise_is_refused_without_being_repeated(
    model: type[BaseModel], doc: dict[str, Any], field: str, char: str
) -> None:
    model.model_validate(doc)  # the document as it is passes
    hostile = f"meter{char}lanif"
    with pytest.raises(ValidationError) as refused:
        model.model_validate({**doc, field: hostile})
    assert refused.value.errors()[0]["loc"][0] == field
    assert hostile not in str(refused.value).replace(repr(hostile), "")


@pytest.mark.parametrize("char", REFUSED_ANYWHERE)
def test_descriptions_keep_their_lines_but_not_the_rest(char: str) -> None:
    OfferSpec.model_validate({**OFFER, "description": "Every thermometer\n\tof acme\r\n"})
    with pytest.raises(ValidationError, match="description"):
        OfferSpec.model_validate({**OFFER, "description": f"Every {char}thermometer"})
    with pytest.raises(ValidationError, match="purposes"):
        OfferSpec.model_validate({**OFFER, "purposes": [f"heat{char} plan"]})


async def test_a_keys_name_is_held_to_the_rule_by_the_registry_itself() -> None:
    async with seeded_registry() as (registry, _, _keys):
        with pytest.raises(Invalid) as refused:
            await registry.create_key(Principal.system(), "acme", "operator", "ops\u202etoor")  # type: ignore[arg-type]
        assert refused.value.errors[0].field == "name"
        assert "\u202e" not in str(refused.value)


@given(st.text(max_size=40))
def test_what_passes_holds_no_refused_character(text: str) -> None:
    for check, refused in ((one_line, REFUSED_IN_ONE_LINE), (lines, [])):
        held = any(c in text for c in REFUSED_ANYWHERE + refused)
        if held:
            with pytest.raises(ValueError, match="must"):
                check(text)
        else:
            try:
                check(text)
            except ValueError as error:
                # what is refused past the listed characters: the other controls, separators,
                # invisibles and lone surrogates, each with the rule's own words
                assert str(error).startswith("must")  # noqa: PT017


def test_an_offer_stored_before_the_rule_still_loads() -> None:
    view = OfferView()
    title = "Temperatures\u202e and more"
    record = {
        "kind": "offer",
        "tenant": "acme",
        "spec": {**OFFER, "title": title, "description": "a\x1bb"},
        "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z",
    }
    view.apply("offer/acme/temps", orjson.dumps(record), 0)
    offer = view.get("acme", "temps")
    assert offer is not None
    assert offer.spec.title == title
    with pytest.raises(ValidationError):
        OfferSpec.model_validate(record["spec"])  # but no client may send it now


async def test_records_stored_before_the_rule_still_load_everywhere() -> None:
    """A type, an activity and a data request whose text the rule now refuses were stored by
    an earlier version: each view still loads them (a type's devices, an activity's consents, a
    request's answers must not vanish on an upgrade)."""
    hostile = "Camera \u200f12-34\x00"
    system = Principal.system()
    async with seeded_registry() as (registry, _, _keys):
        spec = DeviceTypeSpec.model_validate(
            {"id": "u", "name": "U", "fields": [{"field": "t", "quantity": "temperature"}]}
        )
        made = await registry.create_type(system, "acme", spec)
    doc = made.model_dump(mode="json")
    doc["fields"][0]["unit"] = hostile
    types = RegistryView()
    types.apply(registry_key(made), orjson.dumps(doc), 0)
    loaded = types.device_type("acme", "u")
    assert loaded is not None
    assert loaded.fields[0].unit == hostile

    world = await build_world()
    activity_doc = world.register.view.get("acme", "energy").model_dump(mode="json")  # type: ignore[union-attr]
    activity_doc["versions"][0]["name"] = hostile
    activity_doc["versions"][0]["recipients"] = [hostile]
    register = RegisterView()
    stored = world.register.view.get("acme", "energy")
    assert stored is not None
    register.apply(activity_key(stored), orjson.dumps(activity_doc), 0)
    activity = register.get("acme", "energy")
    assert activity is not None
    assert activity.versions[0].name == hostile

    requests = DataRequests(InMemoryDataRequestStore(), world.registry.view, datasets={"noise"})
    spec_doc = {"title": "Trees", "data": "Tree positions", "purpose": "Shade maps"}
    filed = await requests.file(DataRequestSpec.model_validate(spec_doc), "192.0.2.1")
    request_doc = filed.model_dump(mode="json")
    request_doc["spec"]["title"] = hostile
    view = DataRequestView()
    view.apply(request_key(filed), orjson.dumps(request_doc), 0)
    kept = view.get(filed.id)
    assert kept is not None
    assert kept.spec.title == hostile


def test_shown_writes_what_does_not_read_as_itself_as_its_escape() -> None:
    assert shown("Dam square") == "Dam square"
    assert shown("meter\u202elanif\x1b[2J") == "meter\\u202elanif\\u001b[2J"
    assert shown("a\U000e0041b") == "a\\U000e0041b"
    assert shown("م\u200cی") == "م\u200cی"  # a joiner reads as itself
    assert shown("two\nlines\tand a tab") == "two\nlines\tand a tab"


def test_the_console_and_the_register_show_old_text_escaped() -> None:
    """Text stored before the rule (or an uploaded file's name) reaches a page escaped, the
    templates' own markup untouched."""
    page = template_environment().from_string("<h1>{{ name }}</h1>{{ safe }}")
    html = page.render(name="meter\u202elanif\x1b", safe=markupsafe.Markup("<b>\u00a0</b>"))
    assert html == "<h1>meter\\u202elanif\\u001b</h1><b>\u00a0</b>"
    assert "\u202e" not in register_pages.activity_page(_old_activity("Camera \u202esvieh"))


def _old_activity(name: str) -> ProcessingActivity:
    doc = {
        "id": "urn:cityhub:processing-activity:acme:old",
        "tenant": "acme",
        "slug": "old",
        "created_at": "2026-01-01T00:00:00.000Z",
        "versions": [
            {
                "version": 1,
                "name": name,
                "purpose": "p",
                "legal_basis": "PublicTask",
                "personal_data_categories": [],
                "retention": "P1Y",
                "controller": "c",
                "recipients": [],
                "valid_from": "2026-01-01T00:00:00.000Z",
                "recorded_at": "2026-01-01T00:00:00.000Z",
            }
        ],
    }
    return ProcessingActivity.model_validate(doc)


def test_the_live_list_shows_a_devices_text_escaped() -> None:
    class Page:
        def t(self, key: str, **values: object) -> str:
            return key

    doc = {"observed_at": "2026-12-05T10:00:00Z", "quantity": "te\u202emp", "unit": "\u200f°C"}
    line = observation_line(Page(), {**doc, "value": 13.5})  # type: ignore[arg-type]
    assert line == "2026-12-05T10:00:00Z · te\\u202emp = 13.5 \\u200f°C"
