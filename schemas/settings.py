"""cityhub's settings: one typed, frozen tree read from the environment.

Every field can be set as ``CITYHUB_<SECTION>__<FIELD>`` (for example
``CITYHUB_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092``); secrets are ``SecretStr`` and print masked.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cityhub.schemas.aggregate import MAX_WINDOW_SECONDS
from cityhub.schemas.console_settings import ConsoleSettings as ConsoleSettings
from cityhub.schemas.health_settings import HealthSettings as HealthSettings
from cityhub.schemas.history_settings import HistorySettings as HistorySettings
from cityhub.schemas.kafka_settings import KafkaSettings as KafkaSettings
from cityhub.schemas.open_data import OpenDataSettings as OpenDataSettings
from cityhub.schemas.processing import DEFAULT_BASE_URI, check_base_uri
from cityhub.schemas.quality import QualitySettings as QualitySettings
from cityhub.schemas.stack_settings import StackSettings as StackSettings

ENVELOPE_OVERHEAD_BYTES = 70_000
"""Room for an envelope's fields around its payload: the MQTT topic alone may be 64 KiB."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MqttSubscription(_Section):
    """One MQTT topic filter the bridge subscribes to, and the format its messages are in."""

    filter: str
    format: str
    qos: int = Field(default=1, ge=0, le=2)


DEFAULT_SUBSCRIPTIONS: tuple[MqttSubscription, ...] = (
    MqttSubscription(filter="v3/+/devices/+/up", format="tts-v3"),
    MqttSubscription(filter="application/+/device/+/event/up", format="chirpstack-v4"),
    MqttSubscription(filter="cityhub/ingest/+", format="cityhub-json"),
)


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "cityhub-bridge"
    """Fixed, so that the broker keeps the session (and its queued messages) across restarts."""
    keepalive: int = Field(default=30, ge=5)
    session_expiry_seconds: int = Field(default=7 * 24 * 3600, ge=0)
    """How long the broker keeps the bridge's session and queues messages while it is away."""
    tls: bool = False
    """Connect with TLS, verifying the broker's certificate and host name."""
    tls_ca_file: Path | None = None
    """CA bundle for the broker's certificate; None: the system's CAs."""
    delivery_username: str | None = None
    """The user MQTT subscriptions' deliveries publish as (ACL: write ``delivery.mqtt_topic_root``
    and nothing else); None: they log in as ``username``. The same broker, port and TLS as the
    bridge: deliveries go to cityhub's own broker, under a per-tenant root the hub chooses."""
    delivery_password: SecretStr | None = None
    """``delivery_username``'s password; None with a ``delivery_username``: none is sent."""
    password_file: Path | None = None
    """A file whose first line is ``password`` (a secret mounted as a file, the secure stack's
    generated one), read at each connection; instead of ``password``."""
    delivery_password_file: Path | None = None
    """Likewise for ``delivery_password``."""
    share_group: str | None = None
    """When set, subscribe as ``$share/<group>/<filter>`` so that several bridges share the load."""

    @model_validator(mode="after")
    def _one_source_per_password(self) -> MqttSettings:
        for value, file in (
            ("password", "password_file"),
            ("delivery_password", "delivery_password_file"),
        ):
            if getattr(self, value) is not None and getattr(self, file) is not None:
                raise ValueError(f"mqtt.{value} and mqtt.{file} are both set: keep one")
        return self


class BridgeSettings(_Section):
    subscriptions: tuple[MqttSubscription, ...] = DEFAULT_SUBSCRIPTIONS
    max_inflight: int = Field(default=1000, ge=1, le=65535)
    """Messages received from MQTT but not yet confirmed by Kafka. Also sent to the broker as the
    MQTT 5 Receive Maximum, so the broker never pushes more than this."""
    max_payload_bytes: int = Field(default=256 * 1024, ge=1)
    """Larger messages go to the dead-letter topic (truncated to this size), not to ``raw``."""
    broker_stats: bool = True
    """Also read the broker's ``$SYS/broker`` figures (a second MQTT session, clean, named
    ``<mqtt.client_id>-sys``) and export them as ``cityhub_mqtt_broker_*`` metrics."""
    broker_store_file: Path | None = None
    """The broker's persistence file (Mosquitto's ``mosquitto.db``) when it is on this machine:
    its size is exported as ``cityhub_mqtt_broker_store_file_bytes``."""


