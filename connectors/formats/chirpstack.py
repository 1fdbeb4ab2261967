"""ChirpStack v4 uplink events (format ``chirpstack-v4``), as its MQTT integration publishes
them in JSON on ``application/{application id}/device/{DevEUI}/event/up``.

The message is the JSON form of ``integration.UplinkEvent`` (chirpstack ``api/proto/
integration/integration.proto``): ``deduplicationId``, ``time``, ``deviceInfo{tenantId,
tenantName, applicationId, applicationName, deviceProfileName, deviceName, devEui, tags}``,
``devAddr``, ``dr``, ``fCnt``, ``fPort``, ``data`` (base64), ``object`` (decoded by the device
profile's codec), ``rxInfo[{gatewayId, rssi, snr, ...}]``, ``txInfo``.

Decisions:

* ``device_id`` is ``eui-<deveui>`` (lower case), never ``deviceName``: in ChirpStack the
  DevEUI is the device's key, while the name is a free label that can change and repeat. It is
  also the id TTS gives a device registered by DevEUI, so a device keeps one id on both.
* ``dev_eui`` is the topic's DevEUI, lower case, and ``application`` the topic's application
  id (a stable UUID). The payload's ``deviceInfo.devEui`` and ``deviceInfo.applicationId`` must
  agree with them when present, or the message is refused as ``identity_mismatch``
  (``cityhub.connectors.formats.identity``): the broker's ACL ties the topic to the publisher,
  nothing ties the payload.
* ``tenant`` is the stable UUID ``deviceInfo.tenantId``.
* ``dev_addr`` is the top-level ``devAddr`` (the session's address, hex) in lower case, None
  when absent; it is what tells a rejoined device's frame 0 from the old session's.
* ``observed_at`` is ``time`` (the gateway's or network server's receive time).
* ChirpStack v4 writes its integration events with every scalar field, zeros included
  (``fCnt: 0``, ``fPort: 0``, ``data: ""``); only unset messages (``object``, ``time``,
  ``joinServerContext``) are left out. Should an ``fCnt`` be absent all the same, it means 0
  when the event has an ``fPort``, unknown (None) otherwise.
* ``decoded`` is ``object`` when it is a non-empty object; ``frm_payload`` is ``data`` decoded
  from base64 whenever it is there (a device type may prefer its own decoder).
* What is no measurement is passed by and counted (``NotAnUplink``), not dead-lettered: the
  device's other events (``event/join``, ``ack``, ``txack``, ``log``, ``status``,
  ``location``, ``integration``, and ``command/down``: a bridge subscribed to
  ``application/+/device/+/#`` receives them) and an uplink with ``fPort`` 0 (MAC commands
  only).
* With end-to-end encryption the event carries a ``joinServerContext`` with the wrapped
  ``appSKey`` and ``data`` is still ciphertext, so no decoder may read it
  (``payload_encrypted``).
* Refused with a detail that says why: ChirpStack v3's events (``applicationID`` and
  ``devEUI`` at the top, no ``deviceInfo``), and events in the protobuf marshaler's bytes.
"""

from __future__ import annotations

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
from cityhub.schemas.errors import MalformedJSON, NotAnUplink, SchemaMismatch
from cityhub.schemas.observation import Gateway

NAME: Final = "chirpstack-v4"
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_UINT32: Final = (1 << 32) - 1


_OTHER_EVENTS: Final = {
    "event/join": "join",
    "event/ack": "downlink",
    "event/txack": "downlink",
    "command/down": "downlink",
    "event/log": "log",
    "event/status": "status",
    "event/location": "location",
    "event/integration": "integration",
}
"""A device's other topics of the MQTT integration, by the kind they are counted as."""


