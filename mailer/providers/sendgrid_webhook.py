"""SendGrid Event Webhook: signatures (ECDSA P-256 / SHA-256 over the timestamp header + raw body).

Pure functions over bytes: no database, no settings. The verification key is the base64
SubjectPublicKeyInfo SendGrid shows in its mail settings (a PEM block is accepted too).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from mailer.providers.errors import BadSignature
from mailer.webhook_keys import load_public_key

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

#: A DER ECDSA P-256 signature is at most 72 bytes; base64 of anything longer is not one.
MAX_SIGNATURE_CHARS = 200
#: Unix seconds fit in 10 digits until 2286; a longer "timestamp" is not one.
MAX_TIMESTAMP_CHARS = 12


def verify(
    public_key: str,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    *,
    now: float,
    max_age_seconds: int,
) -> int:
    """Check a post's signature and freshness; return its signed timestamp or raise BadSignature.

    The signed message is the timestamp header's exact text followed by the body's exact bytes
    (SendGrid's own CRLF separators and trailing CRLF included): never re-serialised JSON.
    """
    if not signature or not timestamp:
        raise BadSignature("missing signature or timestamp header")
    if len(signature) > MAX_SIGNATURE_CHARS or len(timestamp) > MAX_TIMESTAMP_CHARS:
        raise BadSignature("malformed signature or timestamp header")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise BadSignature("timestamp is not a number of seconds")
    signed_at = int(timestamp)
    # Replay protection: a captured post is refused once it is older than the window (and a
    # timestamp from the future by as much, which a correct clock never produces).
    if abs(now - signed_at) > max_age_seconds:
        raise BadSignature("timestamp outside the accepted window")
    try:
        der = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature("signature is not base64") from None
    try:
        load_public_key(public_key).verify(der, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        # ValueError: bytes that are not a DER signature at all.
        raise BadSignature("signature does not verify") from None
    return signed_at
