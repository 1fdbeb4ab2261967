"""The device registry's model: tenants, device types, devices and API keys.

Two shapes per entity: the *spec* an operator sends (validated field by field, with messages a
person can act on) and the *record* cityhub keeps, which adds the tenant, timestamps and
derived fields, and never holds a secret in clear. Records are what the compacted registry
topic carries (JSON, with a ``kind``) and what the API returns.

Pure: pydantic models and functions, no I/O.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cityhub.schemas.expected_interval import ExpectedIntervalSeconds
from cityhub.schemas.plain_text import OneLine
from cityhub.schemas.quality import QualitySpec

ID_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62})$"
"""Ids of tenants, device types and devices: lower-case letters, digits, ``.``, ``_``, ``-``;
1 to 63 characters, starting with a letter or digit (The Things Stack's device ids fit)."""

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True), OneLine
]
"""A name people read (tenants, types, devices, keys, subscriptions, offers' titles): one line
that reads as it is stored (``cityhub.schemas.plain_text``)."""
PersonalDataCategory = Annotated[
    str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True), OneLine
]
"""As a processing activity's ``personal_data_categories`` entries (``schemas/processing.py``)."""
Tag = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:/=-]+$")
]
Area = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]

_DEV_EUI = re.compile(r"^[0-9a-fA-F]{16}$")
_TTS_ID = re.compile(r"^[a-z0-9](?:-?[a-z0-9]){2,35}$")
"""The Things Stack's application and tenant ids: 3 to 36 lower-case letters and digits, single
dashes between them (its ``identifiers.proto``: ``^[a-z0-9](?:[-]?[a-z0-9]){2,}$``, 36 long)."""
_TTS_ID_RULE = "3 to 36 lower-case letters and digits, single dashes between them"
_APP_KEY = re.compile(r"^[0-9a-fA-F]{32}$")

MAX_TAGS = 32

DATA_SUBJECT_PATTERN = r"^[A-Za-z0-9._-]{8,64}$"
_DATA_SUBJECT = re.compile(DATA_SUBJECT_PATTERN)
DATA_SUBJECT_RULE = (
    "a pseudonym chosen by the tenant: 8 to 64 letters, digits, '.', '_' or '-', not only "
    "digits (never a name, a citizen service number (BSN) or a phone number)"
)


def validate_data_subject(value: str) -> str:
    """A data subject's pseudonymous id as given (an opaque token); ValueError saying what is
    refused otherwise. All digits are refused so that a BSN (9 digits) or a phone number cannot
    pass for a pseudonym; the message never repeats the value, which may be personal data."""
    if not _DATA_SUBJECT.fullmatch(value) or value.isdigit():
        raise ValueError(f"data_subject must be {DATA_SUBJECT_RULE}")
    return value


MAX_FIELD_MAPPINGS = 64


class Role(StrEnum):
    """What an API key may do. Admins manage tenants and keys of every tenant; operators manage
    their own tenant's device types and devices; subscribers read (and, later, subscribe)."""

    ADMIN = "admin"
    OPERATOR = "operator"
    SUBSCRIBER = "subscriber"


class Classification(StrEnum):
    """How sensitive a device type's data is; routing and the open-data feed act on it."""

    PUBLIC = "public"
    INTERNAL = "internal"
    PERSONAL = "personal"


NETWORK_DECODER = "network"
"""Device-type decoder meaning: use what the network server decoded, and only when it did not,
decode the raw payload with Cayenne LPP (what cityhub does for unregistered devices too)."""


def normalise_dev_eui(value: str) -> str:
    """A DevEUI as 16 lower-case hex digits; ValueError saying what is wrong otherwise."""
    compact = value.strip().replace("-", "").replace(":", "")
    if not _DEV_EUI.match(compact):
        raise ValueError(f"DevEUI must be 16 hexadecimal digits, got {value!r}")
    return compact.lower()


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class NetworkServer(StrEnum):
    """The LoRaWAN network servers a device can be bound to (``Uplink.network`` names them so)."""

    TTS = "tts"
    CHIRPSTACK = "chirpstack"


