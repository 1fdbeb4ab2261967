"""``cityhub stack``: the local single-node Kafka (KRaft), Mosquitto and PostgreSQL."""

from __future__ import annotations

import sys
from typing import Any

import click

from cityhub.schemas.settings import Settings
from cityhub.streams.cli_async import run_async


@click.group()
def stack() -> None:
    """The local single-node Kafka (KRaft), Mosquitto and PostgreSQL, on 127.0.0.1."""


_SECURE = click.option(
    "--secure",
    is_flag=True,
    help="The secure stack: Kafka SASL_SSL with users and ACLs, Mosquitto TLS with users "
    "(also CITYHUB_STACK__SECURE=true); give it its own CITYHUB_STACK__STATE_DIR and ports "
    "beside a plain one.",
)


def _stack_settings(secure: bool) -> Settings:
    settings = Settings()
    if secure and not settings.stack.secure:
        stack = settings.stack.model_copy(update={"secure": True})
        settings = settings.model_copy(update={"stack": stack})
    return settings


_ONLY = click.option(
    "--only",
    "only",
    multiple=True,
    type=click.Choice(["kafka", "mosquitto", "postgres"]),
    help="Only this service (repeatable); default: all.",
)


@stack.command("up")
@_ONLY
@_SECURE
def stack_up_cmd(only: tuple[str, ...], secure: bool) -> None:
    """Install what is missing, start the services, wait until they serve, create the topics."""
    from cityhub.streams.devtools.stack import stack_client_settings, stack_up
    from cityhub.streams.topic_admin import ensure_topics

    settings = _stack_settings(secure)

    async def up() -> Any:
        status = await stack_up(settings, only=only or None)
        if not only or "kafka" in only:
            await ensure_topics(stack_client_settings(settings))
        return status

    status = run_async(up())
    click.echo(status.render())


@stack.command("down")
@click.option("--purge", is_flag=True, help="Also delete the services' data.")
@_ONLY
def stack_down_cmd(purge: bool, only: tuple[str, ...]) -> None:
    """Stop the services (by pid)."""
    from cityhub.streams.devtools.stack import stack_down

    run_async(stack_down(Settings(), purge=purge, only=only or None))


@stack.command("status")
@_SECURE
def stack_status_cmd(secure: bool) -> None:
    """Say whether each service runs and serves; exit 1 if one does not."""
    from cityhub.streams.devtools.stack import stack_status
    from cityhub.streams.devtools.stack.lifecycle import started_secure

    settings = _stack_settings(secure)
    status = run_async(stack_status(settings))
    click.echo(status.render())
    if not status.all_serving:
        if not settings.stack.secure and started_secure(settings):
            click.echo(
                "this stack was started with --secure: ask `cityhub stack status --secure` "
                "(a plain status probes plain protocols)"
            )
        sys.exit(1)
