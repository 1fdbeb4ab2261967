"""A personal device and the purpose check in front of its reads, for API tests in this process.

``personal_reads_for_home`` gives tenant ``acme`` a personal device type ``home`` (category
"indoor climate") with device ``h-1``, declares two processing activities (``care``, which admits
that category, and ``parking``, which does not), and returns the ``PersonalReads`` that an API
built over the registry uses, with the processing log it writes to (``RecordedLog``).
"""

from __future__ import annotations

from collections.abc import Sequence

from cityhub.schemas.processing import ActivitySpec
from cityhub.schemas.processing_log import ProcessingLogRecord
from cityhub.schemas.registry import Classification, DeviceSpec, DeviceTypeSpec
from cityhub.streams.privacy.consent_store import InMemoryConsentStore
from cityhub.streams.privacy.gate import PrivacyGate
from cityhub.streams.privacy.keys_store import InMemorySubjectKeyStore
from cityhub.streams.privacy.reads import PersonalReads
from cityhub.streams.privacy.service import ProcessingRegister
from cityhub.streams.privacy.store import InMemoryRegisterStore
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry

CATEGORY = "indoor climate"


class RecordedLog:
    """A processing log that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[ProcessingLogRecord] = []

    async def write(self, records: Sequence[ProcessingLogRecord]) -> None:
        self.records.extend(records)


async def personal_reads_for_home(registry: Registry) -> tuple[PersonalReads, RecordedLog]:
    """Registers the personal device ``acme/h-1`` and the activities ``care`` and ``parking``
    (tenant ``acme`` must exist), and returns the purpose check with its log."""
    system = Principal.system()
    await registry.create_type(
        system,
        "acme",
        DeviceTypeSpec(
            id="home",
            name="Home",
            classification=Classification.PERSONAL,
            personal_data_category=CATEGORY,
        ),
    )
    await registry.create_device(system, "acme", DeviceSpec(id="h-1", name="h", type="home"))
    register_store = InMemoryRegisterStore()
    register = ProcessingRegister(register_store, registry.view, base_uri="urn:x:")
    for slug, category in (("care", CATEGORY), ("parking", "licence plate")):
        statement = {
            "slug": slug,
            "name": slug,
            "purpose": slug,
            "legal_basis": "PublicTask",
            "personal_data_categories": [category],
            "retention": "P1D",
            "controller": "Acme",
        }
        await register.create(system, "acme", ActivitySpec.model_validate(statement))
    gate = PrivacyGate(
        register_store.view, InMemoryConsentStore().view, InMemorySubjectKeyStore().view
    )
    log = RecordedLog()
    return PersonalReads(gate, log, lambda tenant, device: CATEGORY), log
