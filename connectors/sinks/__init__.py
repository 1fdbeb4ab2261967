"""Egress: the delivery kinds, one registry of them, and what they build on (the webhook and
MQTT clients, Standard Webhooks signing, SSRF checks of webhook URLs, the retry schedule).

A delivery kind is a :class:`~cityhub.connectors.sinks.base.DeliverySink` (see ``base.py``).
Every kind comes through the entry-point group ``cityhub.sinks``, the built-in ones too
(``kafka``, ``webhook``, ``sse``, ``mqtt``: ``kinds/``, declared in cityhub's own
``pyproject.toml`` as a plugin declares its own); each entry point names a ``DeliverySink``
instance, or a class or factory that returns one when called with no arguments. Entry points are
read lazily, once, the first time a kind is not found (or when the kinds are listed), so
importing this package loads no kind; a broken plugin is logged and skipped. A test registers a
kind of its own with :func:`register_sink` (and forgets it with :func:`unregister_sink`).

Everything about subscriptions derives from this registry: :func:`subscription_models` are the
subscription spec and record models whose ``delivery`` is any registered kind (the API reads
requests with them and documents each kind from them, the subscriptions store reads records with
them), and the service, the delivery manager and the live streams ask :func:`get_sink` what a
kind checks, how it is served and what it builds.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from cityhub.connectors.plugins import PluginRegistry
from cityhub.connectors.sinks.base import (
    DeliverySink,
    DeliverySpec,
    InvalidDeliverySpec,
    Serving,
    Sink,
    SpecContext,
)
from cityhub.connectors.sinks.errors import UnknownSinkKind
from cityhub.schemas.subscription import (
    KIND_PATTERN,
    Subscription,
    SubscriptionModels,
    SubscriptionSpec,
)
from cityhub.schemas.subscription import subscription_models as _derive_models

__all__ = [
    "ENTRY_POINT_GROUP",
    "DeliverySink",
    "DeliverySpec",
    "InvalidDeliverySpec",
    "Serving",
    "Sink",
    "SpecContext",
    "UnknownSinkKind",
    "get_sink",
    "public_models",
    "register_sink",
    "resolve_spec",
    "sink_kinds",
    "subscription_models",
    "unregister_sink",
    "validate_record",
    "validate_spec",
]

ENTRY_POINT_GROUP = "cityhub.sinks"


def _kind(sink: Any) -> str:
    return str(sink.kind)


def _check_models(sink: DeliverySink) -> None:
    """TypeError unless ``spec_model`` is a ``DeliverySpec`` model and both it and
    ``public_model`` have a ``kind`` field that defaults to ``sink.kind`` (the union's
    discriminator), and ``sink.kind`` is a valid kind name."""
    kind = sink.kind
    if not (isinstance(kind, str) and re.fullmatch(KIND_PATTERN, kind)):
        raise TypeError(f"{sink!r}: kind {kind!r} does not match {KIND_PATTERN}")
    if not (isinstance(sink.spec_model, type) and issubclass(sink.spec_model, DeliverySpec)):
        raise TypeError(f"{sink!r}: spec_model must be a DeliverySpec model")
    for model in (sink.spec_model, sink.public_model):
        field = model.model_fields.get("kind") if issubclass(model, BaseModel) else None
        if field is None or field.default != kind:
            raise TypeError(f"{sink!r}: {model.__name__}.kind must default to {kind!r}")


_registry: PluginRegistry[DeliverySink] = PluginRegistry(
    kind="delivery sink",
    protocol=DeliverySink,
    entry_point_group=ENTRY_POINT_GROUP,
    not_found=UnknownSinkKind,
    key=_kind,
    check=_check_models,
)
_models: SubscriptionModels | None = None
_models_lock = threading.Lock()


def register_sink(sink: DeliverySink, *, replace: bool = False) -> None:
    """Make ``sink`` the kind ``sink.kind``.

    Raises ``ValueError`` if another sink has that kind (unless ``replace``), TypeError if it
    is not a ``DeliverySink`` or its models do not name its kind (``_check_models``). A plugin
    found through an entry point is checked alike, and skipped (logged) when it fails.
    """
    _registry.register(sink, replace=replace)


def unregister_sink(kind: str) -> DeliverySink | None:
    """Forget the kind (for a test that registered its own); returns the sink, or None."""
    return _registry.unregister(kind)


def get_sink(kind: str) -> DeliverySink:
    """The sink of ``kind``; raises :class:`UnknownSinkKind` if none is registered."""
    return _registry.get(kind)


def sink_kinds() -> list[str]:
    """Every registered kind, built in and plugins, sorted."""
    return _registry.names()


def subscription_models() -> SubscriptionModels:
    """The subscription spec and record models whose ``delivery`` is any registered kind.

    Derived once per set of kinds (a registration made later derives them again)."""
    global _models
    kinds = tuple(get_sink(kind).spec_model for kind in sink_kinds())
    with _models_lock:
        if _models is None or _models.kinds != kinds:
            _models = _derive_models(kinds)
        return _models


def public_models() -> dict[str, type[BaseModel]]:
    """The public form's model of every registered kind, by kind (the API's response union)."""
    return {kind: get_sink(kind).public_model for kind in sink_kinds()}


def validate_spec(doc: object) -> SubscriptionSpec:
    """``doc`` as a subscription spec of any registered kind (pydantic's ValidationError)."""
    return subscription_models().spec.model_validate(doc)


def validate_record(doc: Mapping[str, Any] | str | bytes) -> Subscription:
    """A subscription record, from its JSON or its parsed JSON (pydantic's ValidationError)."""
    model = subscription_models().record
    if isinstance(doc, str | bytes):
        return model.model_validate_json(doc)
    return model.model_validate(doc)


def resolve_spec(spec: SubscriptionSpec) -> SubscriptionSpec:
    """``spec`` as the registered kinds read it: as it is when validated by
    :func:`subscription_models`, else validated again from its storage form (a spec built with
    the base model holds a bare ``DeliverySpec``, whose kind's options and checks it gains)."""
    model = subscription_models().spec
    if type(spec) is model:
        return spec
    return model.model_validate(spec.model_dump(mode="json"))