class WorkerSettings(_Section):
    app_id: str = "cityhub"
    """The worker's Kafka consumer group and the prefix of its changelog topics."""
    duplicate_window_seconds: float = Field(default=300.0, gt=0)
    """Uplinks of one device with one session (DevAddr) and frame counter within this window are
    one uplink."""
    commit_interval_seconds: float = Field(default=0.5, gt=0)
    """How often confirmed input offsets are committed (a crash replays at most this much)."""
    max_unconfirmed_records: int = Field(default=10_000, ge=1)
    """Input records whose outputs Kafka has not confirmed yet; at the limit the agent waits."""
    allow_unknown_devices: bool = False
    """Normalise messages of devices that are not registered (marked ``registered: false``)
    instead of dead-lettering them as ``unknown_device``."""
    session_timeout_seconds: float = Field(default=10.0, ge=6.0)
    """How long Kafka waits for a silent worker before giving its partitions to others. Short, so
    that a killed worker's partitions move on in seconds (Kafka's default is 45 s); at least
    the broker's group.min.session.timeout.ms (6 s)."""


WEB_ORIGIN_PATTERN = r"^https?://[a-z0-9.\-\[\]:]+$"
"""A web origin as browsers send it: ``scheme://host[:port]``, lower case, no path or wildcard."""


class ApiContactSettings(_Section):
    """Who answers for this hub's API: the OpenAPI document's ``info.contact`` (NL API Design
    Rules, /core/doc-openapi-contact). Set it to the team that runs the hub, not a generic
    address of the whole organisation."""

    name: str = Field(default="cityhub operators", min_length=1, max_length=200)
    url: str = Field(default="https://cityhub.example/support", pattern=r"^https?://\S+$")
    email: str = Field(default="api@cityhub.example", pattern=r"^[^@\s]+@[^@\s]+$")


class HttpSettings(_Section):
    """The operator API (``/api/v1``) of the processes that serve it (``run``, ``api``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    cors_allowed_origins: tuple[Annotated[str, Field(pattern=WEB_ORIGIN_PATTERN)], ...] = ()
    """Origins whose web pages may call the API (CORS), e.g.
    ``CITYHUB_HTTP__CORS_ALLOWED_ORIGINS='["https://dashboard.city.example"]'``. Empty by
    default: no page of another origin may read any answer but the OpenAPI document's, which
    every origin may."""
    contact: ApiContactSettings = ApiContactSettings()
    idle_timeout_seconds: float = Field(default=75.0, ge=1.0, le=3600.0)
    """A connection that has not sent a whole request's headers this long after it opened, or
    after its last response, is closed (slow or silent clients holding sockets). A request in
    progress, a live stream among them, is never cut. Keep it above the idle timeout of a
    reverse proxy's upstream connections (nginx and load balancers: 60 s), or the proxy may
    send a request on a connection the hub is closing."""


class ManagementSettings(_Section):
    """``/metrics`` and ``/healthz`` of every cityhub process, on a port of their own: the
    metrics name tenants and subscriptions and nothing there asks for a key, so they stay on
    loopback (or a network only the scraper and the probes reach), never on the API's port."""

    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    """9464: in Prometheus's list of exporter ports, the one of an application's own metrics
    endpoint (OpenTelemetry's exporter); 8081 would collide with Kafka's Schema Registry, often
    run beside Kafka. Each process on one host needs its own (``--management-port``)."""


class SubscriptionSettings(_Section):
    webhook_allowed_hosts: tuple[str, ...] = ()
    """Webhook hosts (names or IP addresses) exempt from the SSRF address rules
    (``cityhub.connectors.sinks.ssrf``). Empty by default: set it only for tests or a trusted
    internal receiver, e.g. ``CITYHUB_SUBSCRIPTIONS__WEBHOOK_ALLOWED_HOSTS='["127.0.0.1"]'``."""


