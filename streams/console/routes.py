"""Every page of the console, in one table (``cityhub.streams.console.pages`` says how to add
one): the app routes them and the layout's menu lists the ones with a ``nav`` entry, in this
order."""

from __future__ import annotations

from cityhub.streams.console import (
    core_pages,
    deadletters,
    device,
    devices,
    imports,
    map_page,
    oidc_pages,
    subscriptions,
)
from cityhub.streams.console.pages import ConsolePage

PAGES: tuple[ConsolePage, ...] = (
    *core_pages.PAGES,
    *oidc_pages.PAGES,
    *devices.PAGES,
    *device.PAGES,
    *map_page.PAGES,
    *subscriptions.PAGES,
    *deadletters.PAGES,
    *imports.PAGES,
)