class NetworkBinding(_Spec):
    """The one network-server application a device's uplinks may come from.

    A bound device's uplinks are credited only when they arrive through this server, from this
    application and (The Things Stack) this tenant; any other, and any plain MQTT message, is
    refused as ``identity_mismatch``. The Things Stack: ``application`` is the application id
    and ``tenant`` the ``@tenant`` of its MQTT topics (absent on a single-tenant deployment, and
    then an uplink naming a tenant is refused). ChirpStack: ``application`` is the application's
    UUID (global, so no tenant).
    """

    server: NetworkServer
    application: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    tenant: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    @field_validator("application")
    @classmethod
    def _application(cls, value: str, info: ValidationInfo) -> str:
        server = info.data.get("server")
        if server is NetworkServer.CHIRPSTACK:
            try:
                # ChirpStack writes its UUIDs in lower case, hyphenated: compare in that form.
                return str(uuid.UUID(value))
            except ValueError:
                raise ValueError(
                    "must be the ChirpStack application's UUID "
                    f"(e.g. 17c82e96-be03-4f38-aef3-f83d48582d97), got {value!r}"
                ) from None
        if server is NetworkServer.TTS and not _TTS_ID.match(value):
            raise ValueError(
                f"must be a The Things Stack application id ({_TTS_ID_RULE}), got {value!r}"
            )
        return value

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str | None, info: ValidationInfo) -> str | None:
        server = info.data.get("server")
        if value is not None and server is NetworkServer.CHIRPSTACK:
            raise ValueError("must be left out for ChirpStack: its application UUID is unique")
        if value is not None and server is NetworkServer.TTS and not _TTS_ID.match(value):
            raise ValueError(
                f"must be a The Things Stack tenant id ({_TTS_ID_RULE}), got {value!r}"
            )
        return value

    def describe(self) -> str:
        """``tts:city-air@city``, ``chirpstack:<uuid>``: the form the CLI and CSV take."""
        tenant = f"@{self.tenant}" if self.tenant is not None else ""
        return f"{self.server.value}:{self.application}{tenant}"


NETWORK_BINDING_FORMS = "tts:<application>[@<tenant>] or chirpstack:<application UUID>"


def network_binding_fields(text: str) -> dict[str, str]:
    """The fields of a binding's short form (``tts:city-air@city``, ``chirpstack:<UUID>``), not
    yet validated; ValueError if the text does not have that shape."""
    server, sep, rest = text.strip().partition(":")
    if not sep or not rest:
        raise ValueError(f"a network binding reads {NETWORK_BINDING_FORMS}, got {text!r}")
    application, at, tenant = rest.partition("@")
    fields = {"server": server.strip().lower(), "application": application}
    if at:
        fields["tenant"] = tenant
    return fields


def parse_network_binding(text: str) -> NetworkBinding:
    """A binding from its short form; ValueError (pydantic's ValidationError is one) saying
    what is wrong otherwise."""
    return NetworkBinding.model_validate(network_binding_fields(text))


class Location(_Spec):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    altitude: float | None = Field(default=None, ge=-500, le=10_000)


class FieldMapping(_Spec):
    """How one decoded field becomes a quantity: ``value * scale + offset`` in ``unit``."""

    field: Annotated[str, StringConstraints(min_length=1, max_length=128), OneLine]
    """The decoded field's name as the decoder emits it (dotted for nested: ``gps_8.latitude``)."""
    quantity: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    unit: Annotated[str, StringConstraints(min_length=1, max_length=16), OneLine] | None = None
    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)


class SmartDataModel(StrEnum):
    """The FIWARE Smart Data Models a device can be shown as in the NGSI-LD views
    (``cityhub.connectors.ngsi_ld``); ``Device`` is the generic one."""

    AIR_QUALITY_OBSERVED = "AirQualityObserved"
    NOISE_LEVEL_OBSERVED = "NoiseLevelObserved"
    WEATHER_OBSERVED = "WeatherObserved"
    PARKING_SPOT = "ParkingSpot"
    DEVICE = "Device"


NGSI_LD_ATTRIBUTE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
NGSI_LD_RESERVED_ATTRIBUTES = frozenset(
    {"id", "type", "scope", "location", "observationSpace", "operationSpace", "refDevice"}
    | {"createdAt", "modifiedAt", "deletedAt", "observedAt", "unitCode", "datasetId", "name"}
    | {"areaServed", "dateObserved", "controlledProperty", "dateLastValueReported"}
)
"""Names an NGSI-LD entity of cityhub uses itself, or the core context reserves."""


