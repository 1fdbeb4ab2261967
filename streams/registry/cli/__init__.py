"""``cityhub tenants|keys|types|devices``: the registry from the command line.

The CLI talks to the registry topic directly, as ``Principal.system()``: whoever can reach Kafka
is an administrator already, and this is how the first admin API key is made. Each command
starts a store (which reads the registry topic into memory), does one thing, and stops it
(``session.py``).

Output is a table for people, or JSON with ``--json`` (``output.py``). A registry error prints
``Error: ...`` with the fields at fault and exits 1. Secrets are never printed, except an API
key's secret once, when it is created.

One module per command group: ``tenants.py``, ``keys.py``, ``device_types.py`` (``cityhub
types``), ``devices.py`` and ``device_import.py`` (``cityhub devices import``).
"""

from __future__ import annotations

import click

from cityhub.streams.registry.cli.device_types import types
from cityhub.streams.registry.cli.devices import devices
from cityhub.streams.registry.cli.keys import keys
from cityhub.streams.registry.cli.tenants import tenants

REGISTRY_GROUPS: tuple[click.Group, ...] = (tenants, keys, types, devices)
"""The click groups to mount on the ``cityhub`` command."""


def mount(main: click.Group) -> None:
    """Add ``tenants``, ``keys``, ``types`` and ``devices`` to the ``cityhub`` command."""
    for group in REGISTRY_GROUPS:
        main.add_command(group)
