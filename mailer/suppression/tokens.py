"""Signed, purpose-scoped unsubscribe tokens: no expiry, key rotation, nothing personal readable.

A token is ``base64url(json) "." base64url(hmac)`` (itsdangerous). Only the one spelling we
issue is read: canonical base64 without padding, nothing inserted, an id that fits the database;
anything else is refused before the signature is even checked, so an altered copy of a valid
link never works and never tells whether its recipient exists.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

from mailer.config import get_settings
from mailer.errors import BadToken
from mailer.purposes import PURPOSES

#: Salts keep an unsubscribe token from working as a preference token and the other way round.
UNSUBSCRIBE_SALT = "nouma-mailer.unsubscribe.v1"
PREFERENCES_SALT = "nouma-mailer.preferences.v1"
#: Largest recipient id (the column is a signed 64-bit integer).
MAX_RECIPIENT_ID = 2**63 - 1
#: Longest token read: a few dozen characters are issued; a long one is garbage, not a link.
MAX_TOKEN_LENGTH = 200

#: A purpose travels as its own token code (mailer/purposes.py), never its position in a list.
_PURPOSE_CODES = {key: purpose.token_code for key, purpose in PURPOSES.items()}
_PURPOSE_OF_CODE = {code: key for key, code in _PURPOSE_CODES.items()}
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class UnsubscribeClaim:
    """What a valid unsubscribe token says: this recipient, this purpose."""

    recipient_id: int
    purpose: str


def _serializer(salt: str) -> URLSafeSerializer:
    # itsdangerous signs with the last key and accepts any of them.
    return _serializer_for(salt, tuple(reversed(get_settings().secret_keys())))


@functools.lru_cache(maxsize=16)
def _serializer_for(salt: str, keys: tuple[str, ...]) -> URLSafeSerializer:
    # Built once per key set: a campaign batch signs two tokens for each of its 1000 recipients.
    return URLSafeSerializer(list(keys), salt=salt)


def unsubscribe_token(recipient_id: int, purpose: str) -> str:
    """The token for a recipient's unsubscribe link for one purpose."""
    return str(_serializer(UNSUBSCRIBE_SALT).dumps([recipient_id, _PURPOSE_CODES[purpose]]))


def _canonical(token: str) -> bool:
    """Whether the token is spelt exactly as we issue it: two canonical unpadded base64url parts."""
    if len(token) > MAX_TOKEN_LENGTH:
        return False
    parts = token.split(".")
    if len(parts) != 2:
        return False
    for part in parts:
        if not _BASE64URL.match(part) or len(part) % 4 == 1:
            return False
        try:
            decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            return False
        # Unused low bits set in the last character decode the same: refuse all but one spelling
        if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode("ascii") != part:
            return False
    return True


def _recipient_id(value: Any) -> int:
    if type(value) is not int or not 0 < value <= MAX_RECIPIENT_ID:
        raise ValueError
    return value


def read_unsubscribe_token(token: str) -> UnsubscribeClaim:
    """The claim a token carries; BadToken if it is forged, altered, truncated or malformed."""
    try:
        if not _canonical(token):
            raise ValueError
        recipient_id, code = _serializer(UNSUBSCRIBE_SALT).loads(token)
        if type(code) is not int:
            raise ValueError
        return UnsubscribeClaim(_recipient_id(recipient_id), _PURPOSE_OF_CODE[code])
    except (BadData, ValueError, TypeError, KeyError):
        raise BadToken("this link is not valid") from None


def preferences_token(recipient_id: int) -> str:
    """The token for a recipient's preference-centre link."""
    return str(_serializer(PREFERENCES_SALT).dumps(recipient_id))


def read_preferences_token(token: str) -> int:
    """The recipient id a preference token carries; BadToken otherwise."""
    try:
        if not _canonical(token):
            raise ValueError
        return _recipient_id(_serializer(PREFERENCES_SALT).loads(token))
    except (BadData, ValueError):
        raise BadToken("this link is not valid") from None


def unsubscribe_url(recipient_id: int, purpose: str) -> str:
    """The https link a mail carries to stop one purpose (RFC 8058 one-click target)."""
    return f"{get_settings().base_url}/u/{unsubscribe_token(recipient_id, purpose)}"


def preferences_url(recipient_id: int) -> str:
    """The link to a recipient's preference centre."""
    return f"{get_settings().base_url}/preferences/{preferences_token(recipient_id)}"


def unsubscribe_urls(recipient_ids: Sequence[int], purpose: str) -> list[str]:
    """``unsubscribe_url`` for many recipients at once (a campaign batch signs 1000 of each)."""
    base = f"{get_settings().base_url}/u/"
    code = _PURPOSE_CODES[purpose]
    return [base + token for token in _dumps_many(UNSUBSCRIBE_SALT, [[rid, code] for rid in recipient_ids])]


def preferences_urls(recipient_ids: Sequence[int]) -> list[str]:
    """``preferences_url`` for many recipients at once."""
    base = f"{get_settings().base_url}/preferences/"
    return [base + token for token in _dumps_many(PREFERENCES_SALT, list(recipient_ids))]


def _compact_json(payload: Any) -> str:
    """``json.dumps(payload, separators=(",", ":"))``, written directly for the payloads tokens carry."""
    if type(payload) is int:
        return str(payload)
    if type(payload) is list and all(type(item) is int for item in payload):
        return "[" + ",".join(map(str, payload)) + "]"
    return json.dumps(payload, separators=(",", ":"))


def _dumps_many(salt: str, payloads: list[Any]) -> list[str]:
    # itsdangerous builds a signer, derives its key and tries zlib on every token (~20 us each).
    # Small JSON payloads are never compressed, so the token is base64(json) "." base64(hmac):
    # computed here once keyed, and checked against itsdangerous's own output before it is used.
    if not payloads:
        return []
    serializer = _serializer(salt)
    signer = serializer.make_signer(salt)
    key = signer.derive_key()
    digest = signer.digest_method().name
    separator = signer.sep if isinstance(signer.sep, bytes) else signer.sep.encode()

    def dumps(payload: Any) -> str:
        body = base64.urlsafe_b64encode(_compact_json(payload).encode()).rstrip(b"=")
        # hmac.digest with a digest name is OpenSSL's one-shot HMAC: no object per token.
        signature = base64.urlsafe_b64encode(hmac.digest(key, body, digest)).rstrip(b"=")
        return (body + separator + signature).decode("ascii")

    if dumps(payloads[0]) != serializer.dumps(payloads[0]):
        return [str(serializer.dumps(p)) for p in payloads]
    return [dumps(p) for p in payloads]