class AggregationSettings(_Section):
    """Tumbling event-time windows (``cityhub.streams.aggregation.windows``)."""

    window_sizes_seconds: tuple[Annotated[int, Field(ge=1, le=MAX_WINDOW_SECONDS)], ...] = (
        60,
        900,
        3600,
    )
    """Window sizes, from 1 s to 366 days (so that every window's end can be written)."""
    grace_seconds: int = Field(default=60, ge=0)
    """How long after a window's end a late observation still updates it (and re-emits it)."""
    max_future_seconds: int = Field(default=300, ge=0)
    """Observations claiming a time further ahead of the worker's clock are dropped and counted."""
    idle_close_seconds: float = Field(default=30.0, gt=0)
    """A partition without new observations for this long moves its watermark to wall clock
    minus this, so that its windows still close (once the watermark passes their end plus grace)
    when its devices go quiet."""
    exclude_flagged: bool = False
    """True: readings with a quality flag stay out of min, max, sum and mean (they still count
    in ``readings`` and ``flagged``); a window whose every reading is flagged then has count 0
    and null statistics (docs/aggregates.md#coverage-and-quality)."""
    coverage_roster_seconds: int = Field(default=24 * 3600, ge=0, le=MAX_WINDOW_SECONDS)
    """How long after its last reading of a quantity a device still counts in its area's
    expected readings (never less than the window): a silent sensor lowers the area's coverage
    for this long."""
    # Reading aggregates back through the API (``cityhub.streams.aggregation.query``): each query
    # scans one partition of the aggregates topic, so these bound the work of one request.
    query_max_range_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    """Longest ``to - from`` of one query; longer ranges are answered 422."""
    query_max_scanned_records: int = Field(default=1_000_000, ge=1)
    """Records (of every group in the partition) one query may read; past it, 422. About 2.5 s
    of one core at the 400 000 records/s measured on the project's machine."""
    query_max_items: int = Field(default=20_000, ge=1)
    """Windows one query may return; past it, 422 (ask for one quantity or size)."""
    query_timeout_seconds: float = Field(default=30.0, gt=0)
    """A query that Kafka has not answered in full by then is a 503."""
    query_concurrency: int = Field(default=4, ge=1)
    """Queries read at once per API process (one Kafka consumer each); the others wait."""


class DeliverySettings(_Section):
    """Delivering subscriptions (webhooks, MQTT, SSE); see ``cityhub.streams.delivery``."""

    batch_max_items: int = Field(default=100, ge=1, le=10_000)
    """At most this many items per MQTT or SSE burst. A webhook's batches follow its own
    subscription's ``max_batch_size``, ``max_batch_bytes`` and ``max_wait_ms``, and each POST
    its ``timeout_s``."""
    batch_linger_seconds: float = Field(default=0.01, ge=0)
    """How long an MQTT delivery task waits for more items before it sends a partial batch."""
    webhook_max_attempts: int = Field(default=8, ge=1)
    """Attempts per batch before it goes to the dead-letter topic and delivery moves on (once
    ``webhook_min_retry_seconds`` are past too)."""
    webhook_min_retry_seconds: float = Field(default=300.0, ge=0, allow_inf_nan=False)
    """A failing batch is tried again for at least this long since its first failure, however
    many attempts that takes: a receiver down for a few minutes loses nothing. 0: the attempts
    alone decide."""
    webhook_backoff_base_seconds: float = Field(default=0.5, gt=0)
    webhook_backoff_cap_seconds: float = Field(default=60.0, gt=0)
    webhook_max_response_bytes: int = Field(default=64 * 1024, ge=0)
    """Response bodies are read up to this many bytes (only for the error message), never more."""
    failing_after_attempts: int = Field(default=3, ge=1)
    """A subscription reports state ``failing`` after this many failed attempts in a row."""
    mqtt_topic_root: str = "cityhub/sub"
    """MQTT deliveries publish under ``<root>/<tenant>/<their topic>``."""
    group_prefix: str = "cityhub-delivery"
    """Each subscription's consumer group is ``<group_prefix>.<its topic>``."""