class NgsiLdAttribute(_Spec):
    """How one quantity appears on a device's NGSI-LD entity: the attribute's name and, when
    the default for the observation's unit is not right, its UN/CEFACT ``unit_code``."""

    quantity: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    attribute: Annotated[str, StringConstraints(pattern=NGSI_LD_ATTRIBUTE_PATTERN)]
    unit_code: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{2,3}$")] | None = None

    @field_validator("attribute")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in NGSI_LD_RESERVED_ATTRIBUTES:
            raise ValueError(f"{value!r} is an attribute name NGSI-LD or cityhub uses itself")
        return value


class NgsiLdSpec(_Spec):
    """A device type's NGSI-LD view: its Smart Data Model and attribute names. Both are
    optional: without ``model`` the model its field mappings' quantities suggest (else the
    generic ``Device``); a quantity without an entry takes the model's attribute for it."""

    model: SmartDataModel | None = None
    attributes: list[NgsiLdAttribute] = Field(default_factory=list, max_length=MAX_FIELD_MAPPINGS)

    @field_validator("attributes")
    @classmethod
    def _one_each(cls, value: list[NgsiLdAttribute]) -> list[NgsiLdAttribute]:
        quantities = [a.quantity for a in value]
        names = [a.attribute for a in value]
        if len(set(quantities)) != len(quantities):
            raise ValueError("each quantity may be mapped once")
        if len(set(names)) != len(names):
            raise ValueError("each attribute name may be used once")
        return value


class TenantSpec(_Spec):
    id: Id
    name: Name


class DeviceTypeSpec(_Spec):
    id: Id
    name: Name
    decoder: Annotated[str, StringConstraints(min_length=1, max_length=64)] = NETWORK_DECODER
    """``network``, or the name of a registered payload decoder (``cayenne-lpp``, a plugin's)
    that then decodes the raw payload even when the network server decoded it too."""
    fields: list[FieldMapping] = Field(default_factory=list, max_length=MAX_FIELD_MAPPINGS)
    """Mappings for fields whose catalogue name or unit is not the right one. Fields without a
    mapping go through the quantity catalogue, unless ``only_mapped``."""
    only_mapped: bool = False
    """Keep only the mapped fields (drop a decoder's diagnostics, counters and the like)."""
    classification: Classification = Classification.INTERNAL
    personal_data_category: PersonalDataCategory | None = None
    """For a ``personal`` type: the kind of personal data its devices yield, as a processing
    activity names it in its ``personal_data_categories`` (``indoor climate``, ``presence``).
    A personal item reaches a subscription only for an activity that lists it. None: the type's
    id is its category. Refused on a type that is not ``personal``."""
    ngsi_ld: NgsiLdSpec | None = None
    """How its devices appear in the NGSI-LD views; None: the defaults (``NgsiLdSpec``)."""
    expected_interval_seconds: ExpectedIntervalSeconds | None = None
    """How often its devices report (a device may override it); None: the hub's default
    (``schemas/expected_interval.py``)."""
    quality: QualitySpec | None = None
    """Its quality limits per quantity and its fault fields (docs/quality.md); None: the hub's."""

    @model_validator(mode="after")
    def _category_only_when_personal(self) -> DeviceTypeSpec:
        if (
            self.personal_data_category is not None
            and self.classification is not Classification.PERSONAL
        ):
            raise ValueError(
                "personal_data_category is for a type classified personal only; leave it out"
            )
        return self


class DeviceSpec(_Spec):
    id: Id
    name: Name
    type: Id
    """The device type's id, in the same tenant."""
    dev_eui: str | None = None
    """16 hex digits for a LoRaWAN device; stored lower-case. None for a plain MQTT sensor."""
    location: Location | None = None
    area: Area | None = None
    """A neighbourhood or district code."""
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    active: bool = True
    app_key: SecretStr | None = None
    """Write-only: stored as a SHA-256 fingerprint, never returned."""
    network: NetworkBinding | None = None
    """The network-server application the device's uplinks must come from; None: any that
    names it (its DevEUI or id)."""
    data_subject: str | None = Field(default=None, repr=False)
    """The pseudonymous id of the resident the device measures (a device of a ``personal``
    type only). Omitted: a replace or an import keeps the linked one; ``null``: unlinks it."""
    expected_interval_seconds: ExpectedIntervalSeconds | None = None
    """How often this device reports, overriding its type's; None: its type's."""

    @field_validator("data_subject")
    @classmethod
    def _data_subject(cls, value: str | None) -> str | None:
        return None if value is None else validate_data_subject(value)

    @field_validator("dev_eui")
    @classmethod
    def _dev_eui(cls, value: str | None) -> str | None:
        return None if value is None else normalise_dev_eui(value)

    @field_validator("app_key")
    @classmethod
    def _app_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _APP_KEY.match(value.get_secret_value()):
            raise ValueError("app_key must be 32 hexadecimal digits")
        return value


