import pytest

from cityhub.connectors.mqtt.routing import TopicRouter, topic_matches
from cityhub.schemas.settings import DEFAULT_SUBSCRIPTIONS, MqttSubscription


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("v3/+/devices/+/up", "v3/city-air@ttn/devices/aq-1/up", True),
        ("v3/+/devices/+/up", "v3/city-air/devices/aq-1/join", False),
        ("v3/+/devices/+/up", "v3/city-air/devices/aq-1/up/extra", False),
        ("application/+/device/+/event/up", "application/7/device/0011223344556677/event/up", True),
        ("cityhub/ingest/#", "cityhub/ingest/a/b", True),
        ("cityhub/ingest/#", "cityhub/ingest", True),
        ("#", "$SYS/broker/uptime", False),
        ("$share/g/cityhub/ingest/+", "cityhub/ingest/dev-1", True),
        ("a/+", "a/", True),
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
    ],
)
def test_topic_matches_like_the_broker(topic_filter, topic, expected):
    assert topic_matches(topic_filter, topic) is expected


def test_router_picks_the_format_of_the_first_matching_subscription():
    router = TopicRouter(DEFAULT_SUBSCRIPTIONS)
    assert router.route("v3/app@tenant/devices/d/up").format == "tts-v3"
    assert router.route("application/a/device/00/event/up").format == "chirpstack-v4"
    assert router.route("cityhub/ingest/noise-1").format == "cityhub-json"
    assert router.route("somewhere/else") is None


def test_router_prefers_earlier_subscriptions_on_overlap():
    router = TopicRouter(
        [
            MqttSubscription(filter="x/special", format="a"),
            MqttSubscription(filter="x/+", format="b"),
        ]
    )
    assert router.route("x/special").format == "a"
    assert router.route("x/other").format == "b"
