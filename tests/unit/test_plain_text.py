"""Free text that reads as it is stored: one rule (``cityhub.schemas.plain_text``) for every
name, title, description, purpose and reason a client gives, whichever model takes it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from cityhub.schemas.data_request import DataRequestSpec
from cityhub.schemas.plain_text import lines, one_line
from cityhub.schemas.processing import ActivitySpec
from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, TenantSpec
from cityhub.schemas.sharing import OfferSpec
from cityhub.schemas.subscription import SubscriptionSpec
from cityhub.streams.privacy.resident_token_service import TokenSpec
from cityhub.streams.registry.principals import Principal
from cityhub.streams.service_errors import Invalid
from cityhub.streams.sharing.view import OfferView

from .test_api_support import seeded_registry
from .test_consent_support import activity

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