class OidcSettings(_Section):
    """Residents' OpenID Connect bearer tokens (``cityhub.streams.privacy.oidc``): off unless
    ``issuer`` is set; then ``audience`` and ``jwks_url`` are required, and exactly one of
    ``tenant`` (every resident of this identity provider belongs to one tenant) and
    ``tenant_claim`` (the claim that names the tenant). RS256 and ES256 only."""

    issuer: str | None = None
    """The identity provider's issuer (the tokens' ``iss``, exactly); None: OIDC is off."""
    audience: str | None = None
    """What the tokens' ``aud`` must contain: cityhub's client id at the provider."""
    jwks_url: str | None = None
    """The provider's JSON Web Key Set (``https``; ``http`` only on a loopback address)."""
    subject_claim: str = Field(default="sub", min_length=1, max_length=64)
    """The claim that carries the tenant's pseudonym of the resident (their data subject id)."""
    tenant_claim: str | None = Field(default=None, min_length=1, max_length=64)
    tenant: str | None = None
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    """Clock skew allowed on ``exp``, ``nbf`` and ``iat``."""
    max_token_bytes: int = Field(default=8192, ge=1024, le=65536)
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    jwks_refresh_cooldown_seconds: float = Field(default=30.0, ge=0)
    """An unknown ``kid`` refreshes the key set at most this often."""
    jwks_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    jwks_max_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)

    @property
    def enabled(self) -> bool:
        return self.issuer is not None

    @model_validator(mode="after")
    def _complete(self) -> OidcSettings:
        if self.issuer is None:
            return self
        if not self.audience or not self.jwks_url:
            raise ValueError("privacy.oidc.issuer needs privacy.oidc.audience and jwks_url too")
        if (self.tenant is None) == (self.tenant_claim is None):
            raise ValueError("privacy.oidc needs exactly one of tenant and tenant_claim")
        url = urlsplit(self.jwks_url)
        loopback = url.hostname in {"127.0.0.1", "::1", "localhost"}
        if url.scheme != "https" and not (url.scheme == "http" and loopback):
            raise ValueError("privacy.oidc.jwks_url must be https (http only on loopback)")
        return self


class PrivacySettings(_Section):
    register_base_uri: str = DEFAULT_BASE_URI
    """The base of every processing activity's id (``<base><tenant>:<slug>`` after a URN,
    ``<base><tenant>/<slug>`` after a URL): a city sets its own published register, e.g.
    ``https://data.example.nl/verwerkingsregister/``. Changing it changes no stored id."""
    processing_log_retention_days: int = Field(default=7 * 366, ge=1, le=100 * 366)
    """How long the processing log keeps its records (the topic's ``retention.ms``, set when the
    topic is created): seven years by default, the accountability horizon of most Dutch
    archive rules for such logs."""
    processing_log_index_max_records: int = Field(default=200_000, ge=1, le=50_000_000)
    """At most this many processing-log records are held in each API process's index (about
    1 KB each; ``cityhub.streams.privacy.log_index``); past it the oldest are dropped from the
    index (never from the topic) and a query that reaches them says it is incomplete."""
    oidc: OidcSettings = OidcSettings()
    """Residents' OpenID Connect bearer tokens; off by default."""

    key_encryption_key: SecretStr | None = None
    """The key-encryption key (KEK) that wraps every data subject's key on the ``subject-keys``
    topic: base64 of 32 random bytes. Losing it makes every sealed personal value unreadable;
    leaking it (with read access to the topics) exposes them. Never logged. Not checked here
    but where it is loaded (``cityhub.streams.privacy.keys_store.load_kek``), because a
    settings error would quote the value."""
    key_encryption_key_file: Path | None = None
    """A file that holds the KEK (mode 0600 advised), read at start. Unset, and
    ``key_encryption_key`` unset too: ``<stack.state_dir>/key-encryption-key``, which
    ``cityhub stack up`` makes. A process that needs the KEK and finds none refuses to start."""

    @property
    def processing_log_retention_ms(self) -> int:
        return self.processing_log_retention_days * 24 * 3600 * 1000

    @field_validator("register_base_uri")
    @classmethod
    def _base(cls, value: str) -> str:
        return check_base_uri(value)


