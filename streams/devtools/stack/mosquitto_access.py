"""Who may use the secure stack's Mosquitto, and over what: its users, its ACL file, its two TLS
listeners, and the settings the hub connects with.

Pure: names, file text and settings from settings and paths; no disk, no broker. The I/O
(generated passwords, ``mosquitto_passwd``, the files in the state dir) is in
``cityhub.streams.devtools.stack.mosquitto``.

The users (``secure_users``), each with a generated password:

- ``cityhub-bridge`` (``mqtt.username``): reads every ingest topic, ``$SYS/#`` (the broker's
  figures, exported as metrics from the bridge process) and the readiness probe's
  ``cityhub/_health/#``;
- ``cityhub-delivery`` (``mqtt.delivery_username``): writes the MQTT deliveries under
  ``delivery.mqtt_topic_root`` and nothing else;
- per tenant of ``stack.mqtt_tenants``: ``sub-<tenant>`` reads that tenant's delivery subtree
  ``<root>/<tenant>/#``; ``demo@<tenant>`` is a device publisher in the shape The Things Stack's
  MQTT integration logs in with (``<application>@<tenant>``) and writes only
  ``v3/demo@<tenant>/devices/+/up``, the tenant's own ingest subtree.

Two listeners (``per_listener_settings true``), each with a password file of its own and the one
ACL: the hub's users (bridge, delivery) log in on ``stack.mqtt_hub_tls_port`` only, the tenants'
on ``stack.mqtt_tls_port`` only, where ``use_username_as_clientid`` makes each client's id its
user name. Mosquitto lets any user choose any client id, so on a shared listener a tenant's
CONNECT with the bridge's id would end the bridge's connection and, with a clean start, discard
its persistent session and what was queued for it.

Ingest is granted by pattern (``v3/%u/...``, ``application/%u/...``, ``cityhub/ingest/%u``), so a
user named ``app@tenant``, a ChirpStack application id or a device id needs no ACL lines of its
own: adding a user to the password file is enough.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Literal

from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import StackSettings

ACL_TEMPLATE = Path("mosquitto") / "acl.secure.template"
BRIDGE_USER = "cityhub-bridge"
DELIVERY_USER = "cityhub-delivery"
DEVICE_APPLICATION = "demo"
"""The TTS application id of the secure stack's per-tenant device user (``demo@<tenant>``)."""
TLS_VERSION = "tlsv1.2"
"""The oldest TLS version the listener accepts (Mosquitto 2.0's default too; said explicitly)."""

Role = Literal["bridge", "delivery", "subscriber", "device"]
HUB_ROLES: tuple[Role, ...] = ("bridge", "delivery")
"""The roles of the hub's own users: they log in on the hub's listener, nobody else does."""


@dataclass(frozen=True)
class MqttUser:
    """One user of the secure broker's password file."""

    name: str
    role: Role
    tenant: str | None = None

    @property
    def hub(self) -> bool:
        """One of the hub's own users (its listener and password file), not a tenant's."""
        return self.role in HUB_ROLES


@dataclass(frozen=True)
class TlsFiles:
    """The broker's certificate chain: the CA its clients trust, its certificate and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class SecureFiles:
    """Where the secure broker's access files are (absolute paths)."""

    password_file: Path
    """The tenants' listener's users (``sub-*``, ``demo@*``, and any you add)."""
    hub_password_file: Path
    """The hub's listener's users (``cityhub-bridge``, ``cityhub-delivery``) only."""
    acl_file: Path
    tls: TlsFiles


def subscriber_user(tenant: str) -> str:
    return f"sub-{tenant}"


def device_user(tenant: str) -> str:
    return f"{DEVICE_APPLICATION}@{tenant}"


def device_topic(tenant: str, device_id: str) -> str:
    """Where ``device_user(tenant)`` may publish an uplink of ``device_id`` (TTS v3's topic)."""
    return f"v3/{device_user(tenant)}/devices/{device_id}/up"


def secure_users(stack: StackSettings) -> tuple[MqttUser, ...]:
    """Every user the secure stack makes a password for, the hub's first."""
    users = [MqttUser(BRIDGE_USER, "bridge"), MqttUser(DELIVERY_USER, "delivery")]
    for tenant in dict.fromkeys(stack.mqtt_tenants):
        users.append(MqttUser(subscriber_user(tenant), "subscriber", tenant))
        users.append(MqttUser(device_user(tenant), "device", tenant))
    return tuple(users)


INGEST_TREES = ("v3/#", "application/#", "cityhub/ingest/#")
"""The topic trees the ingest patterns grant under a user's own name: denied to every user that
may not publish uplinks (the delivery's and the subscribers')."""
_DENIALS = "\n".join(f"topic deny {tree}" for tree in INGEST_TREES)


