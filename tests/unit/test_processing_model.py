"""The register of processing activities' model: validation of every field (hostile input
included), the URI scheme, legal bases and their DPV IRIs, and validity in time."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cityhub.schemas.processing import (
    MAX_CATEGORIES,
    ActivityEnd,
    ActivitySpec,
    LegalBasis,
    activity_uri,
    check_base_uri,
    check_duration,
    make_version,
    parse_legal_basis,
)
from cityhub.schemas.settings import PrivacySettings
from cityhub.schemas.timefmt import parse_rfc3339


def spec(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "slug": "parking-permits",
        "name": "Parking permits",
        "purpose": "Check that a parked car holds a permit.",
        "legal_basis": "PublicTask",
        "personal_data_categories": ["licence plate", "location"],
        "retention": "P30D",
        "controller": "Municipality of Example",
        "recipients": ["Parking enforcement"],
    }
    doc.update(fields)
    return doc


def failed_fields(doc: dict[str, Any]) -> set[str]:
    with pytest.raises(ValidationError) as info:
        ActivitySpec.model_validate(doc)
    return {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}


def test_a_valid_spec_is_normalised() -> None:
    activity = ActivitySpec.model_validate(
        spec(valid_from="2026-01-01T01:00:00+01:00", legal_basis="https://w3id.org/dpv#Consent")
    )
    assert activity.valid_from == "2026-01-01T00:00:00.000Z"
    assert activity.legal_basis is LegalBasis.CONSENT


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("slug", "Parking Permits"),
        ("slug", "../etc"),
        ("slug", "a" * 64),
        ("name", ""),
        ("name", "x" * 201),
        ("name", "two\nlines"),
        ("name", "bell\x07"),
        ("name", "<b>\u202eevil"),  # a bidi override (a review put one on the public page)
        ("controller", "Gemeente\u2066x"),
        ("purpose", "two\nlines, then \ufeff"),
        ("purpose", "p" * 2001),
        ("purpose", "nul\x00"),
        ("purpose_iri", "javascript:alert(1)"),
        ("purpose_iri", 'https://x.example/"><script>'),
        ("legal_basis", "Because"),
        ("legal_basis", "consent"),
        ("personal_data_categories", []),
        ("personal_data_categories", ["c"] * 2),
        ("personal_data_categories", [f"c{i}" for i in range(MAX_CATEGORIES + 1)]),
        ("personal_data_categories", ["x" * 65]),
        ("retention", "30 days"),
        ("retention", "P"),
        ("retention", "PT"),
        ("retention", "P\u0661D"),  # an Arabic-Indic one
        ("retention", "P12345D"),
        ("retention", "-P1D"),
        ("controller", "c" * 201),
        ("recipients", [f"r{i}" for i in range(17)]),
        ("valid_from", "yesterday"),
        ("valid_from", "2026-01-01"),
        ("valid_to", "2200-01-01T00:00:00Z"),
        ("unknown", "field"),
    ],
)
def test_bad_values_are_refused_naming_the_field(field: str, value: object) -> None:
    failed = failed_fields(spec(**{field: value}))
    assert any(f == field or f.startswith(field + ".") for f in failed), failed


def test_valid_to_must_follow_valid_from() -> None:
    failed = failed_fields(spec(valid_from="2026-02-01T00:00:00Z", valid_to="2026-01-01T00:00:00Z"))
    assert failed == {"valid_to"}


def test_hostile_input_is_bounded_not_echoed() -> None:
    huge = "<script>" * 10_000
    with pytest.raises(ValidationError) as info:
        ActivitySpec.model_validate(spec(name=huge, retention=huge))
    assert {e["loc"][0] for e in info.value.errors()} == {"name", "retention"}


def test_html_in_text_is_kept_as_text() -> None:
    """Markup is not refused (a name may contain '<'); every page escapes it."""
    activity = ActivitySpec.model_validate(spec(name="<b>Bold</b> & co"))
    assert activity.name == "<b>Bold</b> & co"


@pytest.mark.parametrize("value", ["P1Y", "P6M", "P2W", "P30D", "PT12H", "P1Y2M10DT2H30M5S"])
def test_durations(value: str) -> None:
    assert check_duration(value) == value


def test_legal_bases_have_dpv_iris() -> None:
    assert LegalBasis.CONSENT.iri == "https://w3id.org/dpv#Consent"
    assert LegalBasis.LEGITIMATE_INTEREST.iri == "https://w3id.org/dpv#LegitimateInterest"
    assert LegalBasis.PUBLIC_TASK.iri == "https://w3id.org/dpv/legal/eu/gdpr#A6-1-e"
    for basis in LegalBasis:
        assert parse_legal_basis(basis.iri) is basis
        assert parse_legal_basis(basis.value) is basis


def test_uri_scheme() -> None:
    assert (
        activity_uri("urn:cityhub:processing-activity:", "acme", "parking")
        == "urn:cityhub:processing-activity:acme:parking"
    )
    assert (
        activity_uri("https://data.example.nl/verwerkingsregister/", "acme", "parking")
        == "https://data.example.nl/verwerkingsregister/acme/parking"
    )


@pytest.mark.parametrize(
    "base",
    ["urn:cityhub", "https://x.example/register", "ftp://x.example/", "https://x y/", "x:"],
)
def test_bad_base_uris_are_refused(base: str) -> None:
    with pytest.raises(ValueError, match="ending in"):
        check_base_uri(base)
    with pytest.raises(ValidationError):
        PrivacySettings(register_base_uri=base)


def test_validity_in_time() -> None:
    activity = ActivitySpec.model_validate(
        spec(valid_from="2026-01-01T00:00:00Z", valid_to="2026-07-01T00:00:00Z")
    )
    version = make_version(activity, version=1, now="2025-12-01T00:00:00.000Z")
    assert not version.valid_at(parse_rfc3339("2025-12-31T23:59:59Z"))
    assert version.valid_at(parse_rfc3339("2026-01-01T00:00:00Z"))
    assert not version.valid_at(parse_rfc3339("2026-07-01T00:00:00Z"))


def test_a_defaulted_start_after_the_end_is_refused() -> None:
    activity = ActivitySpec.model_validate(spec(valid_to="2026-01-01T00:00:00Z"))
    with pytest.raises(ValueError, match="after valid_from"):
        make_version(activity, version=1, now="2026-02-01T00:00:00.000Z")


def test_end_takes_an_rfc3339_time_only() -> None:
    assert ActivityEnd().valid_to is None
    with pytest.raises(ValidationError):
        ActivityEnd.model_validate({"valid_to": "soon"})
