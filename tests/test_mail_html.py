"""Mail HTML that Gmail, Outlook for Windows and Apple Mail render: caniemail's data, sizes, content.

Every kind of mail is rendered in French and English (a tender digest with contacts and every
optional field, a campaign in its wrapper, test messages for service and marketing mail) and
read by ``tests.caniemail`` against caniemail's data (``../shared/data/email/``).
"""

from __future__ import annotations

import email
import re
from email import policy
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mailer import rendering
from mailer.campaigns import content
from mailer.campaigns.content import LocaleContent
from mailer.db import session_scope
from mailer.emails import RecipientView, common_context
from tests import caniemail
from tests.alert_factories import TODAY, add_search, add_tenders, run_window, tender
from tests.campaign_helpers import CONTENT
from tests.factories import make_recipient

NBSP = "\u00a0"
NNBSP = "\u202f"
LOCALES = ("fr", "en")

#: Features used on purpose although Gmail or Outlook for Windows do not render them: (slug, tag) -> why.
ALLOWED: dict[tuple[str, str], str] = {
    ("html-doctype", ""): (
        "Outlook for Windows ignores it; Apple Mail and the browsers that show webmail need it to lay "
        "the mail out in standards mode"
    ),
    ("html-meta-color-scheme", "meta"): (
        "Apple Mail then keeps the light palette instead of inverting it in dark mode; the clients "
        "that ignore it lose nothing"
    ),
    ("css-margin", "body"): (
        "removes the 8px margin WebKit (Apple Mail) puts around the mail; Outlook and Gmail have none to remove"
    ),
}


#: Words that lengthen a title to the 90th percentile of the shared TED notices' (176 characters).
LONG_TITLE = (
    " : chaussées, trottoirs, bordures, signalisation horizontale et verticale, réseaux d'eaux pluviales"
    " et d'assainissement, éclairage public et mobilier urbain"
)


def listing(n: int, keyword: str = "voirie", *, long: bool = False):
    """A tender with every field a digest shows; ``long``: as long as 90% of the shared TED notices'."""
    title = f"Travaux de {keyword} communale et réseaux d'assainissement, lot {n}"
    contact = "Service de la commande publique, Mme Jeanne Parent"
    if long:  # 90th percentiles: title 176 characters, contact 55, buyer 39, e-mail 35
        title = (f"Travaux de {keyword}, lot {n}" + LONG_TITLE)[:176]
        contact += ", achats"
    return tender(
        title=title,
        buyer={"name": "Communauté d'agglomération du Pays Voironnais", "town": "Voiron"},
        contact={"name": contact, "email": "commande.publique@example.invalid", "phone": "+33 4 76 00 00 00"},
        departments=["38"],
        deadline="2026-12-15T12:00",
        value={"amount": "1250000", "currency": "EUR"},
        url=f"https://ted.europa.eu/fr/notice/-/detail/{700000 + n}-2026",
    )


def outbox_html(outbox: Path) -> dict[str, str]:
    """The HTML part of each .eml in the outbox, by recipient address."""
    found = {}
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        found[str(message["To"].addresses[0].addr_spec)] = message.get_body(("html",)).get_content()
    return found


def digest_mails(outbox: Path) -> dict[str, str]:
    """Marie's (fr) and John's (en) digests: 10 full listings and "2 more", then a bare listing."""
    with session_scope() as session:
        make_recipient(session, "marie@example.com", name="Marie", granted=["tender_alerts"])
        make_recipient(session, "john@example.com", name="John", locale="en", granted=["tender_alerts"])
    for address in ("marie@example.com", "john@example.com"):
        add_search(address, name="Voirie Isère", keywords="voirie", position=1)
        add_search(address, name="Tout l'Isère", departments=["38"], position=2)
    add_tenders(*[listing(n) for n in range(12)], tender(title="Nettoyage des locaux", deadline=None))
    run_window()
    mails = outbox_html(outbox)
    return {"tender_digest fr": mails["marie@example.com"], "tender_digest en": mails["john@example.com"]}


def sample_test_messages() -> dict[str, str]:
    mails = {}
    for locale in LOCALES:
        recipient = RecipientView(1, "marie@example.com", "Marie", locale, "Europe/Paris")
        for purpose in ("tender_alerts", "nouma_offers"):
            context = {
                **common_context(recipient, purpose, "https://mailer.example.com/u/TOKEN"),
                "sent_at": TODAY,
            }
            mails[f"test_message {purpose} {locale}"] = rendering.render("test_message", locale, context).html
    return mails


def campaigns() -> dict[str, str]:
    mails = {}
    for locale in LOCALES:
        own = LocaleContent(locale, CONTENT[locale]["subject.txt"], CONTENT[locale]["body.html"], "x")
        rendered = content.render(own, purpose="partner_offers", partner="Acme", campaign_name="Offre")
        mails[f"campaign {locale}"] = rendered.html
    return mails


