"""The Things Stack v3 uplinks (format ``tts-v3``), as its MQTT integration publishes them on
``v3/{application id}[@{tenant id}]/devices/{device id}/up``.

The message shape is TTS's "uplink message" (docs: Integrations > Data Formats):
``end_device_ids{device_id, application_ids{application_id}, dev_eui, join_eui, dev_addr}``,
``received_at``, ``uplink_message{f_port, f_cnt, frm_payload, decoded_payload, rx_metadata[],
settings, received_at}``.

Decisions:

* ``device_id`` is the topic's device id, ``application`` the topic's application id. The
  payload's ``end_device_ids.device_id`` and ``end_device_ids.application_ids.application_id``
  must agree with them when present, or the message is refused as ``identity_mismatch``
  (``cityhub.connectors.formats.identity``): the broker's ACL ties the topic to the publisher,
  nothing ties the payload. ``dev_eui`` is ``end_device_ids.dev_eui`` in lower case (ABP
  devices may have none); the registry decides whether it fits the device. ``dev_addr`` is
  ``end_device_ids.dev_addr`` (the session's address, upper case from TTS) in lower case,
  None when absent; it is what tells a rejoined device's frame 0 from the old session's.
* ``tenant`` is the topic's ``@tenant`` (TTS Cloud and TTN add it; a single-tenant deployment
  does not).
* ``observed_at`` is ``uplink_message.received_at`` (when the Network Server received the
  frame), else the top-level ``received_at`` (the Application Server's time).
* TTS leaves out fields whose value is zero or empty. ``f_cnt`` absent means 0 when the
  uplink has an ``f_port`` (it is a data frame, so it has a counter), and unknown (None)
  otherwise. ``f_port`` absent is None.
* ``decoded`` is ``decoded_payload`` when it is a non-empty object; ``frm_payload`` carries the
  base64-decoded bytes whenever the message has them, so that a device type can choose its own
  decoder over the network server's.
* A gateway's ``rssi`` is ``rssi``, else ``channel_rssi``.
* What is no measurement is passed by and counted (``NotAnUplink``), not dead-lettered: the
  device's other events on their own topics (``join``, ``down/...``, ``service/data``,
  ``location/solved``: a bridge subscribed to ``v3/+/devices/+/#`` receives them), an uplink
  made by the console's or API's "Simulate uplink" (``simulated: true``: not the city's data),
  and a frame on FPort 0 (``f_port`` 0 or left out, as TTS leaves zeros out) without decoded
  fields: its payload, if any, is MAC commands.
* An uplink of a device with end-to-end encryption comes with its ``app_s_key`` (wrapped): its
  ``frm_payload`` is still ciphertext, so no decoder may read it (``payload_encrypted``).
"""

from __future__ import annotations

import re
from typing import Any, Final

from cityhub.connectors.formats.base import MAX_GATEWAYS_READ, Uplink, strongest_gateways
from cityhub.connectors.formats.identity import require_agreement
from cityhub.connectors.formats.jsondoc import (
    load_object,
    mismatch,
    opt_base64,
    opt_dev_addr,
    opt_eui,
    opt_int,
    opt_list,
    opt_number,
    opt_object,
    opt_str,
    opt_time,
    shown,
)
from cityhub.schemas.errors import NotAnUplink, SchemaMismatch
from cityhub.schemas.observation import Gateway

NAME: Final = "tts-v3"
_DEV_EUI: Final = re.compile(rb'"dev_eui"\s*:\s*"([0-9A-Fa-f]{16})"')
_UINT32: Final = (1 << 32) - 1
_OTHER_EVENTS: Final = {
    "join": "join",
    "down/push": "downlink",
    "down/replace": "downlink",
    "down/queued": "downlink",
    "down/sent": "downlink",
    "down/ack": "downlink",
    "down/nack": "downlink",
    "down/failed": "downlink",
    "down/invalidated": "downlink",
    "service/data": "service",
    "location/solved": "location",
}
"""The device's other events on the integration's topics (``v3/{app}/devices/{device}/...``),
by the kind they are counted as."""


def _other_event(topic: str) -> str | None:
    """The kind of another event of a device (``join``, ``downlink``, ...), None otherwise."""
    parts = topic.split("/", 4)
    if len(parts) != 5 or parts[0] != "v3" or parts[2] != "devices":
        return None
    return _OTHER_EVENTS.get(parts[4])


