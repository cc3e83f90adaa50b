"""E-mail addresses: the one normal form, and the hash the suppression list is keyed by."""

from __future__ import annotations

import hashlib
import unicodedata

import email_validator
from email_validator import EmailNotValidError, validate_email

from mailer.errors import InvalidAddress

# RFC 2606 ".invalid" addresses are well-formed: tender data and test fixtures use them so that
# nothing can ever be delivered there. email-validator documents editing this list for that need.
if "invalid" in email_validator.SPECIAL_USE_DOMAIN_NAMES:
    email_validator.SPECIAL_USE_DOMAIN_NAMES.remove("invalid")

#: RFC 5321 limit on a forward path; longer strings are not addresses.
MAX_ADDRESS_LENGTH = 254


def normalise_address(raw: str) -> str:
    """The normal form of an address: trimmed, NFC, lower case, IDNA domain. Raises InvalidAddress."""
    # Errors never repeat the text: a near-address is personal data too (the line says where)
    text = unicodedata.normalize("NFC", (raw or "").strip())
    if not text:
        raise InvalidAddress("not an e-mail address (empty)")
    if len(text) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(f"not an e-mail address (longer than {MAX_ADDRESS_LENGTH} characters)")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
        raise InvalidAddress("not an e-mail address (control or invalid characters)")
    try:
        valid = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidAddress(f"not an e-mail address ({error})") from None
    # Mailbox providers treat the local part case-insensitively; one form keeps one suppression.
    return f"{valid.local_part.lower()}@{valid.ascii_domain.lower()}"


def address_hash(normalised: str) -> str:
    """SHA-256 of a normalised address, hex: the suppression list's key."""
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def hash_of(raw: str) -> str:
    """Normalise then hash."""
    return address_hash(normalise_address(raw))
