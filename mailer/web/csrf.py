"""Cross-site request forgery protection for the page forms, without cookies.

Two checks, both required on every form POST (never on the RFC 8058 one-click POST, which must
work from a mail client with no session):

- the browser's own word: ``Sec-Fetch-Site`` must say same-origin (or ``none``, typed by the
  person), else ``Origin`` must name this host; requests that carry neither are not from a
  browser's cross-site form (the check Go's ``http.CrossOriginProtection`` makes);
- a form token, signed with the secret key and bound to the link's token, that only a page we
  rendered holds, valid for ``FORM_TOKEN_MAX_AGE`` seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from urllib.parse import urlsplit

from itsdangerous import BadData, TimestampSigner

from mailer.config import get_settings

#: A page left open this long still submits; after it, the person reloads it.
FORM_TOKEN_MAX_AGE = 24 * 3600
_SALT = "nouma-mailer.form.v1"


def _signers() -> list[TimestampSigner]:
    return [TimestampSigner(key, salt=_SALT) for key in get_settings().secret_keys()]


def _binding(link_token: str) -> bytes:
    return hashlib.sha256(link_token.encode("utf-8", errors="replace")).hexdigest()[:32].encode()


def form_token(link_token: str) -> str:
    """The token a page's forms carry, bound to the link (unsubscribe or preferences) it serves."""
    return _signers()[0].sign(_binding(link_token)).decode()


def valid_form_token(link_token: str, submitted: str | None) -> bool:
    """Whether a submitted form token was made for this link, recently, with one of our keys."""
    if not submitted or len(submitted) > 200:
        return False
    for signer in _signers():
        try:
            value = signer.unsign(submitted.encode("utf-8", errors="replace"), max_age=FORM_TOKEN_MAX_AGE)
        except BadData:
            continue
        return value == _binding(link_token)
    return False


def same_origin(headers: Mapping[str, str], host: str | None) -> bool:
    """Whether the browser says this POST comes from one of our own pages."""
    get = headers.get
    fetch_site = get("sec-fetch-site")
    if fetch_site is not None:
        return str(fetch_site).lower() in ("same-origin", "none")
    origin = get("origin")
    if origin is None:
        return True
    allowed = {host.lower()} if host else set()
    allowed.add(urlsplit(get_settings().base_url).netloc.lower())
    return urlsplit(str(origin)).netloc.lower() in allowed and str(origin).lower() != "null"
