"""Running a command's coroutine: what every ``cityhub`` command that talks to a service does."""

from __future__ import annotations

import asyncio
import errno
import signal
from collections.abc import Coroutine, Mapping
from typing import Any

import click

from cityhub.schemas.errors import CityhubError


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine; Ctrl-C or SIGTERM cancel it cleanly; CityhubErrors exit with their text."""

    async def main() -> Any:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return None

    try:
        return asyncio.run(main())
    except CityhubError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        # A port another process holds (a second hub with the same ports) is the operator's to
        # fix, in one line: "error while attempting to bind on address (...): address already
        # in use". Any other OSError is a fault of ours and keeps its traceback.
        if exc.errno not in _BIND_ERRORS:
            raise
        raise click.ClickException(str(exc)) from exc


_BIND_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL})


class CityhubGroup(click.Group):
    """A command group whose commands' CityhubErrors (a port taken, settings that cannot work)
    end the command with their text in one line, as ``run_async`` does for coroutines."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CityhubError as exc:
            raise click.ClickException(str(exc)) from exc


SERVICE_COMMANDS = frozenset(
    {"run", "api", "bridge", "worker", "deliver", "history", "history-writer", "simulate", "stack"}
)
"""Commands that run a service (or the stack) and tell what they do as they go, at ``info``."""


def command_log_level(command: str | None, configured: str, environ: Mapping[str, str]) -> str:
    """The log level of ``command``: the configured one for a service, and for a one-shot
    command (``devices list``, ``tail``) ``warning`` unless CITYHUB_LOG_LEVEL asks otherwise,
    so that its output is not interleaved with the Kafka clients' and stores' progress lines."""
    if command in SERVICE_COMMANDS or "CITYHUB_LOG_LEVEL" in environ:
        return configured
    return "warning"