@pytest.fixture
def every_mail(sqlite_db, isolated_environment) -> dict[str, str]:
    """The HTML of every kind of mail in both locales, by name."""
    return {**digest_mails(isolated_environment), **sample_test_messages(), **campaigns()}


def test_no_mail_uses_what_gmail_or_outlook_for_windows_cannot_render(every_mail):
    # Given every kind of mail, in French and English
    assert len(every_mail) == 8
    # When each is read against caniemail's data
    reports = {name: caniemail.judge(html, ALLOWED) for name, html in every_mail.items()}
    # Then none uses a feature Gmail or Outlook for Windows does not render, but the allowed ones
    problems = [f"{name}: {problem}" for name, report in reports.items() for problem in report.problems]
    assert not problems, "\n".join(problems)
    # ... and every allowance is still needed
    used = set().union(*(report.allowances_used for report in reports.values()))
    assert used == set(ALLOWED)


#: Box properties: set on table cells only, where every client (Outlook's Word engine too) applies them.
BOX_SLUGS = (
    "css-padding",
    "css-border",
    "css-margin",
    "css-width",
    "css-height",
    "css-max-width",
    "css-display",
)


def test_layout_is_set_on_tables_and_cells_only(every_mail):
    # Given every kind of mail; when the box properties each sets are listed (a zero margin resets
    # a default: allowed anywhere)
    misplaced = sorted(
        {
            f"{name}: {use.written} on <{use.tag}>"
            for name, html in every_mail.items()
            for use in caniemail.uses(html)
            if use.slug in BOX_SLUGS
            and use.tag not in ("table", "td", "th")
            and not (use.slug == "css-margin" and use.value == "0")
        }
    )
    # Then none sits on a paragraph, a link, a heading or a block: tables lay the mail out
    assert not misplaced, "\n".join(misplaced)


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        # What broke the digest in Outlook for Windows: bars and padding on paragraphs, a CSS button
        (
            '<p style="margin:0;padding-left:10px">x</p>',
            "css-padding: padding-left:10px on <p> (Outlook windows",
        ),
        (
            '<p style="border-left:4px solid #1f5fa8">x</p>',
            "css-border: border-left:4px solid #1f5fa8 on <p>",
        ),
        (
            '<a href="https://example.com" style="display:inline-block">x</a>',
            "css-display: display:inline-block",
        ),
        ('<div style="max-width:600px">x</div>', "css-max-width: max-width:600px on <div> (Outlook"),
        ('<td style="line-height:22px">x</td>', "css-line-height: line-height:22px on <td> (Outlook"),
        ('<td style="border:10px solid red">x</td>', "css-border: border:10px solid red on <td>"),
        ('<td style="margin:0 auto">x</td>', "css-margin: margin:0 auto on <td>"),
        # Features Gmail or Outlook do not render at all
        ('<div style="display:flex">x</div>', "css-display-flex: display:flex on <div> (Outlook windows"),
        ('<table style="border-spacing:2px"></table>', "css-border-spacing: border-spacing:2px on <table>"),
        ('<td style="width:calc(100% - 2px)">x</td>', "css-unit-calc: width:calc(100% - 2px) on <td>"),
        ('<td style="color:red !important">x</td>', "css-important: color:red !important on <td>"),
        ('<td style="font-size:1rem">x</td>', "css-unit-rem: font-size:1rem on <td>"),
        ("<body><style>td{color:red}</style></body>", "html-style: <style> on <style> (Gmail mobile-webmail"),
        (
            "<body><style>td{color:red}</style></body>",
            "html-style: <style> on <style> (Gmail desktop-webmail 2023-01: Partial. Not supported inside",
        ),
        ('<link rel="stylesheet" href="x.css">', "html-link: <link> on <link> (Gmail"),
        ('<meta name="color-scheme" content="light">', "html-meta-color-scheme"),
        ("<!DOCTYPE html>", "html-doctype: <!DOCTYPE html> on <document> (Outlook windows"),
        # Inside an Outlook conditional comment, judged for Outlook
        (
            '<!--[if mso]><div style="display:flex">x</div><![endif]-->',
            "css-display-flex: display:flex on <div>",
        ),
        # What the checker cannot map is named, never passed
        ('<td style="zoom:2">x</td>', "zoom:2 on <td>: a property the checker does not know"),
        ("<blink>x</blink>", "<blink>: an element the checker does not know"),
        ('<td nowrap="nowrap">x</td>', "nowrap= on <td>: an attribute the checker does not know"),
        ('<td style="width:10q">x</td>', "width:10q on <td>: the unit 'q' has no caniemail page"),
    ],
)
def test_the_checker_names_what_a_client_does_not_render(html, expected):
    # When a piece of HTML is judged with no allowance
    report = caniemail.judge(html, {})
    # Then the problem is named
    assert any(problem.startswith(expected) for problem in report.problems), report.problems


