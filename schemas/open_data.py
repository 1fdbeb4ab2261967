"""Open data (issue 13): the datasets cityhub publishes, their settings, and the published window.

An open dataset is a feed of area aggregates that no person can be picked out of: a window of
one area and quantity is published only when at least ``k`` distinct devices contributed and,
where any contributing device is personal, at least ``k`` distinct data subjects; device ids
never appear; times are the window's bounds; values are rounded per quantity; areas too small
to publish are merged into ``MERGED_AREA`` of the same window, or withheld when even the merged
group is too small. A window is published once, when it closes, and never revised (a revision
would let a reader subtract one device's contribution).

Pure: models and settings; the publisher is ``cityhub.streams.opendata``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from cityhub.schemas.registry import Id, Name
from cityhub.schemas.sharing import Description, Licence, Quantity

MERGED_AREA = "other-areas"
"""The area of a window that merges the areas of one dataset, quantity and window that were
each too small to publish on their own (only those areas: no published area is in it twice)."""

DEFAULT_K = 5

EU_THEME = "http://publications.europa.eu/resource/authority/data-theme/"
"""The EU's data-theme vocabulary, which DCAT-AP (and so DCAT-AP-NL) takes ``dcat:theme`` from."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OpenDataset(_Section):
    """One dataset cityhub publishes."""

    id: Id
    title: Name
    description: Description
    quantities: tuple[Quantity, ...] = Field(min_length=1, max_length=64)
    window_seconds: int = Field(default=3600, ge=60, le=24 * 3600)
    """The window size; a divisor of a day, so that every window lies in one daily file."""
    licence: Licence = Licence.CC0_1_0
    theme: str = EU_THEME + "ENVI"
    """A term of the EU data-theme vocabulary (``.../data-theme/ENVI``, ``.../TRAN``, ...)."""
    keywords: tuple[Annotated[str, StringConstraints(min_length=1, max_length=64)], ...] = ()
    include_personal: bool = False
    """Whether devices classified ``personal`` contribute. Even then only those of tenants with
    a valid processing activity ``OpenDataSettings.personal_activity`` in their register, and
    never a sealed value (a subject-linked device's: opening it needs a delivery's purpose
    check, which publishing is not)."""

    @model_validator(mode="after")
    def _divides_a_day(self) -> OpenDataset:
        if (24 * 3600) % self.window_seconds:
            raise ValueError(f"window_seconds must divide a day (86400), got {self.window_seconds}")
        if len(set(self.quantities)) != len(self.quantities):
            raise ValueError("quantities lists each quantity once")
        return self


DEFAULT_DATASETS: tuple[OpenDataset, ...] = (
    OpenDataset(
        id="air-quality",
        title="Luchtkwaliteit per gebied (uurgemiddelden)",
        description=(
            "Hourly means of particulate matter, nitrogen dioxide, temperature and humidity per "
            "area of the city, from the sensors of the municipality and its partners. A window "
            "is published only when at least k sensors contributed; values are rounded."
        ),
        quantities=("pm2_5", "pm10", "no2", "temperature", "relative_humidity"),
        licence=Licence.CC0_1_0,
        theme=EU_THEME + "ENVI",
        keywords=("luchtkwaliteit", "fijnstof", "air quality"),
    ),
    OpenDataset(
        id="noise",
        title="Geluid per gebied (uurgemiddelden)",
        description=(
            "Hourly mean sound levels (LAeq) per area of the city. A window is published only "
            "when at least k sensors contributed; values are rounded to whole decibels."
        ),
        quantities=("sound_level",),  # LAeq (the catalogue's name; "laeq" is an alias)
        licence=Licence.CC_BY_4_0,
        theme=EU_THEME + "ENVI",
        keywords=("geluid", "noise"),
    ),
)


