"""Simulated city devices: a seeded fleet and the messages its uplinks become.

``build_fleet``, ``FleetSimulator``, ``Traffic`` and the message functions are pure, for tests
that need realistic uplinks without a broker.
"""

from __future__ import annotations

from cityhub.streams.simulator.fleet import (
    ALL_FORMATS,
    QUANTITIES,
    Device,
    Fleet,
    FleetSimulator,
    Format,
    Frame,
    Gateway,
    Kind,
    build_fleet,
)
from cityhub.streams.simulator.messages import (
    chirpstack_uplink,
    json_message,
    lpp_payload,
    render,
    senml_message,
    tts_uplink,
)
from cityhub.streams.simulator.traffic import Outgoing, Traffic

__all__ = [
    "ALL_FORMATS",
    "QUANTITIES",
    "Device",
    "Fleet",
    "FleetSimulator",
    "Format",
    "Frame",
    "Gateway",
    "Kind",
    "Outgoing",
    "Traffic",
    "build_fleet",
    "chirpstack_uplink",
    "json_message",
    "lpp_payload",
    "render",
    "senml_message",
    "tts_uplink",
]