def _topic_parts(topic: str) -> tuple[str, str | None, str] | None:
    """``(application, tenant, device)`` of an uplink topic, None if it is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "v3" or parts[2] != "devices" or parts[4] != "up":
        return None
    app, _, tenant = parts[1].partition("@")
    if not app or not parts[3]:
        return None
    return app, tenant or None, parts[3]


def _gateways(meta: list[Any]) -> tuple[Gateway, ...]:
    found = []
    for i, rx in enumerate(meta[:MAX_GATEWAYS_READ]):
        path = f"uplink_message.rx_metadata[{i}]"
        if type(rx) is not dict:
            raise mismatch(path, "an object", rx)
        ids = opt_object(rx, "gateway_ids", f"{path}.gateway_ids") or {}
        gateway_id = opt_str(ids, "gateway_id", f"{path}.gateway_ids.gateway_id")
        if gateway_id is None:
            gateway_id = opt_eui(ids, "eui", f"{path}.gateway_ids.eui")
            if gateway_id is None:
                continue  # nothing to name it by; the radio data alone is of no use
        rssi = opt_number(rx, "rssi", f"{path}.rssi")
        if rssi is None:
            rssi = opt_number(rx, "channel_rssi", f"{path}.channel_rssi")
        found.append(Gateway(gateway_id, rssi, opt_number(rx, "snr", f"{path}.snr")))
    return strongest_gateways(found)


class TtsV3Format:
    """The ``tts-v3`` ingest format."""

    name = NAME

    def partition_key(self, topic: str, payload: bytes) -> str:
        """The DevEUI (lower case) if the payload names one, else the topic's device id, else
        the whole topic. Never raises."""
        match = _DEV_EUI.search(payload)
        if match is not None:
            return match.group(1).decode("ascii").lower()
        parts = _topic_parts(topic)
        return topic if parts is None else parts[2]

    def parse(self, topic: str, payload: bytes, received_at: float) -> Uplink:
        """Parse a TTS v3 uplink message; see the module docstring for the field mapping."""
        parts = _topic_parts(topic)
        if parts is None:
            kind = _other_event(topic)
            if kind is not None:
                raise NotAnUplink(kind)
            raise SchemaMismatch(
                f"topic {shown(topic)}: expected v3/{{application}}[@{{tenant}}]/devices/"
                "{device}/up"
            )
        topic_app, tenant, topic_device = parts
        doc = load_object(payload, "TTS uplink")
        ids = opt_object(doc, "end_device_ids", "end_device_ids") or {}
        require_agreement(
            "device id",
            topic_device,
            "end_device_ids.device_id",
            opt_str(ids, "device_id", "end_device_ids.device_id"),
        )
        app_ids = opt_object(ids, "application_ids", "end_device_ids.application_ids") or {}
        require_agreement(
            "application id",
            topic_app,
            "end_device_ids.application_ids.application_id",
            opt_str(app_ids, "application_id", "end_device_ids.application_ids.application_id"),
        )
        if doc.get("simulated") is True:
            raise NotAnUplink("simulated")
        dev_eui = opt_eui(ids, "dev_eui", "end_device_ids.dev_eui")
        dev_addr = opt_dev_addr(ids, "dev_addr", "end_device_ids.dev_addr")
        up = opt_object(doc, "uplink_message", "uplink_message")
        if up is None:
            raise SchemaMismatch("uplink_message: expected an object, got nothing")
        f_port = opt_int(up, "f_port", "uplink_message.f_port", 0, 255)
        f_cnt = opt_int(up, "f_cnt", "uplink_message.f_cnt", 0, _UINT32)
        if f_cnt is None and f_port is not None:
            f_cnt = 0  # TTS omits zero values; a data frame always has a counter
        observed_at = opt_time(up, "received_at", "uplink_message.received_at") or opt_time(
            doc, "received_at", "received_at"
        )
        decoded = opt_object(up, "decoded_payload", "uplink_message.decoded_payload") or None
        frm_payload = opt_base64(up, "frm_payload", "uplink_message.frm_payload")
        if not f_port and decoded is None:
            # FPort 0 (TTS leaves a zero out): MAC commands, never application data, even
            # where the frame carries them as its payload.
            raise NotAnUplink("mac_only")
        encrypted = opt_object(up, "app_s_key", "uplink_message.app_s_key") is not None
        return Uplink(
            network="tts",
            device_id=topic_device,
            dev_eui=dev_eui,
            dev_addr=dev_addr,
            application=topic_app,
            tenant=tenant,
            f_cnt=f_cnt,
            f_port=f_port,
            observed_at=observed_at,
            gateways=_gateways(opt_list(up, "rx_metadata", "uplink_message.rx_metadata")),
            decoded=decoded,
            frm_payload=frm_payload,
            payload_encrypted=encrypted,
        )
