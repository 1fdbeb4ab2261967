"""``Settings.console``: the operator console the API process serves under ``/console/`` (a
section of ``cityhub.schemas.settings``, in a module of its own; ``docs/console.md``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cityhub.schemas.console_oidc_settings import ConsoleOidcSettings

CONSOLE_LANGUAGES = ("nl", "en")
MAX_SESSION_SECONDS = 7 * 24 * 3600
"""The longest ``session_seconds`` allowed: the console's sign-out topic keeps a record this long
(and a margin), until the signed-out session would have expired anyway."""


class ConsoleSettings(BaseModel):
    """The operator console (``cityhub.streams.console``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    """Serve the console under ``/console/`` on the API's port. Off: ``/console/`` is a 404."""
    session_seconds: int = Field(default=8 * 3600, ge=60, le=MAX_SESSION_SECONDS)
    """How long a sign-in lasts: the session cookie expires this long after it was made (a
    working day by default); sign in again after."""
    default_language: Literal["nl", "en"] = "nl"
    """The language of a browser that names neither Dutch nor English in ``Accept-Language``
    and has not chosen one with the console's switch."""
    map_tile_url: str | None = Field(
        default=None, max_length=500, pattern=r"^https://[^\s\"'<>]+\{z\}[^\s\"'<>]*$"
    )
    """The map's tile source, a template with ``{z}``, ``{x}`` and ``{y}`` (``https`` only),
    e.g. PDOK's BRT Achtergrondkaart
    ``https://service.pdok.nl/brt/achtergrondkaart/wmts/v2_0/standaard/EPSG:3857/{z}/{x}/{y}.png``.
    None: no tiles; the devices still show on a plain background. The tile host is added to the
    console's Content-Security-Policy (``img-src``)."""
    map_tile_attribution: str = Field(default="", max_length=300)
    """The attribution the tile source asks for, shown on the map (plain text)."""
    map_max_devices: int = Field(default=5000, ge=1, le=100_000)
    """Most devices the map draws; a tenant with more sees the first ones and a notice."""
    live_streams_per_session: int = Field(default=3, ge=1, le=20)
    """Device pages one signed-in session may watch live at once, per API process."""
    live_streams: int = Field(default=200, ge=1, le=10_000)
    """Live device streams of all sessions at once, per API process; the next is refused."""
    live_buffer: int = Field(default=100, ge=1, le=10_000)
    """Observations held for one slow watcher before the oldest are dropped (and it is told)."""
    oidc: ConsoleOidcSettings = ConsoleOidcSettings()
    """Operators' sign-in with the municipality's OpenID Connect provider; off by default."""
    dead_letters_per_tenant: int = Field(default=200, ge=1, le=10_000)
    """Dead letters the dead-letter pages keep per tenant (and of unknown devices), newest."""
    dead_letter_preview_bytes: int = Field(default=4096, ge=256, le=65_536)
    """Bytes of a dead letter's original payload the console keeps and shows."""
    dead_letter_scan_back: int = Field(default=5000, ge=0, le=1_000_000)
    """Records read back from each dead-letter partition's end when the reader starts (the
    first time a dead-letter page is opened in an API process)."""


__all__ = ["CONSOLE_LANGUAGES", "ConsoleSettings"]
