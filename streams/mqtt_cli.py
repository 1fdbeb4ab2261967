"""``cityhub mqtt``: the hub's MQTT sessions on its broker."""

from __future__ import annotations

import asyncio

import click

from cityhub.schemas.errors import CityhubError
from cityhub.schemas.settings import Settings


@click.group()
def mqtt() -> None:
    """The hub's MQTT sessions on its broker."""


@mqtt.command("end-session")
@click.argument("client_id")
def mqtt_end_session_cmd(client_id: str) -> None:
    """Make the broker forget CLIENT_ID's persistent session and what it queues for it: for a
    bridge taken out of service or renamed (its session would collect a copy of every message
    for its expiry). Logs in with the hub's MQTT settings (TLS, user).

    Stop the hub that uses CLIENT_ID first: a running bridge with it is disconnected, finds its
    session gone when it reconnects, and what was published in between is lost."""
    from cityhub.connectors.mqtt.session import end_session

    settings = Settings()
    broker = f"{settings.mqtt.host}:{settings.mqtt.port}"
    try:
        had = asyncio.run(end_session(settings.mqtt.model_copy(update={"client_id": client_id})))
    except (CityhubError, OSError) as exc:
        raise click.ClickException(f"could not end the session of {client_id}: {exc}") from exc
    if had:
        click.echo(f"ended the session of {client_id} on {broker}")
    else:  # nothing to do is no failure: the command can be run again safely
        click.echo(f"{broker} had no session of {client_id}: nothing to end")
