"""A subscription's secrets apart from its record: the subscription-secrets topic's form.

The subscriptions topic is read by the worker (routing needs the filters), so the records written
there hold no secret: :func:`split_secrets` parts a record into the record without its secrets
(the delivery keeps a fingerprint) and a :class:`SubscriptionSecrets` for the compacted
``<prefix>.subscription-secrets`` topic, which only the API (which writes both) and the delivery
(which signs) may read; :func:`join_secrets` puts them back together for the sink.

Pure: pydantic models and functions, no I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer

from cityhub.schemas.subscription import Subscription, record_key, subscription_key


class SubscriptionSecrets(BaseModel):
    """The secrets of one subscription's delivery, as the compacted subscription-secrets topic
    carries them (key: ``subscription_key``, as the subscription's record; a tombstone when the
    subscription is deleted). The JSON dump holds them in clear: it is the storage form, for
    that topic alone; ``repr`` masks them. ``version`` 1 is this form; a reader refuses a
    version it does not know (a malformed record: logged, counted, skipped)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["subscription_secrets"] = "subscription_secrets"
    version: Literal[1] = 1
    tenant: str
    id: str
    secrets: tuple[SecretStr, ...] = Field(min_length=1)

    @field_serializer("secrets", when_used="json")
    def _reveal(self, value: tuple[SecretStr, ...]) -> list[str]:
        return [secret.get_secret_value() for secret in value]

    @property
    def key(self) -> str:
        return subscription_key(self.tenant, self.id)

    def values(self) -> tuple[str, ...]:
        """The secrets in clear, for ``join_secrets``."""
        return tuple(secret.get_secret_value() for secret in self.secrets)


def split_secrets(record: Subscription) -> tuple[Subscription, SubscriptionSecrets | None]:
    """``record`` as the subscriptions topic keeps it, and its secrets for the secrets topic
    (None when its delivery holds none, or is already without them)."""
    secrets = record.delivery.secrets()
    if not secrets:
        return record, None
    stripped = record.without_secrets()
    if stripped.delivery.secrets():  # a kind that cannot keep them apart: inline, as before
        return record, None
    return stripped, SubscriptionSecrets(
        tenant=record.tenant, id=record.id, secrets=tuple(SecretStr(s) for s in secrets)
    )


def join_secrets(record: Subscription, secrets: SubscriptionSecrets | None) -> Subscription | None:
    """``record`` as its sink needs it: itself when its delivery awaits no secret (a kind
    without one, or a record from before the split with its secret inline); joined with
    ``secrets`` when they are its own (same key, the fingerprints the record keeps); None while
    they are not there (yet): the record's delivery must wait, not go out unsigned."""
    if not record.delivery.awaits_secrets():
        return record
    if secrets is None or secrets.key != record_key(record):
        return None
    delivery = record.delivery.with_secrets(secrets.values())
    if delivery is None:
        return None
    return record.model_copy(update={"delivery": delivery})