class QuotaSettings(_Section):
    """Limits per tenant and per API key, so that one tenant cannot slow the others down
    (``cityhub.streams.quotas``). Each refusal is an RFC 9457 problem of type
    ``quota-exceeded`` naming the limit and this setting, counted in
    ``cityhub_api_throttled_total{reason}``."""

    subscriptions_per_tenant: int = Field(default=100, ge=0)
    """Subscriptions one tenant may have (every state); the next create is a 409."""
    devices_per_tenant: int = Field(default=100_000, ge=0)
    """Devices one tenant may have registered; the next create is a 409, and an import's rows
    that would create more are refused (updates of its devices still go through). Every
    process holds the whole registry in memory (about 0.7 kB per device), so this bounds what
    one tenant's operator can make every process hold."""
    live_streams_per_tenant: int = Field(default=20, ge=1)
    """Live streams (SSE connections) of one tenant's subscriptions open at once, per API
    process; the next is a 429 with ``Retry-After``."""
    live_streams_per_subscription: int = Field(default=10, ge=1)
    """Live streams of one subscription open at once, per API process; the next is a 429."""
    api_requests_per_second: float = Field(default=20.0, gt=0)
    """Sustained API requests per second of one API key (token bucket), per API process; a
    request without a usable key counts against its client address (IPv6: its /64). Beyond
    it, 429 with ``Retry-After``. ``/metrics``, ``/healthz`` and the OpenAPI document are free."""
    api_burst: int = Field(default=100, ge=1)
    """Requests one key (or address) may make at once after a quiet spell: the bucket's size."""
    import_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    """Largest device import body (CSV or JSON); larger ones are a 413. ``cityhub api
    --max-import-bytes`` overrides it."""
    import_max_rows: int = Field(default=100_000, ge=1)
    """Most rows one device import may carry; more is a 413 (split the file)."""
    open_data_streams_per_address: int = Field(default=4, ge=1)
    """Open-data live streams (``/open/stream``, no key) one client address (IPv6: its /64)
    may hold open at once, per API process; the next is a 429 with ``Retry-After``."""
    open_data_streams: int = Field(default=200, ge=1)
    """Open-data live streams open at once from all addresses, per API process."""


class SensorThingsSettings(_Section):
    """The OGC SensorThings API read service under ``/sta/v1.1`` (``docs/sensorthings.md``)."""

    default_top: int = Field(default=100, ge=1, le=10_000)
    """Entities per page when a request gives no ``$top``."""
    max_top: int = Field(default=1000, ge=1, le=10_000)
    """The largest page: a larger ``$top`` is served as this, with an ``@iot.nextLink``."""
    datastreams_refresh_seconds: float = Field(default=30.0, gt=0)
    """How long the list of Datastreams (device x quantity pairs seen in history) is reused
    before it is read again: a new device's first Datastream shows up at most this late."""
    service_url: str | None = None
    """The public root of the service (``https://data.city.example/sta/v1.1``) for links when
    the hub sits behind a proxy; None: built from the request's scheme and Host header."""

    @model_validator(mode="after")
    def _top_fits(self) -> SensorThingsSettings:
        if self.default_top > self.max_top:
            raise ValueError("sensorthings.default_top must not exceed sensorthings.max_top")
        return self


