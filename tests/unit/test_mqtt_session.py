"""Pins what ManualAckSession relies on in aiomqtt and paho (see its module docstring)."""

from importlib.metadata import version

import aiomqtt
import pytest
from paho.mqtt.client import Client as PahoClient

from cityhub.connectors.mqtt.session import ManualAckSession
from cityhub.schemas.settings import MqttSettings


def test_aiomqtt_is_a_2x_release():
    major = int(version("aiomqtt").split(".")[0])
    assert major == 2, "aiomqtt 3 drops paho; ManualAckSession must be rewritten before upgrading"


async def test_session_reaches_paho_and_turns_on_manual_acks():
    session = ManualAckSession(MqttSettings(), receive_maximum=123)
    paho = session._paho
    assert isinstance(paho, PahoClient)
    assert paho is session._client._client
    assert paho._manual_ack is True
    props = session._client._properties
    assert props.ReceiveMaximum == 123
    assert props.SessionExpiryInterval == MqttSettings().session_expiry_seconds
    assert session._client._clean_start is False


@pytest.mark.parametrize("attr", ["mid", "qos", "topic", "payload"])
def test_aiomqtt_messages_carry_what_the_bridge_reads(attr):
    assert attr in aiomqtt.Message.__init__.__code__.co_varnames
