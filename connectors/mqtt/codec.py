"""A sans-I/O MQTT 5 codec for the client side of a session: the names the rest of cityhub
imports, from the three modules that hold them by concept.

- :mod:`~cityhub.connectors.mqtt.packets`: the packets a broker sends (``Publish``, ``ConnAck``,
  ``SubAck``, ``PubAck``, ``PubRel``, ``PingResp``, ``Disconnect``), property identifiers,
  reason codes and ``ProtocolError``;
- :mod:`~cityhub.connectors.mqtt.encoding`: what a client sends (CONNECT, SUBSCRIBE, PUBLISH,
  PUBACK, PUBREC, PUBCOMP, PINGREQ, DISCONNECT);
- :mod:`~cityhub.connectors.mqtt.decoding`: ``MqttDecoder``, which turns a broker's byte stream
  into packets whatever the read boundaries, and raises nothing but ``ProtocolError`` on
  malformed input (fuzzed: ``tests/unit/test_mqtt_codec.py``).

No sockets, no asyncio: :mod:`cityhub.connectors.mqtt.session` moves the bytes, for the bridge
(subscribe, acknowledge by the application) and the MQTT delivery sink (publish, PUBACK checked).
Packet layouts follow OASIS MQTT Version 5.0 (2019), section 3.
"""

from __future__ import annotations

from cityhub.connectors.mqtt.decoding import MqttDecoder, decode_properties
from cityhub.connectors.mqtt.encoding import (
    PINGREQ,
    check_topic_name,
    encode_connect,
    encode_disconnect,
    encode_pingreq,
    encode_puback,
    encode_pubcomp,
    encode_publish,
    encode_pubrec,
    encode_subscribe,
    publish_packet_size,
    publish_properties,
)
from cityhub.connectors.mqtt.packets import (
    ASSIGNED_CLIENT_IDENTIFIER,
    CONTENT_TYPE,
    CORRELATION_DATA,
    MAX_REMAINING_LENGTH,
    MAXIMUM_PACKET_SIZE,
    MAXIMUM_QOS,
    MESSAGE_EXPIRY_INTERVAL,
    PAYLOAD_FORMAT_INDICATOR,
    REASON_NAMES,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    RESPONSE_TOPIC,
    SERVER_KEEP_ALIVE,
    SESSION_EXPIRY_INTERVAL,
    SUBSCRIPTION_IDENTIFIER,
    TOPIC_ALIAS,
    TOPIC_ALIAS_MAXIMUM,
    TRANSIENT_REASONS,
    USER_PROPERTY,
    ConnAck,
    Disconnect,
    Packet,
    PingResp,
    ProtocolError,
    PubAck,
    Publish,
    PubRel,
    SubAck,
    reason_name,
)

__all__ = [
    "ASSIGNED_CLIENT_IDENTIFIER",
    "CONTENT_TYPE",
    "CORRELATION_DATA",
    "MAXIMUM_PACKET_SIZE",
    "MAXIMUM_QOS",
    "MAX_REMAINING_LENGTH",
    "MESSAGE_EXPIRY_INTERVAL",
    "PAYLOAD_FORMAT_INDICATOR",
    "PINGREQ",
    "REASON_NAMES",
    "REASON_STRING",
    "RECEIVE_MAXIMUM",
    "RESPONSE_TOPIC",
    "SERVER_KEEP_ALIVE",
    "SESSION_EXPIRY_INTERVAL",
    "SUBSCRIPTION_IDENTIFIER",
    "TOPIC_ALIAS",
    "TOPIC_ALIAS_MAXIMUM",
    "TRANSIENT_REASONS",
    "USER_PROPERTY",
    "ConnAck",
    "Disconnect",
    "MqttDecoder",
    "Packet",
    "PingResp",
    "ProtocolError",
    "PubAck",
    "PubRel",
    "Publish",
    "SubAck",
    "check_topic_name",
    "decode_properties",
    "encode_connect",
    "encode_disconnect",
    "encode_pingreq",
    "encode_puback",
    "encode_pubcomp",
    "encode_publish",
    "encode_pubrec",
    "encode_subscribe",
    "publish_packet_size",
    "publish_properties",
    "reason_name",
]