def _device_topic(topic: str) -> tuple[str, str, str] | None:
    """``(application id, DevEUI lower case, the rest: event/up, event/join...)`` of a device's
    topic of the MQTT integration, None otherwise."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != "application" or parts[2] != "device" or not parts[1]:
        return None
    eui = parts[3]
    if len(eui) != 16 or not _HEX.issuperset(eui):
        return None
    return parts[1], eui.lower(), f"{parts[4]}/{parts[5]}"


def _topic_parts(topic: str) -> tuple[str, str] | None:
    """``(application id, DevEUI lower case)`` of an uplink event topic, None otherwise."""
    found = _device_topic(topic)
    if found is None or found[2] != "event/up":
        return None
    return found[0], found[1]


def _load(payload: bytes) -> dict[str, Any]:
    """The event's JSON object, refusing with a detail that names the usual causes: the
    protobuf marshaler, and ChirpStack v3's shape."""
    try:
        doc = load_object(payload, "ChirpStack uplink event")
    except MalformedJSON as exc:
        raise MalformedJSON(
            f"{exc.detail} (ChirpStack's MQTT integration must marshal events as JSON, "
            "json=true in its [integration.mqtt] settings, not protobuf)"
        ) from None
    if "deviceInfo" not in doc and ("devEUI" in doc or "applicationID" in doc):
        raise SchemaMismatch(
            "a ChirpStack v3 event (applicationID and devEUI at the top, no deviceInfo): "
            "cityhub reads ChirpStack v4's JSON events"
        )
    return doc


def _gateways(rx_info: list[Any]) -> tuple[Gateway, ...]:
    found = []
    for i, rx in enumerate(rx_info[:MAX_GATEWAYS_READ]):
        path = f"rxInfo[{i}]"
        if type(rx) is not dict:
            raise mismatch(path, "an object", rx)
        gateway_id = opt_str(rx, "gatewayId", f"{path}.gatewayId")
        if gateway_id is None:
            continue
        found.append(
            Gateway(
                gateway_id,
                opt_number(rx, "rssi", f"{path}.rssi"),
                opt_number(rx, "snr", f"{path}.snr"),
            )
        )
    return strongest_gateways(found)


class ChirpstackV4Format:
    """The ``chirpstack-v4`` ingest format."""

    name = NAME

    def partition_key(self, topic: str, payload: bytes) -> str:
        """The DevEUI from the topic, lower case; the whole topic if it is not an uplink event
        topic. Never raises and never reads the payload."""
        parts = _device_topic(topic)
        return topic if parts is None else parts[1]

    def parse(self, topic: str, payload: bytes, received_at: float) -> Uplink:
        """Parse a ChirpStack v4 uplink event; see the module docstring for the mapping."""
        parts = _topic_parts(topic)
        if parts is None:
            other = _device_topic(topic)
            kind = None if other is None else _OTHER_EVENTS.get(other[2])
            if kind is not None:
                raise NotAnUplink(kind)
            raise SchemaMismatch(
                f"topic {shown(topic)}: expected application/{{application id}}/device/"
                "{16-hex DevEUI}/event/up"
            )
        topic_app, topic_eui = parts
        doc = _load(payload)
        info = opt_object(doc, "deviceInfo", "deviceInfo") or {}
        require_agreement(
            "DevEUI", topic_eui, "deviceInfo.devEui", opt_eui(info, "devEui", "deviceInfo.devEui")
        )
        require_agreement(
            "application id",
            topic_app,
            "deviceInfo.applicationId",
            opt_str(info, "applicationId", "deviceInfo.applicationId"),
        )
        f_port = opt_int(doc, "fPort", "fPort", 0, 255)
        f_cnt = opt_int(doc, "fCnt", "fCnt", 0, _UINT32)
        if f_cnt is None and f_port is not None:
            f_cnt = 0  # a data frame always has a counter (v4 writes it, even at 0)
        if f_port == 0:
            raise NotAnUplink("mac_only")
        decoded = opt_object(doc, "object", "object") or None
        context = opt_object(doc, "joinServerContext", "joinServerContext") or {}
        return Uplink(
            network="chirpstack",
            device_id=f"eui-{topic_eui}",
            dev_eui=topic_eui,
            dev_addr=opt_dev_addr(doc, "devAddr", "devAddr"),
            application=topic_app,
            tenant=opt_str(info, "tenantId", "deviceInfo.tenantId"),
            f_cnt=f_cnt,
            f_port=f_port,
            observed_at=opt_time(doc, "time", "time"),
            gateways=_gateways(opt_list(doc, "rxInfo", "rxInfo")),
            decoded=decoded,
            frm_payload=opt_base64(doc, "data", "data"),
            payload_encrypted=context.get("appSKey") is not None,
        )
