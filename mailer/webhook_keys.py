"""The public keys providers sign their webhook posts with, as the settings give them.

A leaf: the settings check a key when they are read (a bad one stops the process naming its
variable), and a provider's webhook verifies posts with it; neither imports the other.
"""

from __future__ import annotations

import base64
import binascii
import functools

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key


@functools.lru_cache(maxsize=8)
def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The P-256 public key in ``text`` (base64 DER or PEM); ValueError says what is wrong."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, UnicodeEncodeError) as error:
        raise ValueError(f"not a base64 or PEM public key ({error})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")
    return key
