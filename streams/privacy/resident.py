"""Who a resident is to cityhub: one data subject of one tenant, and nothing more.

A resident authenticates with a token the tenant issued to them (``resident_token``) or, where
the municipality's identity provider is configured, an OpenID Connect bearer token (``oidc``).
Either way the result is a ``Resident``: every service that a resident may call takes it and
acts on exactly ``(tenant, subject)``; anything of another subject or tenant is *not found*.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Resident:
    """An authenticated resident: may see and act on data subject ``subject`` of ``tenant``."""

    tenant: str
    subject: str
    credential: str
    """How they authenticated, for the records it leaves (consent history, processing log):
    ``token:<token id>`` or ``oidc:<issuer>``; never a secret."""
