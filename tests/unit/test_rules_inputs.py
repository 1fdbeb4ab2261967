"""The series the alert rules read that the hub makes for them: the lag in seconds
(``cityhub.streams.metrics.lag_seconds``), ``cityhub_process_up`` from the supervisor, and
``cityhub_component_ready`` from each management endpoint."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from cityhub.streams.http import build_management_app
from cityhub.streams.metrics import lag_seconds
from cityhub.streams.supervisor import merge_metrics, with_process_up


def test_lag_in_seconds_is_zero_when_nothing_waits() -> None:
    assert lag_seconds(0, 1_000_000, now=5_000.0) == 0.0
    assert lag_seconds(-3, 1_000_000, now=5_000.0) == 0.0


def test_lag_in_seconds_is_the_age_of_the_last_record_taken() -> None:
    assert lag_seconds(12, 1_000_000, now=1_030.5) == 30.5


def test_lag_in_seconds_is_unknown_before_the_first_record_and_never_negative() -> None:
    assert lag_seconds(12, None, now=1_000.0) == 0.0
    # A producer's clock ahead of ours.
    assert lag_seconds(12, 2_000_000, now=1_000.0) == 0.0


def samples(text: str, name: str) -> dict[str, float]:
    return {
        s.labels["process"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_a_child_that_answers_is_up_and_one_that_does_not_is_down() -> None:
    worker = "# TYPE cityhub_x gauge\ncityhub_x 3.0\n"
    merged = merge_metrics(
        [("worker-1", with_process_up(worker)), ("history", with_process_up(""))]
    )
    assert samples(merged, "cityhub_process_up") == {"worker-1": 1.0, "history": 0.0}
    assert samples(merged, "cityhub_x") == {"worker-1": 3.0}


async def test_the_metrics_say_what_the_health_checks_say() -> None:
    state = {"registry": True}
    app = build_management_app(
        {"registry": lambda: state["registry"], "subscriptions": lambda: False}
    )
    async with TestClient(TestServer(app)) as client:
        text = await (await client.get("/metrics")).text()
        ready = {
            s.labels["component"]: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "cityhub_component_ready"
        }
        assert ready["registry"] == 1.0
        assert ready["subscriptions"] == 0.0
        state["registry"] = False
        text = await (await client.get("/metrics")).text()
        assert 'cityhub_component_ready{component="registry"} 0.0' in text