class OpenDataSettings(_Section):
    """The open-data feed, its distributions and the catalogue (``docs/open-data.md``)."""

    enabled: bool = True
    k: int = Field(default=DEFAULT_K, ge=2, le=1000)
    """The least number of distinct devices (and of distinct data subjects, where a personal
    device contributed) behind any published window."""
    datasets: tuple[OpenDataset, ...] = DEFAULT_DATASETS
    decimals: dict[Quantity, Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: {
            "temperature": 1,
            "relative_humidity": 0,
            "pm2_5": 0,
            "pm10": 0,
            "no2": 0,
            "laeq": 0,
            "count": 0,
        }
    )
    """Decimals each quantity's published values are rounded to."""
    default_decimals: int = Field(default=1, ge=0, le=6)
    """Decimals for a quantity not in ``decimals``."""
    exclude_flagged: bool = True
    """Keep readings with a quality flag (out of range, spike, flat line, device fault;
    docs/quality.md) out of the published windows; False: publish them like the others."""
    merge_small_areas: bool = True
    """Merge the too-small areas of a window into ``other-areas`` (published when the merged
    group reaches the thresholds); False: withhold them."""
    personal_activity: Id = "open-data"
    """The processing activity (slug) a tenant's register needs, valid, for its personal
    devices to contribute to a dataset with ``include_personal``."""
    grace_seconds: int = Field(default=120, ge=0)
    """How long after a window's end its late observations still count; it closes after."""
    files_dir: Path | None = None
    """Where the hub writes the daily CSV and Parquet files (one per dataset and UTC day).
    None: ``.cityhub/open-data/<kafka.topic_prefix>`` under the working directory, so that two
    hubs started in one folder with different prefixes never serve or merge each other's
    files (``Distributions.files_dir``)."""
    recent_days: int = Field(default=7, ge=1, le=366)
    """Days of windows the open API keeps in memory; older days are read from the files."""
    base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(?::\d+)?(?:/\S*)?$")
    """The public root of the API (``https://data.city.example``) for the catalogue's links;
    None: built from the request's scheme and Host header."""
    publisher_name: Name = "Gemeente"
    publisher_uri: str = Field(
        default="https://identifier.overheid.nl/tooi/id/gemeente/gm0000", pattern=r"^https?://\S+$"
    )
    """The publishing organisation as an IRI (TOOI, the Dutch government's organisation list)."""
    contact_email: str = Field(default="opendata@example.org", pattern=r"^[^@\s]+@[^@\s]+$")
    cache_seconds: int = Field(default=60, ge=0, le=3600)
    """``Cache-Control: max-age`` of the open API's answers (files: a day once complete)."""
    max_requests_per_address: int = Field(default=5, ge=1)
    """Data requests one client address (IPv6: its /64) may file per hour."""

    @model_validator(mode="after")
    def _distinct_datasets(self) -> OpenDataSettings:
        ids = [d.id for d in self.datasets]
        if len(set(ids)) != len(ids):
            raise ValueError("open_data.datasets: each id once")
        return self

    def decimals_of(self, quantity: str) -> int:
        return self.decimals.get(quantity, self.default_decimals)

    def dataset(self, dataset_id: str) -> OpenDataset | None:
        for dataset in self.datasets:
            if dataset.id == dataset_id:
                return dataset
        return None


class OpenWindow(BaseModel):
    """One published window, as written to ``Topics.open_data`` (key
    ``<dataset>/<area>/<quantity>/<window_start>``) and served by the open API, the files and
    the stream. Nothing in it names a device or a data subject."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["open_window"] = "open_window"
    dataset: str
    area: str
    """The area, or ``MERGED_AREA``."""
    quantity: str
    unit: str | None
    window_start: str
    """RFC 3339 UTC, inclusive."""
    window_end: str
    """RFC 3339 UTC, exclusive."""
    mean: float
    min: float | None
    """None where a personal device contributed: an extreme is one device's value."""
    max: float | None
    readings: int
    published_at: str

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.area}/{self.quantity}/{self.window_start}"

    @property
    def day(self) -> str:
        """The UTC day of the window (``YYYY-MM-DD``): its daily file."""
        return self.window_start[:10]

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"kind"})


def window_day(start: datetime) -> str:
    return start.strftime("%Y-%m-%d")
