"""Shared set-up of the consent tests (no tests here): the in-memory registry of the API tests
(tenants acme and beta, keys of every role) with a personal device type in each, a device of
acme linked to ``SUBJECT``, and acme's processing activities: ``energy`` on consent, ``parking``
on a public task, ``ended`` on consent but over, and ``later`` on consent but not yet valid."""

from __future__ import annotations

from dataclasses import dataclass

from cityhub.schemas.processing import ActivitySpec
from cityhub.schemas.registry import Classification, DeviceSpec, DeviceTypeSpec
from cityhub.streams.privacy.consent_service import Consents
from cityhub.streams.privacy.consent_store import InMemoryConsentStore
from cityhub.streams.privacy.service import ProcessingRegister
from cityhub.streams.privacy.store import InMemoryRegisterStore
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import InMemoryRegistryStore

from .test_api_support import seed

SYSTEM = Principal.system()
SUBJECT = "res-7f3a9c21"
UNLINKED = "res-0000aaaa"
"""A well-formed pseudonym no device of acme is linked to."""
BETA_SUBJECT = "res-beta0001"


def activity(slug: str, basis: str = "Consent", **fields: str) -> ActivitySpec:
    doc = {
        "slug": slug,
        "name": f"Activity {slug}",
        "purpose": "Advise residents on their energy use.",
        "legal_basis": basis,
        "personal_data_categories": ["energy use", "indoor air"],
        "retention": "P1Y",
        "controller": "Municipality of Example",
        "recipients": ["Energy desk"],
        "valid_from": "2026-01-01T00:00:00Z",
        **fields,
    }
    return ActivitySpec.model_validate(doc)


@dataclass
class World:
    registry: Registry
    register: ProcessingRegister
    store: InMemoryConsentStore
    consents: Consents
    keys: dict[str, str]
    """Secrets by name: admin, op_a, op_b, sub_a, sub_b."""

    def principal(self, name: str) -> Principal:
        key_id = self.keys[name].removeprefix("chk_").split("_", 1)[0]
        key = self.registry.view.api_key(key_id)
        assert key is not None
        return Principal(key_id=key.id, tenant=key.tenant, role=key.role)


async def build_world(registry: Registry | None = None) -> World:
    if registry is None:
        registry = Registry(InMemoryRegistryStore())
    keys = await seed(registry)
    for tenant, device, subject in (("acme", "air-1", SUBJECT), ("beta", "air-b", BETA_SUBJECT)):
        await registry.create_type(
            SYSTEM,
            tenant,
            DeviceTypeSpec(id="air", name="Air", classification=Classification.PERSONAL),
        )
        await registry.create_device(
            SYSTEM, tenant, DeviceSpec(id=device, name="Air", type="air", data_subject=subject)
        )
    register = ProcessingRegister(
        InMemoryRegisterStore(), registry.view, base_uri="urn:cityhub:processing-activity:"
    )
    await register.create(SYSTEM, "acme", activity("energy"))
    await register.create(SYSTEM, "acme", activity("parking", "PublicTask"))
    await register.create(SYSTEM, "acme", activity("ended", valid_to="2026-02-01T00:00:00Z"))
    await register.create(SYSTEM, "acme", activity("later", valid_from="2099-01-01T00:00:00Z"))
    await register.create(SYSTEM, "beta", activity("energy"))
    store = InMemoryConsentStore()
    consents = Consents(store, register.view, registry.view)
    return World(registry, register, store, consents, keys)
