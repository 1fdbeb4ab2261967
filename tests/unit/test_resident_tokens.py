"""Residents' access tokens (issue 10, item 5): issued by the tenant for a linked data subject
only, shown once and kept as a fingerprint, listed without secrets, revoked and expired tokens
authenticate nobody, the tenant boundary (another tenant's admin included), the view's handling
of hostile topic records, and erasure's tombstones. Over in-memory stores, no broker."""

from __future__ import annotations

import json

import pytest

from cityhub.schemas.registry import (
    Classification,
    DeviceSpec,
    DeviceTypeSpec,
    Role,
    TenantSpec,
    fingerprint,
)
from cityhub.streams.privacy.resident_token_service import (
    MAX_ACTIVE_TOKENS,
    ResidentTokens,
    TokenSpec,
    looks_like_token,
)
from cityhub.streams.privacy.resident_tokens import (
    InMemoryResidentTokenStore,
    ResidentTokenView,
    record_key,
)
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore
from cityhub.streams.service_errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Unauthenticated,
)

SYSTEM = Principal.system()
SUBJECT = "res-7f3a9c21"
OPERATOR = Principal(key_id="op", tenant="acme", role=Role.OPERATOR)
ADMIN = Principal(key_id="ad", tenant="acme", role=Role.ADMIN)
SUBSCRIBER = Principal(key_id="su", tenant="acme", role=Role.SUBSCRIBER)
OTHER_ADMIN = Principal(key_id="ob", tenant="beta", role=Role.ADMIN)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def registry_with_subject() -> Registry:
    registry = Registry(InMemoryRegistryStore())
    for tenant in ("acme", "beta"):
        await registry.create_tenant(SYSTEM, TenantSpec(id=tenant, name=tenant))
        await registry.create_type(
            SYSTEM,
            tenant,
            DeviceTypeSpec(id="air", name="Air", classification=Classification.PERSONAL),
        )
    await registry.create_device(
        SYSTEM, "acme", DeviceSpec(id="a-1", name="A", type="air", data_subject=SUBJECT)
    )
    return registry


@pytest.fixture
async def tokens() -> ResidentTokens:
    registry = await registry_with_subject()
    return ResidentTokens(InMemoryResidentTokenStore(), registry.view, clock=Clock())


async def test_a_token_is_shown_once_and_kept_as_a_fingerprint(tokens: ResidentTokens) -> None:
    token, secret = await tokens.issue(OPERATOR, "acme", SUBJECT, TokenSpec(name="counter"))
    assert looks_like_token(secret)
    assert secret.startswith(f"chr_{token.id}_")
    assert token.secret_sha256 == fingerprint(secret)
    assert token.created_by == "op"
    resident = tokens.authenticate(secret)
    assert (resident.tenant, resident.subject) == ("acme", SUBJECT)
    assert resident.credential == f"token:{token.id}"
    listed = tokens.list(ADMIN, "acme", SUBJECT)
    assert [t.id for t in listed] == [token.id]
    assert "secret_sha256" not in listed[0].public()
    assert secret not in json.dumps(listed[0].public())
    assert SUBJECT not in repr(token)


async def test_the_topic_holds_no_secret() -> None:
    store = InMemoryResidentTokenStore()
    registry = await registry_with_subject()
    service = ResidentTokens(store, registry.view)
    _, secret = await service.issue(OPERATOR, "acme", SUBJECT, TokenSpec())
    assert all(secret.encode() not in (value or b"") for _, value in store.log)


async def test_only_a_linked_subject_gets_a_token(tokens: ResidentTokens) -> None:
    with pytest.raises(NotFound) as caught:
        await tokens.issue(OPERATOR, "acme", "res-unlinked-01", TokenSpec())
    assert "res-unlinked-01" not in caught.value.detail
    # acme's subject is not beta's: subjects are per tenant.
    beta = Principal(key_id="b", tenant="beta", role=Role.OPERATOR)
    with pytest.raises(NotFound):
        await tokens.issue(beta, "beta", SUBJECT, TokenSpec())


@pytest.mark.parametrize("hostile", ["123456789", "jan jansen", "a@b.nl", "x" * 65, "../../x"])
async def test_a_hostile_subject_is_refused_without_being_repeated(
    tokens: ResidentTokens, hostile: str
) -> None:
    with pytest.raises(Invalid) as caught:
        await tokens.issue(OPERATOR, "acme", hostile, TokenSpec())
    assert hostile not in caught.value.detail
    assert [e.field for e in caught.value.errors] == ["subject"]


async def test_the_tenant_boundary(tokens: ResidentTokens) -> None:
    token, _ = await tokens.issue(OPERATOR, "acme", SUBJECT, TokenSpec())
    with pytest.raises(Forbidden):
        await tokens.issue(SUBSCRIBER, "acme", SUBJECT, TokenSpec())
    with pytest.raises(Forbidden):
        tokens.list(SUBSCRIBER, "acme", SUBJECT)
    for other in (OTHER_ADMIN, Principal(key_id="x", tenant="beta", role=Role.OPERATOR)):
        with pytest.raises(NotFound):
            await tokens.issue(other, "acme", SUBJECT, TokenSpec())
        with pytest.raises(NotFound):
            tokens.list(other, "acme", SUBJECT)
        with pytest.raises(NotFound):
            await tokens.revoke(other, "acme", SUBJECT, token.id)
    with pytest.raises(NotFound):
        tokens.list(SYSTEM, "nowhere", SUBJECT)
    # Revoking through another subject's path finds nothing.
    with pytest.raises(NotFound):
        await tokens.revoke(OPERATOR, "acme", "res-other-0001", token.id)
    assert tokens.view.by_id(token.id) is not None
    assert tokens.view.by_id(token.id).revoked_at is None  # type: ignore[union-attr]


