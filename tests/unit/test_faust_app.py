"""The app factory builds without side effects beyond the app; faust's own CLI finds it."""

import importlib

from cityhub.schemas.settings import Settings
from cityhub.streams.app import create_app
from cityhub.streams.registry.store import InMemoryRegistryStore


def test_factory_declares_the_normaliser_and_its_durable_producer() -> None:
    app = create_app(Settings(), InMemoryRegistryStore())
    assert "normaliser" in {agent.name.rsplit(".", 1)[-1] for agent in app.agents.values()}
    assert app.conf.producer_acks == -1
    assert app.conf.broker_consumer[0].scheme == "cityhub"  # the idempotent transport
    assert app.conf.consumer_auto_offset_reset == "earliest"


def test_the_module_for_faust_cli_exposes_an_app() -> None:
    module = importlib.import_module("cityhub.streams.faust_app")
    assert module.app.conf.id == Settings().worker.app_id