def _tenant_blocks(users: Iterable[MqttUser], delivery_root: str) -> str:
    blocks = [
        f"user {user.name}\ntopic read {delivery_root}/{user.tenant}/#\n{_DENIALS}"
        for user in users
        if user.role == "subscriber"
    ]
    return "\n\n".join(blocks)


def render_acl(template: str, stack: StackSettings, *, delivery_root: str) -> str:
    """The ACL file: the hub's two users, a read-only block per tenant's subscriber, and the
    ingest patterns (see the module docstring). ``delivery_root`` is
    ``delivery.mqtt_topic_root``; it may not hold wildcards (a user could then read more)."""
    if not delivery_root or any(c in delivery_root for c in "+#\n") or delivery_root[0] == "$":
        raise StackError(f"delivery.mqtt_topic_root={delivery_root!r} cannot root an ACL subtree")
    values = {
        "bridge_user": BRIDGE_USER,
        "delivery_user": DELIVERY_USER,
        "delivery_root": delivery_root.rstrip("/"),
        "tenant_subscribers": _tenant_blocks(secure_users(stack), delivery_root.rstrip("/")),
        "ingest_denials": _DENIALS,
    }
    try:
        return Template(template).substitute(values)
    except (KeyError, ValueError) as exc:
        raise StackError(
            f"template {ACL_TEMPLATE} has a placeholder cityhub does not fill: {exc}"
        ) from exc


def listener_lines(stack: StackSettings, secure: SecureFiles | None) -> str:
    """Mosquitto's listeners: plain TCP on ``mqtt_port``, or (secure) TLS only, on
    ``mqtt_tls_port`` for the tenants and on ``mqtt_hub_tls_port`` for the hub, each with its own
    users (see the module docstring). Loopback either way. ``per_listener_settings`` comes first:
    it must precede every security option."""
    if secure is None:
        return f"listener {stack.mqtt_port} 127.0.0.1"
    tenants = _tls_listener(stack.mqtt_tls_port, secure, secure.password_file)
    # A tenant's client id is its user name: none can take the bridge's (or another's) id.
    tenants.append("use_username_as_clientid true")
    hub = _tls_listener(stack.mqtt_hub_tls_port, secure, secure.hub_password_file)
    return "\n".join(
        [
            "per_listener_settings true",
            "",
            "# tenants and network servers",
            *tenants,
            "",
            "# the hub's own users (bridge, deliveries)",
            *hub,
        ]
    )


def _tls_listener(port: int, secure: SecureFiles, password_file: Path) -> list[str]:
    """One TLS listener block with the stack's certificate: only the users of
    ``password_file``, each limited by the ACL file."""
    tls = secure.tls
    return [
        f"listener {port} 127.0.0.1",
        f"cafile {tls.ca_cert}",
        f"certfile {tls.server_cert}",
        f"keyfile {tls.server_key}",
        f"tls_version {TLS_VERSION}",
        # Clients prove who they are by password; a client certificate is not asked for.
        "require_certificate false",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {secure.acl_file}",
    ]


def password_file_lines(passwords: Mapping[str, str]) -> str:
    """The password file in clear (``user:password`` per line), for ``mosquitto_passwd -U`` to
    hash in place. Refuses names Mosquitto cannot read back (a ``:`` or a line break)."""
    for user, password in passwords.items():
        if not user or any(c in user for c in ":\n\r") or any(c in password for c in "\n\r"):
            raise StackError(f"MQTT user {user!r}: no ':' or line break in a name or password")
    return "".join(f"{user}:{password}\n" for user, password in passwords.items())


def hub_environment(
    stack: StackSettings, ca_cert: Path, password_files: Mapping[str, Path]
) -> dict[str, str]:
    """The hub's MQTT settings for the secure broker, as ``CITYHUB_MQTT__*`` variables: TLS to
    the hub's listener, 127.0.0.1:``mqtt_hub_tls_port``, trusting the stack's CA, the bridge's
    and the deliveries' users.
    The passwords stay in their files (``password_files``, by user); the variables name them."""
    return {
        "CITYHUB_MQTT__HOST": "127.0.0.1",
        "CITYHUB_MQTT__PORT": str(stack.mqtt_hub_tls_port),
        "CITYHUB_MQTT__TLS": "true",
        "CITYHUB_MQTT__TLS_CA_FILE": str(ca_cert),
        "CITYHUB_MQTT__USERNAME": BRIDGE_USER,
        "CITYHUB_MQTT__PASSWORD_FILE": str(password_files[BRIDGE_USER]),
        "CITYHUB_MQTT__DELIVERY_USERNAME": DELIVERY_USER,
        "CITYHUB_MQTT__DELIVERY_PASSWORD_FILE": str(password_files[DELIVERY_USER]),
    }
