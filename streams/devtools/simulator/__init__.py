"""Simulated city devices: a seeded fleet, the messages its uplinks become, and a publisher.

``simulate(settings, devices, rate, ...)`` publishes them to the MQTT broker at a fixed rate
(the ``cityhub simulate`` command); ``build_fleet``, ``FleetSimulator``, ``Traffic`` and the
message functions are pure, for tests that need realistic uplinks without a broker.
"""

from __future__ import annotations

from cityhub.streams.devtools.simulator.fleet import (
    ALL_FORMATS,
    QUANTITIES,
    Device,
    Fleet,
    Format,
    Gateway,
    Kind,
    build_fleet,
)
from cityhub.streams.devtools.simulator.messages import (
    chirpstack_uplink,
    json_message,
    lpp_payload,
    render,
    senml_message,
    tts_uplink,
)
from cityhub.streams.devtools.simulator.publisher import SimulationReport, simulate
from cityhub.streams.devtools.simulator.readings import FleetSimulator, Frame
from cityhub.streams.devtools.simulator.traffic import Outgoing, Traffic

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
    "SimulationReport",
    "Traffic",
    "build_fleet",
    "chirpstack_uplink",
    "json_message",
    "lpp_payload",
    "render",
    "senml_message",
    "simulate",
    "tts_uplink",
]
