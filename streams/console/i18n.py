"""The console's languages: Dutch and English, every string through one catalogue.

Each page family keeps its strings in a module of its own (``messages_*.py``: a mapping of key
to ``(Dutch, English)``); ``CATALOGUE`` merges them, and a test checks that every key a template
or handler uses is there, in both languages. A string takes named fields
(``t("devices.shown", n=3)``), filled with ``str.format_map``; the template escapes the result.

Which language: the console's switch (a cookie, ``LANGUAGE_COOKIE``) if the browser chose one,
else the first of Dutch and English that ``Accept-Language`` prefers, else the setting
``console.default_language`` (Dutch: the municipality's own language).

Pure: no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from cityhub.schemas.console_settings import CONSOLE_LANGUAGES
from cityhub.streams.console import messages_core, messages_devices, messages_ops

log = logging.getLogger("cityhub.console")

LANGUAGE_COOKIE = "cityhub_console_lang"
MAX_ACCEPT_LANGUAGE_CHARS = 1000

Translate = Callable[..., str]


def merge(*families: Mapping[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """One catalogue of several families; ValueError if two define the same key."""
    merged: dict[str, tuple[str, str]] = {}
    for family in families:
        for key, texts in family.items():
            if key in merged:
                raise ValueError(f"the console message {key!r} is defined twice")
            merged[key] = texts
    return merged


CATALOGUE = merge(messages_core.MESSAGES, messages_devices.MESSAGES, messages_ops.MESSAGES)


def translator(language: str, catalogue: Mapping[str, tuple[str, str]] = CATALOGUE) -> Translate:
    """``t(key, **fields)`` in ``language`` (``nl`` or ``en``); an unknown key is logged and
    shown as itself, so a missing string is visible but never breaks a page."""
    index = 0 if language == "nl" else 1

    def t(key: str, /, **fields: object) -> str:
        texts = catalogue.get(key)
        if texts is None:
            log.warning("console message %r is missing from the catalogue", key[:100])
            return key
        text = texts[index]
        return text.format_map(fields) if fields else text

    return t


def choose_language(cookie: str | None, accept_language: str | None, default: str) -> str:
    """The page's language: the cookie's if valid, else Accept-Language's preference among
    the console's languages (q-values honoured, ``nl-NL`` counts as ``nl``), else ``default``."""
    if cookie in CONSOLE_LANGUAGES:
        return cookie
    best: tuple[float, int, str] | None = None
    for position, item in enumerate((accept_language or "")[:MAX_ACCEPT_LANGUAGE_CHARS].split(",")):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        if primary not in CONSOLE_LANGUAGES:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        candidate = (-quality, position, primary)
        if best is None or candidate < best:
            best = candidate
    return best[2] if best is not None else default
