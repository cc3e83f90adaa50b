"""Campaign content is refused at create when it could fail or misbehave mid-send; audiences parse safely."""

from __future__ import annotations

import datetime as dt

import pytest

from mailer.campaigns import audience, content
from mailer.campaigns.content import LocaleContent
from mailer.db import session_scope
from mailer.errors import InvalidInput, TemplateProblem
from tests.campaign_helpers import CONTENT, write_content
from tests.factories import make_recipient


def check(
    html: str = "<p>{{ greeting }}</p>",
    text: str = "{{ greeting }}",
    subject: str = "Offres",
    campaign_name: str = "Offre de Noël",
) -> None:
    content.check_content(
        {"fr": LocaleContent("fr", subject, html, text)},
        purpose="nouma_offers",
        partner=None,
        campaign_name=campaign_name,
    )


def test_content_is_checked_with_the_campaigns_own_name():
    # A mistake behind a test on the name would otherwise pass create and fail every recipient
    with pytest.raises(TemplateProblem, match="titel"):
        check(html="<p>{% if campaign_name %}{{ campaign_name.titel }}{% endif %}</p>")


def test_good_content_passes():
    check()
    check(html="<p>{{ greeting }} {{ first_name }}</p>{% if locale == 'fr' %}<p>Bonjour</p>{% endif %}")


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>\n{{ greeting }\n</p>", "fr/body.html:2: unexpected '}'"),
        ("<p>\n\n{{ prenom }}</p>", "fr/body.html:3: unknown variable 'prenom'"),
        ("{% for x in items %}{{ x }}{% endfor %}", "fr/body.html:1: unknown variable 'items'"),
        ("<p>\n{{ ''.__class__.__mro__ }}</p>", "fr/body.html:2: unsafe attribute '__"),
        ("{{ locale['__class__'] }}", "fr/body.html:1: unsafe attribute '__class__'"),
        ("{% include 'x.html' %}", "fr/body.html:1: other templates cannot be used"),
        ("{% extends 'email/_base/body.html' %}", "fr/body.html:1: other templates cannot be used"),
        ("{{ range(10) }}", "unknown variable 'range'"),
        ("\n\n{% set seen = [1] %}{{ seen.append(2) }}", "fr/body.html:3: access to attribute 'append'"),
        ("{{ 'x' * 100000000 }}", "fr/body.html:1: result too large"),
        ("{{ 9 ** 999999 }}", "fr/body.html:1: exponent too large"),
        ("{{ first_name|upper }}", "first_name, greeting, unsubscribe_url, preferences_url are filled in"),
        ("{% if first_name %}Bonjour {{ first_name }}{% endif %}", "use {{ greeting }}"),
        ("{{ unsubscribe_url[:10] }}", "are filled in for each recipient"),
    ],
)
def test_unsafe_or_broken_content_is_refused_with_file_and_line(html, expected):
    with pytest.raises(TemplateProblem) as refused:
        check(html=html)
    assert expected in str(refused.value)


def test_subject_and_text_are_checked_too():
    with pytest.raises(TemplateProblem, match=r"fr/subject.txt:1: unknown variable 'nom'"):
        check(subject="Bonjour {{ nom }}")
    with pytest.raises(TemplateProblem, match=r"fr/subject.txt: the subject is empty"):
        check(subject="{{ '' }}")
    with pytest.raises(TemplateProblem, match=r"fr/body.txt:1"):
        check(text="{% if %}")


def test_html_is_autoescaped_and_text_is_not():
    shop = LocaleContent("fr", "S", "<p>{{ partner_name }}</p>", "{{ partner_name }}")
    mail = content.render(shop, purpose="partner_offers", partner="<Acme & Co>", campaign_name="x")
    assert "<p>&lt;Acme &amp; Co&gt;</p>" in mail.html
    assert "<Acme & Co>" in mail.text


def test_the_content_folder_needs_french_and_the_three_files(tmp_path):
    folder = write_content(tmp_path / "ok")
    assert sorted(content.read_content_dir(folder)) == ["en", "fr"]
    only_en = write_content(tmp_path / "en-only", {"en": CONTENT["en"]})
    with pytest.raises(InvalidInput, match="French content"):
        content.read_content_dir(only_en)
    missing = write_content(tmp_path / "missing", {"fr": {"subject.txt": "x", "body.html": "y"}})
    with pytest.raises(InvalidInput, match=r"fr/body.txt: missing"):
        content.read_content_dir(missing)
    german = write_content(tmp_path / "de", {**CONTENT, "de": CONTENT["fr"]})
    with pytest.raises(InvalidInput, match="unsupported locale 'de'"):
        content.read_content_dir(german)
    (tmp_path / "bad" / "fr").mkdir(parents=True)
    for name in content.CONTENT_FILES:
        (tmp_path / "bad" / "fr" / name).write_bytes(b"\xff\xfe")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        content.read_content_dir(tmp_path / "bad")


