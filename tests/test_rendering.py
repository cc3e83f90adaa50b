"""Rendering: per-locale templates compiled once, autoescaped HTML, Babel formats, full catalogs."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from mailer import rendering
from mailer.emails import RecipientView, common_context
from mailer.errors import TemplateProblem
from tests.conftest import REPO

SENT_AT = dt.datetime(2026, 11, 26, 8, 30, tzinfo=dt.UTC)


def context(locale: str, name: str | None = "Marie", purpose: str = "tender_alerts") -> dict:
    recipient = RecipientView(1, "marie@example.com", name, locale, "Europe/Paris")
    return {**common_context(recipient, purpose, "https://mailer.example.com/u/TOKEN"), "sent_at": SENT_AT}


def test_french_and_english(sqlite_db):
    fr = rendering.render("test_message", "fr", context("fr"))
    en = rendering.render("test_message", "en", context("en"))
    assert fr.subject == "[Test] NouMa\u00a0: Alertes appels d’offres"
    assert "Bonjour Marie," in fr.text and "26 novembre 2026" in fr.text
    assert "Hello Marie," in en.text and "November 26, 2026" in en.text
    assert "Se désabonner de ces e-mails\u00a0: https://mailer.example.com/u/TOKEN" in fr.text
    assert '<html lang="fr">' in fr.html and '<html lang="en">' in en.html


def test_marketing_mail_carries_the_postal_address_and_service_mail_does_not(sqlite_db):
    offers = rendering.render("test_message", "fr", context("fr", purpose="nouma_offers"))
    alerts = rendering.render("test_message", "fr", context("fr", purpose="tender_alerts"))
    assert "Envoyé par NouMa" in offers.text and "Envoyé par" not in alerts.text
    assert "accepté de recevoir les offres de NouMa" in offers.text


def test_html_is_autoescaped_and_text_is_not(sqlite_db):
    rendered = rendering.render("test_message", "en", context("en", name="<b>Bob & Co</b>"))
    assert "&lt;b&gt;Bob &amp; Co&lt;/b&gt;" in rendered.html and "<b>Bob" not in rendered.html
    assert "Hello <b>Bob & Co</b>," in rendered.text


def test_a_missing_variable_is_an_error_not_an_empty_string(sqlite_db):
    incomplete = context("fr")
    del incomplete["sent_at"]
    with pytest.raises(TemplateProblem, match="sent_at"):
        rendering.render("test_message", "fr", incomplete)


def test_templates_compile_once_per_locale():
    env = rendering.environment("fr")
    assert env.get_template("email/test_message/body.html") is env.get_template(
        "email/test_message/body.html"
    )
    assert rendering.environment("fr") is env and rendering.environment("en") is not env


@pytest.mark.parametrize(
    ("locale", "amount", "shown"),
    [
        ("fr", 1250000, "1\u202f250\u202f000\u00a0€"),
        ("en", 1250000, "€1,250,000"),
        ("fr", Decimal("99.5"), "99,50\u00a0€"),
    ],
)
def test_amounts_in_the_locale(locale, amount, shown):
    assert rendering.environment(locale).filters["money"](amount) == shown


def test_dates_in_the_locale():
    assert rendering.environment("fr").filters["date"](dt.date(2026, 11, 26)) == "26 novembre 2026"
    assert rendering.environment("en").filters["date"](dt.date(2026, 11, 26)) == "November 26, 2026"


def extracted_messages() -> set[str]:
    with open(REPO / "babel.cfg") as handle:
        method_map, options_map = parse_mapping_cfg(handle)

    def keep(path: str) -> bool:  # templates/email/_base and _marketing hold sentences too
        name = os.path.basename(path)
        return not name.startswith(".") and name not in ("__pycache__", "var", "tests")

    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(REPO), method_map, options_map, directory_filter=keep
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_extraction_covers_text_and_html_templates():
    messages = extracted_messages()
    assert "[Test] NouMa: %(purpose)s" in messages  # a subject, from a .txt template
    assert "Manage your e-mail preferences" in messages  # from _base/body.html
    assert "Tender alerts" in messages  # from Python, marked with N_()


def test_every_message_has_a_french_translation():
    with open(REPO / "mailer/locale/fr/LC_MESSAGES/messages.po", "rb") as handle:
        catalog = read_po(handle, locale="fr")
    missing = [
        m
        for m in extracted_messages()
        if not (catalog.get(m) and catalog.get(m).string and not catalog.get(m).fuzzy)
    ]
    assert missing == [], f"no French translation for: {missing}"
    with open(REPO / "mailer/locale/en/LC_MESSAGES/messages.po", "rb") as handle:
        english = read_po(handle, locale="en")
    assert [m for m in extracted_messages() if m not in english] == []


def test_html_templates_import_macros_from_html_files_only():
    # A macro's output is trusted as markup where it is called: one defined in a .txt file (not
    # autoescaped) would let a recipient's name into the HTML part unescaped.
    import re

    offenders = [
        str(path.relative_to(rendering.TEMPLATES_DIR))
        for path in rendering.TEMPLATES_DIR.rglob("*.html")
        if re.search(r"""{%-?\s*(from|import)\s+["'][^"']+\.txt["']""", path.read_text())
    ]
    assert offenders == []
