"""``cityhub run``'s supervisor, its pure parts: which children it starts, how long it waits before
starting a crashed one again, and one metrics exposition made of every child's."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from cityhub.schemas.health_settings import HealthSettings
from cityhub.schemas.open_data import OpenDataSettings
from cityhub.schemas.settings import HistorySettings, HttpSettings, ManagementSettings, Settings
from cityhub.streams.supervisor import (
    BACKOFF_CAP_S,
    BACKOFF_START_S,
    STABLE_AFTER_S,
    free_ports,
    hub_children,
    hub_ports,
    kafka_component,
    merge_metrics,
    next_backoff,
)


def test_the_hub_is_a_bridge_a_worker_per_core_the_api_the_delivery_and_the_history() -> None:
    children = hub_children(Settings(), workers=3, simulate=None)
    assert [c.name for c in children] == [
        "bridge",
        "worker-1",
        "worker-2",
        "worker-3",
        "worker-side",
        "api",
        "deliver",
        "history",
    ]
    assert children[-1].args == ("history-writer",)
    without_history = Settings(history=HistorySettings(enabled=False))
    assert "history" not in {
        c.name for c in hub_children(without_history, workers=1, simulate=None)
    }
    assert [c.args for c in children][:2] == [("bridge",), ("worker", "--stages", "pipeline")]
    # The side stages (open data, device health) in a process of their own, as a worker.
    assert children[4].args == ("worker", "--stages", "side")
    assert kafka_component("worker-side") == "worker"
    ports = [c.env["CITYHUB_MANAGEMENT__PORT"] for c in children]
    assert len(set(ports)) == len(ports)  # each its own management port
    assert all(c.probed for c in children)
    # The supervisor asks its children on loopback, whatever host its own endpoint is bound to.
    exposed = Settings(management=ManagementSettings(host="0.0.0.0"))
    assert {
        c.env["CITYHUB_MANAGEMENT__HOST"] for c in hub_children(exposed, workers=1, simulate=None)
    } == {"127.0.0.1"}
    levels = hub_children(Settings(), workers=1, simulate=None, log_level="debug")
    assert {c.env["CITYHUB_LOG_LEVEL"] for c in levels} == {"debug"}
    assert all("CITYHUB_LOG_LEVEL" not in c.env for c in children)
    simulated = hub_children(Settings(), workers=1, simulate={"devices": 5, "rate": 2.0})
    (simulator,) = [c for c in simulated if c.name == "simulator"]
    assert simulator.args[:3] == ("simulate", "--devices", "5")
    assert not simulator.probed  # it serves no management endpoint
    assert simulator.after == ("bridge",)  # MQTT drops what no session subscribed to yet


def test_without_side_stages_the_workers_run_the_whole_worker_and_no_side_process() -> None:
    quiet = Settings(
        open_data=OpenDataSettings(enabled=False), health=HealthSettings(enabled=False)
    )
    children = hub_children(quiet, workers=2, simulate=None)
    assert [c.args for c in children if c.name.startswith("worker")] == [("worker",), ("worker",)]


def test_a_crashing_child_waits_longer_each_time_and_a_stable_one_starts_again_at_once() -> None:
    waits = [BACKOFF_START_S]
    for _ in range(10):
        waits.append(next_backoff(waits[-1], ran_for=1.0))
    assert waits[1] == 2 * BACKOFF_START_S
    assert waits[-1] == BACKOFF_CAP_S
    assert next_backoff(BACKOFF_CAP_S, ran_for=STABLE_AFTER_S) == BACKOFF_START_S


def test_metrics_of_every_child_are_one_exposition_labelled_by_process() -> None:
    worker = (
        "# HELP cityhub_normaliser_messages_total Raw messages taken.\n"
        "# TYPE cityhub_normaliser_messages_total counter\n"
        'cityhub_normaliser_messages_total{format="tts-v3"} 5.0\n'
    )
    bridge = (
        "# HELP cityhub_bridge_connected Connected to MQTT.\n"
        "# TYPE cityhub_bridge_connected gauge\n"
        'cityhub_bridge_connected{connector="mqtt"} 1.0\n'
    )
    merged = merge_metrics([("worker-1", worker), ("worker-2", worker), ("bridge", bridge)])
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(merged)
        for s in family.samples
    }
    assert samples == {
        (
            "cityhub_normaliser_messages_total",
            (("format", "tts-v3"), ("process", "worker-1")),
        ): 5.0,
        (
            "cityhub_normaliser_messages_total",
            (("format", "tts-v3"), ("process", "worker-2")),
        ): 5.0,
        ("cityhub_bridge_connected", (("connector", "mqtt"), ("process", "bridge"))): 1.0,
    }
    assert merged.count("# TYPE cityhub_normaliser_messages_total counter") == 1


def test_child_ports_are_distinct_free_and_never_one_the_hub_is_configured_to_serve() -> None:
    # The API's and the supervisor's ports are free until they are bound, so a probe for free
    # ports could return them (it did, in CI: a worker took the API's port).
    hub = Settings(
        http=HttpSettings(port=free_ports(1, avoid=set())[0]),
        management=ManagementSettings(port=free_ports(1, avoid=set())[0]),
    )
    for _ in range(20):
        ports = [
            int(c.env["CITYHUB_MANAGEMENT__PORT"])
            for c in hub_children(hub, workers=8, simulate=None)
        ]
        assert len(set(ports)) == len(ports)
        assert not set(ports) & hub_ports(hub)
    avoided = free_ports(64, avoid=set())
    assert not set(free_ports(64, avoid=set(avoided))) & set(avoided)
