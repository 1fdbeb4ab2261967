"""The rule that a network server's message must not contradict itself about whom it is from.

The Things Stack and ChirpStack name the device and its application twice: in the MQTT topic
(which the broker's ACL ties to the publisher) and in the payload (which the publisher writes
freely). A message in which the two disagree is either a bug or a spoof, and the hub cannot tell
which of the two names to believe, so it believes neither: the message is refused with
``identity_mismatch``. A payload that leaves a field out is not a disagreement: the topic's
value stands.
"""

from __future__ import annotations

from cityhub.connectors.formats.jsondoc import shown
from cityhub.schemas.errors import IdentityMismatch


def require_agreement(what: str, topic_value: str, path: str, payload_value: str | None) -> None:
    """Raise ``IdentityMismatch`` when the payload's ``path`` names another ``what`` than the
    topic does. ``payload_value`` None (the payload has no such field) always agrees. Both values
    appear in the detail, each cut to a short repr: they come from outside."""
    if payload_value is not None and payload_value != topic_value:
        raise IdentityMismatch(
            f"the topic's {what} {shown(topic_value)} differs from {path} "
            f"{shown(payload_value)}: a message must name one {what}"
        )
