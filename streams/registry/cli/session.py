"""Running one registry command: a store for the command's life, errors as ``Error: ...``.

Each command starts a store (which reads the registry topic into memory), does one thing as
``Principal.system()``, and stops it. A registry error prints ``Error: ...`` with the fields at
fault and exits 1; so do a spec that does not validate and a broker that cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn, Protocol, TypeVar

import click
from pydantic import ValidationError

from cityhub.schemas.errors import CityhubError
from cityhub.schemas.settings import Settings
from cityhub.streams.compacted import CompactedTopicStore
from cityhub.streams.privacy.keys_store import SubjectKeyStore
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.spec_errors import field_errors
from cityhub.streams.registry.store import RecordStore, RegistryStore
from cityhub.streams.service_errors import FieldError, ServiceError
from cityhub.streams.topic_admin import ensure_topics

T = TypeVar("T")

store_factory: Callable[[Settings], RecordStore] = RegistryStore
REACH_TIMEOUT_S = 10.0
"""How long a command waits for Kafka before it says it cannot reach it (a service waits a
minute: a broker that is starting; a person at a terminal wants the answer sooner)."""
"""How commands get their store; tests of the output swap in an ``InMemoryRegistryStore``."""


class KeyStore(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ensure(self, tenant: str, subject: str) -> object: ...


key_store_factory: Callable[[Settings], KeyStore] = SubjectKeyStore
"""How commands get the data subjects' key store; tests swap in an in-memory one."""


class _KeysOnDemand:
    """The data subjects' key store, started at the first link a command writes: a command that
    links nobody needs neither the keys' topic nor the key-encryption key."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: KeyStore | None = None

    async def ensure(self, tenant: str, subject: str) -> object:
        if self._store is None:
            store = key_store_factory(self._settings)
            await store.start()
            self._store = store
        return await self._store.ensure(tenant, subject)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.stop()


SYSTEM = Principal.system()


def fail(message: str, errors: Sequence[FieldError] = ()) -> NoReturn:
    """Print ``Error: <message>`` and each field at fault to stderr, and exit 1."""
    click.echo(f"Error: {message}", err=True)
    for error in errors:
        click.echo(f"  {error.field}: {error.message}", err=True)
    sys.exit(1)


_SPEC_NAMES = {
    "TenantSpec": "tenant",
    "DeviceTypeSpec": "device type",
    "DeviceSpec": "device",
    "FieldMapping": "field mapping",
    "TokenSpec": "resident token",
    "ActivitySpec": "processing activity",
    "ActivityUpdate": "processing activity",
    "OfferSpec": "offer",
    "ConsentGiveSpec": "consent",
    "ConsentWithdrawSpec": "consent withdrawal",
}


@contextmanager
def reported_errors() -> Iterator[None]:
    """Registry, validation and broker errors as ``Error: ...`` and exit status 1, no traceback."""
    try:
        yield
    except ServiceError as exc:
        fail(exc.detail, exc.errors)
    except ValidationError as exc:
        fail(f"invalid {_SPEC_NAMES.get(exc.title, exc.title)}", field_errors(exc))
    except CityhubError as exc:
        fail(str(exc))
    except (OSError, TimeoutError) as exc:
        fail(f"cannot reach the registry on Kafka ({Settings().kafka.bootstrap_servers}): {exc}")
    except Exception as exc:
        # aiokafka's errors have no common base with ours; they are the broker's, not a bug here.
        if type(exc).__module__.startswith("aiokafka"):
            fail(f"Kafka ({Settings().kafka.bootstrap_servers}): {type(exc).__name__}: {exc}")
        raise


def run(operation: Callable[[Registry], Awaitable[T]]) -> T:
    """Start a store, run ``operation`` on a registry over it, stop the store; errors exit 1.
    A data subject's key is made (by the key store, started then) before a link to it."""

    async def session() -> T:
        settings = Settings()
        store = store_factory(settings)
        if isinstance(store, CompactedTopicStore):  # on Kafka: say soon when it is unreachable
            await ensure_topics(settings, timeout=REACH_TIMEOUT_S, only={store.topic})
        await store.start()
        keys = _KeysOnDemand(settings)
        try:
            return await operation(
                Registry(
                    store,
                    subject_keys=keys,
                    devices_per_tenant=settings.quotas.devices_per_tenant,
                )
            )
        finally:
            await keys.close()
            await store.stop()

    with reported_errors(), _quiet_clients():
        return asyncio.run(session())
    raise AssertionError("unreachable")  # pragma: no cover - reported_errors exits


def run_read(operation: Callable[[Registry], T]) -> T:
    """``run`` for a synchronous read of the view."""

    async def read(registry: Registry) -> T:
        return operation(registry)

    return run(read)


def build_spec(build: Callable[[], T]) -> T:
    """Build a spec from options; validation errors exit 1 before Kafka is touched."""
    with reported_errors():
        return build()
    raise AssertionError("unreachable")  # pragma: no cover - reported_errors exits


_CHATTY_LOGGERS = {
    "aiokafka": logging.CRITICAL,  # connection retries, repeated until the store gives up
    "cityhub.registry": logging.WARNING,
    "cityhub.topics": logging.WARNING,
}


@contextmanager
def _quiet_clients() -> Iterator[None]:
    """Below debug level, keep the Kafka client's retry logs and the store's progress off the
    terminal: one command, one outcome, and its ``Error:`` line says what went wrong."""
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger, quiet in zip(loggers, _CHATTY_LOGGERS.values(), strict=True):
        logger.setLevel(quiet)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