def test_preview_renders_the_legal_mentions_in_the_recipients_language():
    fr = LocaleContent("fr", "Sujet", "<p>{{ greeting }}</p>", "{{ greeting }}")
    mail = content.render(fr, purpose="nouma_offers", partner=None, campaign_name="x")
    values = content.recipient_values(
        "fr", "Zoé Dupré", "https://x.example.com/u/T", "https://x.example.com/p/T"
    )
    from mailer.message import substitute

    text = substitute(mail.text, mail.substitutions_for(values))
    assert "Bonjour Zoé," in text
    assert "Vous recevez ce message car vous avez accepté de recevoir les offres de NouMa." in text
    assert "https://x.example.com/u/T" in text and "https://x.example.com/p/T" in text
    assert "Envoyé par NouMa, 10 rue de la Paix" in text


# -- audiences


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("", "empty expression"),
        ("locale ==", "syntax error"),
        ("__import__('os')", "expected a comparison"),
        ("locale == 'de'", "'de' is not one of fr, en"),
        ("shoe_size > 40", "unknown attribute 'shoe_size'"),
        ("signed_up > 'yesterday'", "expected a date YYYY-MM-DD"),
        ("locale == name", "expected a quoted value"),
        ("1 < locale < 3", "one comparison at a time"),
        ("consents > 'a'", "has several values"),
        ("locale in []", "non-empty list"),
    ],
)
def test_bad_audience_expressions_are_refused_with_where(expression, expected):
    with pytest.raises(InvalidInput) as refused:
        audience.parse(expression)
    assert expected in str(refused.value)


def test_audience_narrows_by_attributes_and_counts_each_recipient_once(db):
    # Given recipients in two locales, with various consents and record dates
    with session_scope() as session:
        fr = make_recipient(session, "fr@example.com", granted=["nouma_offers", "tender_alerts"])
        en = make_recipient(session, "en@example.com", locale="en", granted=["nouma_offers"])
        old = make_recipient(session, "old@example.com", granted=["nouma_offers"])
        make_recipient(session, "none@example.com", granted=["tender_alerts"])
        old.created_at = dt.datetime(2020, 5, 1, 12, tzinfo=dt.UTC)

    def resolve(expression):
        with session_scope(readonly=True) as session:
            return sorted(rid for rid, _ in audience.resolve(session, "nouma_offers", expression))

    assert resolve(None) == sorted([fr.id, en.id, old.id])
    assert resolve('locale == "en"') == [en.id]
    assert resolve('"tender_alerts" in consents') == [fr.id]
    assert resolve('not ("tender_alerts" in consents) and locale != "en"') == [old.id]
    assert resolve('signed_up < "2021-01-01"') == [old.id]
    assert resolve('signed_up == "2020-05-01"') == [old.id]
    assert resolve('signed_up > "2020-05-01"') == sorted([fr.id, en.id])
    assert resolve('locale in ["fr", "en"] or consents == "tender_alerts"') == sorted([fr.id, en.id, old.id])


def test_department_and_region_come_from_saved_searches(db):
    from mailer.alerts.models import Frequency, SavedSearch

    # Given recipients whose saved searches name departments and regions (one search inactive)
    with session_scope() as session:
        a = make_recipient(session, "a@example.com", granted=["nouma_offers"])
        b = make_recipient(session, "b@example.com", granted=["nouma_offers"])
        c = make_recipient(session, "c@example.com", granted=["nouma_offers"])
        for n, (who, departments, regions, active) in enumerate(
            [
                (a, ["38", "73"], [], True),
                (a, ["38"], ["84"], True),
                (b, ["75"], ["11"], True),
                (c, ["38"], [], False),
            ]
        ):
            session.add(
                SavedSearch(
                    recipient_id=who.id,
                    external_ref=f"search-{n}",
                    name=f"search {n}",
                    frequency=Frequency.DAILY,
                    departments=departments,
                    regions=regions,
                    active=active,
                )
            )
    # When audiences name them, Then each recipient comes once, inactive searches do not count
    with session_scope(readonly=True) as session:

        def resolve(expression: str) -> list[int]:
            return [rid for rid, _ in audience.resolve(session, "nouma_offers", expression)]

        assert resolve('department in ["38", "73", "01"]') == [a.id]
        assert resolve('"75" in department') == [b.id]
        assert resolve('region == "84" or region == "11"') == sorted([a.id, b.id])
        assert resolve('department != "38"') == sorted([b.id, c.id])


def test_the_schema_matches_the_models_on_both_databases(db):
    from mailer import migrations

    # Then no model change lacks its migration (alembic check), campaigns tables included
    migrations.check(db)


def test_every_message_has_a_french_translation():
    from babel.messages.pofile import read_po

    from mailer.rendering import LOCALE_DIR

    with (LOCALE_DIR / "fr" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale="fr")
    missing = [
        m.id for m in catalog if m.id and not (m.string if isinstance(m.string, str) else all(m.string))
    ]
    assert missing == []
