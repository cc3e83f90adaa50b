"""Signed, purpose-scoped unsubscribe tokens: no expiry, key rotation, nothing personal readable."""

from __future__ import annotations

import base64
import functools
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

from mailer.config import get_settings
from mailer.errors import BadToken
from mailer.purposes import PURPOSE_KEYS

#: Salts keep an unsubscribe token from working as a preference token and the other way round.
UNSUBSCRIBE_SALT = "nouma-mailer.unsubscribe.v1"
PREFERENCES_SALT = "nouma-mailer.preferences.v1"

#: A purpose travels as its index in PURPOSE_KEYS: shorter links, and new purposes append.
_PURPOSE_CODES = {key: index for index, key in enumerate(PURPOSE_KEYS)}


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


def read_unsubscribe_token(token: str) -> UnsubscribeClaim:
    """The claim a token carries; BadToken if it is forged, altered, truncated or malformed."""
    try:
        payload = _serializer(UNSUBSCRIBE_SALT).loads(token)
        recipient_id, code = payload
        if not isinstance(recipient_id, int) or not isinstance(code, int):
            raise ValueError
        return UnsubscribeClaim(recipient_id, PURPOSE_KEYS[code])
    except (BadData, ValueError, TypeError, IndexError):
        raise BadToken("this link is not valid") from None


def preferences_token(recipient_id: int) -> str:
    """The token for a recipient's preference-centre link."""
    return str(_serializer(PREFERENCES_SALT).dumps(recipient_id))


def read_preferences_token(token: str) -> int:
    """The recipient id a preference token carries; BadToken otherwise."""
    try:
        recipient_id = _serializer(PREFERENCES_SALT).loads(token)
    except BadData:
        raise BadToken("this link is not valid") from None
    if not isinstance(recipient_id, int):
        raise BadToken("this link is not valid")
    return recipient_id


def peek_recipient(token: str) -> int | None:
    """The recipient id a token names, WITHOUT checking its signature; None if none can be read.

    Only for choosing the language of the page that says a link is not valid: nothing else may
    trust it.
    """
    try:
        _, payload = _serializer(UNSUBSCRIBE_SALT).loads_unsafe(token.split(".")[0] + ".")
    except Exception:  # any garbage: no language hint, French then
        return None
    if isinstance(payload, list) and payload:
        payload = payload[0]
    return payload if isinstance(payload, int) and not isinstance(payload, bool) else None


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