class CloudEventsSettings(_Section):
    """The CloudEvents attributes of deliveries in the ``cloudevents`` encodings, after the NL
    GOV profile for CloudEvents (``cityhub.connectors.cloudevents``, ``docs/cloudevents.md``)."""

    oin: str | None = Field(default=None, pattern=r"^[0-9]{20}$")
    """The publishing organisation's OIN (organisatie-identificatienummer, 20 digits): ``source``
    is ``urn:nld:oin:<oin>:systeem:<system>``. None: ``urn:nld:systeem:<system>`` (set it in
    production: the profile wants the organisation in ``source``)."""
    system: str = Field(default="cityhub", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """The publishing system's name in ``source``."""
    type_prefix: str = Field(
        default="nl.cityhub", pattern=r"^[a-z0-9-]+(?:\.[a-z0-9-]+)+$", max_length=128
    )
    """Reverse-DNS name before each event type: ``<type_prefix>.observation.v1`` and
    ``<type_prefix>.aggregate.v1``. The profile prefers the data source or domain over an
    organisation's name (names change)."""
    dataschema_base_url: str | None = Field(default=None, pattern=r"^https?://\S+/$")
    """Where the JSON Schemas of the items are served (ending in ``/``): ``dataschema`` is
    ``<base>observation.schema.json`` or ``<base>aggregate.schema.json``. None: no
    ``dataschema``."""


LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class Settings(BaseSettings):
    """All of cityhub's settings."""

    model_config = SettingsConfigDict(
        env_prefix="CITYHUB_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    kafka: KafkaSettings = KafkaSettings()
    mqtt: MqttSettings = MqttSettings()
    bridge: BridgeSettings = BridgeSettings()
    worker: WorkerSettings = WorkerSettings()
    http: HttpSettings = HttpSettings()
    management: ManagementSettings = ManagementSettings()
    stack: StackSettings = StackSettings()
    history: HistorySettings = HistorySettings()
    sensorthings: SensorThingsSettings = SensorThingsSettings()
    subscriptions: SubscriptionSettings = SubscriptionSettings()
    aggregation: AggregationSettings = AggregationSettings()
    delivery: DeliverySettings = DeliverySettings()
    quotas: QuotaSettings = QuotaSettings()
    privacy: PrivacySettings = PrivacySettings()
    cloudevents: CloudEventsSettings = CloudEventsSettings()
    open_data: OpenDataSettings = OpenDataSettings()
    console: ConsoleSettings = ConsoleSettings()
    health: HealthSettings = HealthSettings()
    quality: QualitySettings = QualitySettings()
    log_level: LogLevel = "info"
    log_format: Literal["text", "json"] = "text"
    """``text``: one line per record for people; ``json``: one JSON object per line (time,
    level, logger, message, exception; ``trace_id``, ``span_id`` and ``device`` on a line about
    a message) for a log pipeline. Both escape what came from outside
    (``cityhub.streams.logsetup``; ``docs/logging.md``)."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _envelopes_fit_in_kafka(self) -> Settings:
        # A payload the bridge accepts must fit in a Kafka record once it is wrapped in an
        # envelope (base64 adds a third; the MQTT topic may take up to 64 KiB). Otherwise Kafka
        # would refuse the same message on every redelivery.
        largest = self.bridge.max_payload_bytes * 4 // 3 + ENVELOPE_OVERHEAD_BYTES
        if largest > self.kafka.max_message_bytes:
            raise ValueError(
                f"bridge.max_payload_bytes={self.bridge.max_payload_bytes} makes envelopes of up "
                f"to {largest} bytes, more than kafka.max_message_bytes="
                f"{self.kafka.max_message_bytes}; lower the one or raise the other"
            )
        return self


ENV_PREFIX = "CITYHUB_"
TOOL_VARIABLES = ("CITYHUB_FUZZ_",)
"""Variables of the project's own tools (the fuzz suite), not settings."""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``CITYHUB_*`` variables of ``environ`` that name no setting, each with the setting
    it most likely meant (``CITYHUB_LOG_FORMT (did you mean CITYHUB_LOG_FORMAT?)``).

    pydantic-settings refuses an unknown field inside a section (``CITYHUB_KAFKA__X``) but
    ignores an unknown top-level name, so a misspelt setting would pass silently; the CLI refuses
    these at start-up."""
    fields = Settings.model_fields
    known = [
        f"{ENV_PREFIX}{name.upper()}{'__' if _is_section(info.annotation) else ''}"
        for name, info in fields.items()
    ]
    unknown = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable.startswith(TOOL_VARIABLES):
            continue
        head, nested, _ = variable[len(ENV_PREFIX) :].partition("__")
        info = fields.get(head.lower())
        # A section may also come whole, as JSON (``CITYHUB_KAFKA='{"partitions": 3}'``).
        if info is not None and (not nested or _is_section(info.annotation)):
            continue
        guess = difflib.get_close_matches(variable, known, n=1, cutoff=0.7)
        unknown.append(f"{variable} (did you mean {guess[0]}?)" if guess else variable)
    return unknown


def _is_section(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