class DataSubjectLink(_Spec):
    """The body that links one device to a data subject (``PUT .../devices/{id}/data-subject``)."""

    data_subject: str = Field(repr=False)

    @field_validator("data_subject")
    @classmethod
    def _data_subject(cls, value: str) -> str:
        return validate_data_subject(value)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tenant(_Record):
    kind: Literal["tenant"] = "tenant"
    id: str
    name: str
    created_at: str
    updated_at: str


class DeviceType(_Record):
    kind: Literal["device_type"] = "device_type"
    tenant: str
    id: str
    name: str
    decoder: str
    fields: list[FieldMapping]
    only_mapped: bool
    classification: Classification
    created_at: str
    updated_at: str
    personal_data_category: str | None = None
    ngsi_ld: NgsiLdSpec | None = None
    expected_interval_seconds: int | None = None
    quality: QualitySpec | None = None

    @property
    def data_category(self) -> str:
        """The personal-data category its devices' items carry: the declared one, else the
        type's id."""
        return self.personal_data_category or self.id


class Device(_Record):
    kind: Literal["device"] = "device"
    tenant: str
    id: str
    name: str
    type: str
    dev_eui: str | None
    location: Location | None
    area: str | None
    tags: list[str]
    active: bool
    app_key_sha256: str | None = Field(default=None, repr=False)
    """Fingerprint of the write-only key; the API shows only ``has_app_key``."""
    network: NetworkBinding | None = None
    """Records written before bindings existed have none."""
    data_subject: str | None = Field(default=None, repr=False)
    """The linked data subject's pseudonymous id: personal data, never logged (no repr)."""
    expected_interval_seconds: int | None = None
    """Its own expected reporting interval; None: its type's (records before issue 14)."""
    created_at: str
    updated_at: str

    def public(self, *, with_subject: bool = False) -> dict[str, Any]:
        """The device as the API returns it: no secret, not even its fingerprint; the data
        subject only ``with_subject`` (for the device's own tenant, never anyone else)."""
        exclude = {"app_key_sha256", "kind"} | (set() if with_subject else {"data_subject"})
        doc = self.model_dump(mode="json", exclude=exclude)
        doc["has_app_key"] = self.app_key_sha256 is not None
        return doc

    def spec_doc(self) -> dict[str, Any]:
        """The device as a ``DeviceSpec`` an import takes back (``cityhub devices export``):
        without the write-only app key, the data subject (personal data; an import that leaves
        the field out keeps a device's link) and the record's own fields."""
        doc = self.model_dump(mode="json", include=set(DeviceSpec.model_fields))
        doc.pop("data_subject", None)
        return doc


class ApiKey(_Record):
    kind: Literal["api_key"] = "api_key"
    id: str
    tenant: str
    role: Role
    name: str
    secret_sha256: str = Field(repr=False)
    created_at: str
    revoked_at: str | None = None

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"secret_sha256", "kind"})


Record = Tenant | DeviceType | Device | ApiKey


def fingerprint(secret: str) -> str:
    """SHA-256 of a high-entropy secret (API keys, LoRaWAN keys), as hex. A plain hash is
    enough: these are random 128+ bit values, not passwords that a dictionary could guess."""
    return hashlib.sha256(secret.encode()).hexdigest()


def record_key(record: Record) -> str:
    """The compacted topic's key of a record: its kind and the ids that make it unique."""
    match record:
        case Tenant():
            return f"tenant/{record.id}"
        case DeviceType():
            return f"device_type/{record.tenant}/{record.id}"
        case Device():
            return f"device/{record.id}"
        case ApiKey():
            return f"api_key/{record.id}"
    raise TypeError(f"not a registry record: {record!r}")