async def test_a_revoked_token_authenticates_nobody(tokens: ResidentTokens) -> None:
    token, secret = await tokens.issue(OPERATOR, "acme", SUBJECT, TokenSpec())
    revoked = await tokens.revoke(ADMIN, "acme", SUBJECT, token.id)
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthenticated) as caught:
        tokens.authenticate(secret)
    assert secret not in caught.value.detail
    again = await tokens.revoke(OPERATOR, "acme", SUBJECT, token.id)
    assert again == revoked
    assert [t.revoked_at for t in tokens.list(OPERATOR, "acme", SUBJECT)] == [revoked.revoked_at]


async def test_an_expired_token_authenticates_nobody() -> None:
    registry = await registry_with_subject()
    clock = Clock()
    tokens = ResidentTokens(InMemoryResidentTokenStore(), registry.view, clock=clock)
    _, secret = await tokens.issue(OPERATOR, "acme", SUBJECT, TokenSpec(valid_days=1))
    clock.now += 86_399
    assert tokens.authenticate(secret).subject == SUBJECT
    clock.now += 2
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.authenticate(secret)


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "chr_",
        "chr_0123456789abcdef",
        "chr_0123456789abcdef_",
        "chr_0123456789ABCDEF_x",
        "chk_0123456789abcdef_secret",
        "chr_../../_x",
    ],
)
async def test_malformed_and_unknown_secrets(tokens: ResidentTokens, presented: str) -> None:
    with pytest.raises(Unauthenticated):
        tokens.authenticate(presented)


async def test_a_right_id_with_a_wrong_secret_is_refused(tokens: ResidentTokens) -> None:
    token, secret = await tokens.issue(OPERATOR, "acme", SUBJECT, TokenSpec())
    with pytest.raises(Unauthenticated, match="unknown"):
        tokens.authenticate(f"chr_{token.id}_{'A' * 43}")
    assert tokens.authenticate(secret).subject == SUBJECT


async def test_tokens_per_subject_are_bounded(tokens: ResidentTokens) -> None:
    issued = [await tokens.issue(OPERATOR, "acme", SUBJECT, TokenSpec()) for _ in range(10)]
    assert len(issued) == MAX_ACTIVE_TOKENS
    with pytest.raises(Conflict):
        await tokens.issue(OPERATOR, "acme", SUBJECT, TokenSpec())
    await tokens.revoke(OPERATOR, "acme", SUBJECT, issued[0][0].id)
    await tokens.issue(OPERATOR, "acme", SUBJECT, TokenSpec())


async def test_erasure_removes_every_token_of_the_subject() -> None:
    store = InMemoryResidentTokenStore()
    registry = await registry_with_subject()
    tokens = ResidentTokens(store, registry.view)
    secrets = [(await tokens.issue(OPERATOR, "acme", SUBJECT, TokenSpec()))[1] for _ in range(3)]
    assert await tokens.delete_all("acme", SUBJECT) == 3
    assert tokens.view.count() == 0
    assert tokens.list(SYSTEM, "acme", SUBJECT) == []
    for secret in secrets:
        with pytest.raises(Unauthenticated):
            tokens.authenticate(secret)
    assert await tokens.delete_all("acme", SUBJECT) == 0
    # The last record of every token's key is a tombstone: compaction drops the pseudonym.
    last = dict(store.log)
    assert all(value is None for value in last.values())


def test_the_view_skips_hostile_records_and_never_moves_a_token() -> None:
    view = ResidentTokenView()
    good = {
        "kind": "resident_token",
        "id": "0123456789abcdef",
        "tenant": "acme",
        "subject": SUBJECT,
        "secret_sha256": "0" * 64,
        "created_at": "2026-12-01T00:00:00Z",
        "created_by": "system",
    }
    key = "resident_token/acme/0123456789abcdef"
    view.apply(key, json.dumps(good).encode(), 0)
    moved = dict(good, subject="res-someone-else")
    view.apply(key, json.dumps(moved).encode(), 1)
    view.apply("resident_token/beta/0123456789abcdef", json.dumps(good).encode(), 2)
    view.apply(key, b"not json", 3)
    view.apply(key, json.dumps(dict(good, subject="123456789")).encode(), 4)
    view.apply(key, json.dumps(dict(good, extra=1)).encode(), 5)
    view.apply(key, json.dumps([good]).encode(), 6)
    assert view.malformed == 6
    assert view.offset == 6
    found = view.by_id("0123456789abcdef")
    assert found is not None
    assert found.subject == SUBJECT
    view.apply("resident_token/acme/ffffffffffffffff", None, 7)  # unknown tombstone: nothing
    view.apply(key, None, 8)
    assert view.count() == 0
    assert view.of_subject("acme", SUBJECT) == []
    assert record_key(found) == key
