"""The three purposes the mailer sends for, what each needs, and the consents people give.

People consent to each purpose of mail, and to one thing that is not a mail: ``tracking``, the
measurement of whether they open our mails and click their links (CNIL's 2025 recommendation:
individual open and click measurement needs consent). Without it a mail goes out with open and
click tracking off.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailer.errors import UnknownPurpose

#: Suppression scope that covers every purpose.
ALL_PURPOSES = "all"


def N_(message: str) -> str:
    """Mark a message for the catalogs; it is translated where it is shown."""
    return message


@dataclass(frozen=True)
class Purpose:
    """One kind of mail with its own opt-in."""

    key: str
    #: Shown to people (translated in their locale).
    label: str
    #: Marketing mail carries the legal footer and RFC 8058 one-click headers by law and policy.
    marketing: bool
    #: The purpose's number inside every unsubscribe link ever mailed (shorter links): never
    #: change or reuse one; a new purpose takes the next free number.
    token_code: int
    #: Partner offers must be consented to for the partner list version a campaign names.
    needs_partner_list: bool = False


TENDER_ALERTS = Purpose("tender_alerts", N_("Tender alerts"), marketing=False, token_code=0)
NOUMA_OFFERS = Purpose("nouma_offers", N_("NouMa's offers"), marketing=True, token_code=1)
PARTNER_OFFERS = Purpose(
    "partner_offers",
    N_("Offers from NouMa's partners"),
    marketing=True,
    token_code=2,
    needs_partner_list=True,
)

#: Consent to measure opens and clicks of one's mails: recorded with proof like the others, never
#: a purpose mail is sent for (no unsubscribe link names it; its token code is reserved).
TRACKING = Purpose(
    "tracking",
    N_("Measuring whether you open our e-mails and click their links"),
    marketing=False,
    token_code=3,
)

#: The purposes of mail.
PURPOSES: dict[str, Purpose] = {p.key: p for p in (TENDER_ALERTS, NOUMA_OFFERS, PARTNER_OFFERS)}
PURPOSE_KEYS = tuple(PURPOSES)
MARKETING_PURPOSE_KEYS = tuple(p.key for p in PURPOSES.values() if p.marketing)
#: Everything people consent to: the purposes of mail, and tracking.
CONSENTS: dict[str, Purpose] = {**PURPOSES, TRACKING.key: TRACKING}
CONSENT_KEYS = tuple(CONSENTS)


def get_purpose(key: str) -> Purpose:
    """The purpose named by ``key``; UnknownPurpose names the valid ones otherwise."""
    try:
        return PURPOSES[key]
    except KeyError:
        raise UnknownPurpose(f"unknown purpose {key!r}; expected one of: {', '.join(PURPOSE_KEYS)}") from None


def get_consent(key: str) -> Purpose:
    """What a consent is about (a purpose of mail, or tracking); UnknownPurpose otherwise."""
    try:
        return CONSENTS[key]
    except KeyError:
        raise UnknownPurpose(f"unknown consent {key!r}; expected one of: {', '.join(CONSENT_KEYS)}") from None


def check_scope(scope: str) -> str:
    """A suppression scope: one purpose key or ``all``."""
    if scope == ALL_PURPOSES:
        return scope
    return get_purpose(scope).key