def test_the_checker_passes_the_bulletproof_forms():
    # Given the Outlook-safe forms of a card and a button: tables, cells, attributes
    html = (
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">'
        '<tr><td style="padding-left:10px;border-left:4px solid #1f5fa8;">x</td></tr>'
        '<tr><td bgcolor="#1f5fa8" style="padding:9px 16px;background-color:#1f5fa8;">'
        '<a href="https://example.com" style="color:#ffffff;text-decoration:none;font-weight:bold;">y</a>'
        "</td></tr></table>"
    )
    # Then nothing is reported
    assert caniemail.judge(html, {}).problems == []


def test_each_partial_support_rule_reads_a_note_caniemail_has():
    # A rule whose note caniemail reworded would never fire again: each must match the data
    features = caniemail.features()
    stale = [
        (slug, note)
        for slug, note in caniemail.PARTIAL_RULES
        if note not in (features[slug].get("notes_by_num") or {}).values()
    ]
    assert stale == []


class _Reading(HTMLParser):
    """A mail's visible text, and its links as (text, href)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._link_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href, self._link_text = dict(attrs).get("href"), []

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.append(("".join(self._link_text).strip(), self._href))
            self._href = None

    def handle_data(self, data):
        self.text.append(data)
        if self._href is not None:
            self._link_text.append(data)


def read(html: str) -> tuple[str, list[tuple[str, str]]]:
    reading = _Reading()
    reading.feed(html)
    return re.sub(r"[ \t\r\n]+", " ", "".join(reading.text)), reading.links


def test_the_digest_shows_every_field_of_a_listing_and_its_links(every_mail):
    # Given Marie's digest
    text, links = read(every_mail["tender_digest fr"])
    # Then each title links to its notice
    for n in range(10):
        title = f"Travaux de voirie communale et réseaux d'assainissement, lot {n}"
        assert (title, f"https://ted.europa.eu/fr/notice/-/detail/{700000 + n}-2026") in links
    # ... with its buyer, place, deadline, value and contact; the bare listing with its place only
    for line, times in (
        (f"Acheteur{NBSP}: Communauté d'agglomération du Pays Voironnais, Voiron", 10),
        (f"Lieu{NBSP}: Isère (38)", 11),
        (f"Date limite{NBSP}: 15 décembre 2026 à 12:00", 10),
        (f"Valeur estimée{NBSP}: 1{NNBSP}250{NNBSP}000{NBSP}€", 10),
        (
            f"Contact{NBSP}: Service de la commande publique, Mme Jeanne Parent · "
            "commande.publique@example.invalid · +33 4 76 00 00 00",
            10,
        ),
    ):
        assert text.count(line) == times, line
    assert "Nettoyage des locaux" in text and all(t != "Nettoyage des locaux" for t, _ in links)
    # ... the rest of the section is counted, the alerts are one click away, and so is unsubscribing
    assert ("et 2 autres sur NouMa", "https://www.nouma.fr/alertes") in links
    assert ("Gérer vos alertes", "https://www.nouma.fr/alertes") in links
    assert any(
        t == "Se désabonner de ces e-mails" and h.startswith("https://mailer.example.com/u/")
        for t, h in links
    )
    assert "Vous recevez cet e-mail car vous avez créé des alertes appels d’offres sur NouMa." in text


def test_marketing_mail_shows_the_postal_address_and_the_unsubscribe_link(every_mail):
    # Given the marketing mails (a test message for NouMa's offers, a partner's campaign)
    for name in ("test_message nouma_offers fr", "campaign fr"):
        # When they are read
        text, links = read(every_mail[name])
        # Then each shows the sender's postal address and the unsubscribe link
        assert "Envoyé par NouMa" in text, name
        assert any(t == "Se désabonner de ces e-mails" for t, _ in links), name
    # ... the campaign names its partner, and service mail has no postal address
    text, _ = read(every_mail["campaign fr"])
    assert "Une offre de notre partenaire Acme" in text
    text, _ = read(every_mail["test_message tender_alerts fr"])
    assert "Envoyé par" not in text and "Bonjour Marie," in text


#: Gmail clips a mail's HTML after 102 KB, hiding the unsubscribe footer; a digest of fifty
#: listings stays under this.
DIGEST_HTML_BUDGET = 100_000


def test_fifty_long_listings_stay_under_gmails_clipping(sqlite_db, isolated_environment):
    # Given a reader whose five searches list ten tenders each (and one more), every field long
    with session_scope() as session:
        make_recipient(session, "marie@example.com", name="Marie", granted=["tender_alerts"])
    keywords = ["voirie", "ponts", "toitures", "chauffage", "ascenseurs"]
    for position, keyword in enumerate(keywords, start=1):
        add_search("marie@example.com", name=f"Recherche {keyword}", keywords=keyword, position=position)
    add_tenders(*[listing(n, keyword, long=True) for keyword in keywords for n in range(11)])
    # When the digest is sent
    run_window()
    (html,) = outbox_html(isolated_environment).values()
    # Then its fifty listings fit under Gmail's clipping with room to spare
    assert html.count("https://ted.europa.eu/") == 50
    assert len(html.encode()) < DIGEST_HTML_BUDGET
