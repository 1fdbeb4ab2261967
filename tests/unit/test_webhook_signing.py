"""Standard Webhooks signatures, checked by an independent verifier (the ``standardwebhooks``
reference library from PyPI) as well as by our own ``verify``."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from cityhub.connectors.sinks.webhook_signing import (
    InvalidWebhookSignature,
    generate_webhook_secret,
    sign,
    signature,
    verify,
)

# The example secret of the Standard Webhooks libraries' own tests.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODIES = [
    b'{"type":"observations","data":[{"quantity":"pm2_5","value":12.5}]}',
    b"",
    '{"city":"Zürich","note":"µg/m³ ✓"}'.encode(),
    b'{"a":1}\n{"b":2}\n',
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("secret", [SPEC_SECRET, generate_webhook_secret()])
def test_independent_verifier_accepts_our_signature(secret: str, body: bytes) -> None:
    now = int(time.time())
    headers = sign(secret, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-timestamp"] == str(now)
    Webhook(secret).verify(body, headers, json_parse=False)  # raises when it disagrees
    verify(secret, headers, body, now=now)


def test_independent_verifier_accepts_every_key_of_a_rotation() -> None:
    new, old = generate_webhook_secret(), generate_webhook_secret()
    now = int(time.time())
    headers = sign([new, old], "msg_rotation", now, BODIES[0])
    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (new, old):
        Webhook(secret).verify(BODIES[0], headers, json_parse=False)
        verify(secret, headers, BODIES[0], now=now)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_webhook_secret()).verify(BODIES[0], headers, json_parse=False)


def test_signature_matches_the_reference_signer() -> None:
    # The reference library signs too: same key, id, time and body, same signature.
    from datetime import UTC, datetime

    ts = 1674087231
    reference = Webhook(SPEC_SECRET).sign(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", datetime.fromtimestamp(ts, UTC), '{"test": 2432232314}'
    )
    ours = signature(SPEC_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", ts, b'{"test": 2432232314}')
    assert ours == reference


def test_known_vector_from_the_key() -> None:
    import hashlib
    import hmac

    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, b"msg_1.1700000000.hello", hashlib.sha256).digest()
    ).decode()
    assert signature(SPEC_SECRET, "msg_1", 1700000000, b"hello") == f"v1,{expected}"


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda h, b: ({**h, "webhook-id": "msg_other"}, b), "no valid"),
        (lambda h, b: (h, b + b" "), "no valid"),
        (
            lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
            "no valid",
        ),
        (
            lambda h, b: ({**h, "webhook-signature": "v1a," + h["webhook-signature"][3:]}, b),
            "no valid",
        ),
        (lambda h, b: ({**h, "webhook-signature": "v1,notbase64!!"}, b), "no valid"),
        (lambda h, b: ({**h, "webhook-signature": "v1"}, b), "no valid"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing"),
        (lambda h, b: ({**h, "webhook-timestamp": "1.7e9"}, b), "whole seconds"),
        (lambda h, b: ({**h, "webhook-timestamp": "-5"}, b), "whole seconds"),
        (lambda h, b: ({**h, "webhook-timestamp": "١٢٣"}, b), "whole seconds"),  # Arabic digits
    ],
)
def test_tampering_is_refused(tamper, message: str) -> None:  # type: ignore[no-untyped-def]
    secret = generate_webhook_secret()
    now = 1_700_000_000
    headers, body = tamper(sign(secret, "msg_1", now, BODIES[0]), BODIES[0])
    with pytest.raises(InvalidWebhookSignature, match=message):
        verify(secret, headers, body, now=now)


def test_wrong_secret_is_refused() -> None:
    headers = sign(generate_webhook_secret(), "msg_1", 1_700_000_000, b"x")
    with pytest.raises(InvalidWebhookSignature, match="no valid"):
        verify(generate_webhook_secret(), headers, b"x", now=1_700_000_000)


@pytest.mark.parametrize(
    ("skew", "ok"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)]
)
def test_tolerance_window(skew: int, ok: bool) -> None:
    secret = generate_webhook_secret()
    headers = sign(secret, "msg_1", 1_700_000_000, b"x")
    if ok:
        verify(secret, headers, b"x", now=1_700_000_000 + skew)
    else:
        with pytest.raises(InvalidWebhookSignature, match="from now"):
            verify(secret, headers, b"x", now=1_700_000_000 + skew)


def test_headers_are_matched_case_insensitively() -> None:
    secret = generate_webhook_secret()
    headers = {k.title(): v for k, v in sign(secret, "msg_1", 1_700_000_000, b"x").items()}
    verify(secret, headers, b"x", now=1_700_000_000)


@pytest.mark.parametrize(
    ("secret", "msg_id", "timestamp"),
    [
        ("whsec_short", "msg_1", 1),
        ("no-prefix", "msg_1", 1),
        (SPEC_SECRET, "msg.with.dots", 1),  # the spec: ids must not contain "."
        (SPEC_SECRET, "", 1),
        (SPEC_SECRET, "msg_1", 1.5),
        (SPEC_SECRET, "msg_1", -1),
        (SPEC_SECRET, "msg_1", True),
        ([], "msg_1", 1),
    ],
)
def test_bad_signing_inputs_are_refused(secret: object, msg_id: str, timestamp: object) -> None:
    with pytest.raises(ValueError):
        sign(secret, msg_id, timestamp, b"x")  # type: ignore[arg-type]
