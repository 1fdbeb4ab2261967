"""``Settings.console.oidc``: operators sign in to the console with the municipality's OpenID
Connect provider (authorization code flow with PKCE; ``docs/console.md``). Off unless
``issuer`` is set."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _secure(url: str | None, name: str) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    loopback = parts.hostname in _LOOPBACK
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValueError(f"console.oidc.{name} must be https (http only on loopback)")


class ConsoleOidcSettings(BaseModel):
    """Where operators sign in, and who counts as one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str | None = Field(default=None, max_length=500)
    """The provider's issuer (the ID token's ``iss``, exactly); None: OIDC sign-in is off."""
    client_id: str | None = Field(default=None, min_length=1, max_length=200)
    """cityhub console's client id at the provider (the ID token's ``aud``)."""
    client_secret: SecretStr | None = None
    """The client's secret, for a confidential client; None: a public client (PKCE only)."""
    authorization_endpoint: str | None = Field(default=None, max_length=500)
    token_endpoint: str | None = Field(default=None, max_length=500)
    jwks_url: str | None = Field(default=None, max_length=500)
    redirect_url: str | None = Field(default=None, max_length=500)
    """The callback as the provider knows it (``https://hub.example/console/oidc/callback``);
    None: made from the request (scheme and host as the API sees them)."""
    scopes: tuple[str, ...] = ("openid", "profile")
    tenant: str | None = None
    """Every operator of this provider works in this tenant; or ``tenant_claim``."""
    tenant_claim: str | None = Field(default=None, min_length=1, max_length=64)
    operator_claim: str = Field(default="groups", min_length=1, max_length=64)
    """The claim (a string or a list of strings) that must hold ``operator_value``."""
    operator_value: str = Field(default="cityhub-operators", min_length=1, max_length=200)
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    max_response_bytes: int = Field(default=256 * 1024, ge=4096, le=4 * 1024 * 1024)

    @property
    def enabled(self) -> bool:
        return self.issuer is not None

    @model_validator(mode="after")
    def _complete(self) -> ConsoleOidcSettings:
        if self.issuer is None:
            return self
        missing = [
            name
            for name in ("client_id", "authorization_endpoint", "token_endpoint", "jwks_url")
            if getattr(self, name) is None
        ]
        if missing:
            raise ValueError(f"console.oidc.issuer needs console.oidc.{', '.join(missing)} too")
        if (self.tenant is None) == (self.tenant_claim is None):
            raise ValueError("console.oidc needs exactly one of tenant and tenant_claim")
        if "openid" not in self.scopes:
            raise ValueError("console.oidc.scopes must include openid")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_url", "redirect_url"):
            _secure(getattr(self, name), name)
        return self
