"""The three purposes the mailer sends for, and what each needs."""

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

PURPOSES: dict[str, Purpose] = {p.key: p for p in (TENDER_ALERTS, NOUMA_OFFERS, PARTNER_OFFERS)}
PURPOSE_KEYS = tuple(PURPOSES)
MARKETING_PURPOSE_KEYS = tuple(p.key for p in PURPOSES.values() if p.marketing)


def get_purpose(key: str) -> Purpose:
    """The purpose named by ``key``; UnknownPurpose names the valid ones otherwise."""
    try:
        return PURPOSES[key]
    except KeyError:
        raise UnknownPurpose(f"unknown purpose {key!r}; expected one of: {', '.join(PURPOSE_KEYS)}") from None


def check_scope(scope: str) -> str:
    """A suppression scope: one purpose key or ``all``."""
    if scope == ALL_PURPOSES:
        return scope
    return get_purpose(scope).key
