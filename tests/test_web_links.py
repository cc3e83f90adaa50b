"""The links in every mail: RFC 8058 one-click, the confirmation page, undo, the preference centre."""

from __future__ import annotations

import json

import pytest

from mailer.db import session_scope
from mailer.models import ConsentAction, ConsentSource, SuppressionReason
from mailer.suppression import tokens
from mailer.suppression.entries import entries_for
from mailer.web import csrf
from tests.conftest import reset_process_state, shared_data
from tests.factories import make_recipient, oppose
from tests.web_support import (
    FORM_ENCODED,
    ONE_CLICK_BODY,
    consent_events,
    consents,
    form_token,
    post_form,
    snapshot,
    web_client,
)

ALL = ("tender_alerts", "nouma_offers", "partner_offers")


def given_recipient(locale: str = "fr", granted=("tender_alerts", "nouma_offers")) -> int:
    with session_scope() as session:
        return make_recipient(session, "marie@example.com", locale=locale, granted=granted).id


def one_click_examples() -> dict:
    return json.loads(shared_data("unsubscribe", "list_unsubscribe_examples.json").read_text())[
        "rfc8058_examples"
    ]


def content_type_of(head: str) -> str:
    (line,) = [h for h in head.split("\r\n") if h.lower().startswith("content-type:")]
    return line.split(":", 1)[1].strip()


def multipart(value: str = "One-Click", name: str = "List-Unsubscribe", extra: str = "") -> tuple[bytes, str]:
    disposition = f'Content-Disposition: form-data; name="{name}"{extra}'
    body = f"--b0undary\r\n{disposition}\r\n\r\n{value}\r\n--b0undary--\r\n".encode()
    return body, "multipart/form-data; boundary=b0undary"


ACCEPTED_ONE_CLICKS = {
    "form-encoded (RFC 8058 8.1)": lambda: (
        one_click_examples()["post_urlencoded_8_1"].split("\r\n\r\n", 1)[1].encode(),
        "application/x-www-form-urlencoded",
    ),
    "form-encoded with trailing CRLF": lambda: (
        ONE_CLICK_BODY + b"\r\n",
        "application/x-www-form-urlencoded",
    ),
    "form-encoded with a charset": lambda: (
        ONE_CLICK_BODY,
        "application/x-www-form-urlencoded; charset=utf-8",
    ),
    "multipart (RFC 2046 delimiters)": lambda: multipart(),
    "multipart, RFC 8058 8.3 as printed": lambda: (
        one_click_examples()["post_multipart_8_3_as_printed"]["body"].encode(),
        content_type_of(one_click_examples()["post_multipart_8_3_as_printed"]["request_line_and_headers"]),
    ),
    "multipart, RFC 8058 8.3 with errata": lambda: (
        one_click_examples()["post_multipart_8_3_with_errata"]["body"].encode(),
        content_type_of(one_click_examples()["post_multipart_8_3_with_errata"]["request_line_and_headers"]),
    ),
}


@pytest.mark.parametrize("case", list(ACCEPTED_ONE_CLICKS))
def test_one_click_post_withdraws_at_once(db, case):
    # Given a recipient of NouMa's offers and the link in their mail
    recipient_id = given_recipient()
    token = tokens.unsubscribe_token(recipient_id, "nouma_offers")
    body, content_type = ACCEPTED_ONE_CLICKS[case]()

    # When their mail client POSTs the one-click request (no cookie, no session)
    response = web_client().post(
        f"/u/{token}", content=body, headers={"content-type": content_type, "user-agent": "MailClient/1.0"}
    )

    # Then 200 with an empty body, no redirect, and that purpose only is withdrawn, with its proof
    assert (response.status_code, response.content) == (200, b"")
    assert consents(recipient_id) == {"tender_alerts": True, "nouma_offers": False}
    last = consent_events(recipient_id)[-1]
    assert (last.purpose, last.action, last.source) == (
        "nouma_offers",
        ConsentAction.WITHDRAWN,
        ConsentSource.ONE_CLICK,
    )
    assert last.ip == "testclient" and last.user_agent == "MailClient/1.0"


def test_a_second_one_click_is_a_success_that_records_nothing(db):
    recipient_id = given_recipient()
    url = f"/u/{tokens.unsubscribe_token(recipient_id, 'nouma_offers')}"
    client = web_client()
    first = client.post(url, content=ONE_CLICK_BODY, headers=FORM_ENCODED)
    events = len(consent_events(recipient_id))
    second = client.post(url, content=ONE_CLICK_BODY, headers=FORM_ENCODED)
    assert first.status_code == second.status_code == 200
    assert len(consent_events(recipient_id)) == events


REFUSED_ONE_CLICKS = {
    "List-Unsubscribe=No": (b"List-Unsubscribe=No", "application/x-www-form-urlencoded", 400),
    "an extra field": (b"List-Unsubscribe=One-Click&confirm=yes", "application/x-www-form-urlencoded", 400),
    "text/plain": (ONE_CLICK_BODY, "text/plain", 415),
    "no content type": (ONE_CLICK_BODY, "", 415),
    "JSON": (b'{"List-Unsubscribe": "One-Click"}', "application/json", 415),
    "empty body": (b"", "application/x-www-form-urlencoded", 400),
    "oversized body": (ONE_CLICK_BODY + b"&x=" + b"y" * 5000, "application/x-www-form-urlencoded", 413),
    "a file part": (*multipart(extra='; filename="x.txt"'), 400),
    "multipart wrong value": (*multipart(value="Yes"), 400),
    "multipart wrong name": (*multipart(name="unsubscribe"), 400),
    "multipart unclosed": (
        b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click',
        "multipart/form-data; boundary=b",
        400,
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_ONE_CLICKS))
def test_anything_but_the_one_click_body_is_refused_and_changes_nothing(db, case):
    recipient_id = given_recipient()
    body, content_type, status = REFUSED_ONE_CLICKS[case]
    before = snapshot()
    headers = {"content-type": content_type} if content_type else {}
    response = web_client().post(
        f"/u/{tokens.unsubscribe_token(recipient_id, 'nouma_offers')}", content=body, headers=headers
    )
    assert response.status_code == status
    assert snapshot() == before


def test_get_changes_nothing_and_offers_a_confirmation(db):
    # Given a link scanner, or the person, opening the link
    recipient_id = given_recipient(locale="en")
    token = tokens.unsubscribe_token(recipient_id, "nouma_offers")
    before = snapshot()
    client = web_client()
    page = client.get(f"/u/{token}")
    head = client.head(f"/u/{token}")
    # Then nothing changed; the page asks, in English, with a button and the preference centre
    assert snapshot() == before
    assert page.status_code == 200 and head.status_code == 200
    assert "Stop receiving “NouMa&#39;s offers”?" in page.text
    assert f'action="/u/{token}/confirm"' in page.text
    assert "/preferences/" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "script" not in page.text.lower() and "http://" not in page.text


def test_confirm_then_undo_are_recorded_as_such(db):
    # Given the confirmation page of NouMa's offers, in French
    recipient_id = given_recipient()
    token = tokens.unsubscribe_token(recipient_id, "nouma_offers")
    client = web_client()
    page = client.get(f"/u/{token}")
    assert "Ne plus recevoir «\u00a0Offres de NouMa\u00a0»\u00a0?" in page.text

    # When the person confirms
    done = post_form(client, f"/u/{token}/confirm", [("form_token", form_token(page.text))])

    # Then the purpose is withdrawn (source unsubscribe_link) and an undo is offered
    assert done.status_code == 200 and "Vous êtes désabonné" in done.text
    assert consents(recipient_id)["nouma_offers"] is False
    withdrawal = consent_events(recipient_id)[-1]
    assert (withdrawal.source, withdrawal.action) == (ConsentSource.UNSUBSCRIBE_LINK, ConsentAction.WITHDRAWN)

    # When they click undo
    undone = post_form(client, f"/u/{token}/undo", [("form_token", form_token(done.text))])

    # Then it is granted again, noting the withdrawal it reverses and the wording of the original grant
    assert undone.status_code == 200 and "Votre abonnement est rétabli" in undone.text
    assert consents(recipient_id)["nouma_offers"] is True
    regrant = consent_events(recipient_id)[-1]
    assert (
        regrant.action == ConsentAction.GRANTED and f"reverses consent event {withdrawal.id}" in regrant.note
    )
    assert regrant.wording_version == "test-1"
    # ... and a second undo has nothing to undo
    again = post_form(client, f"/u/{token}/undo", [("form_token", form_token(done.text))])
    assert "Vous êtes abonné" in again.text and len(consent_events(recipient_id)) == 4


def test_undo_cannot_reverse_a_withdrawal_made_elsewhere(db):
    from tests.factories import withdraw

    recipient_id = given_recipient()
    withdraw(recipient_id, "nouma_offers")  # through the support desk
    token = tokens.unsubscribe_token(recipient_id, "nouma_offers")
    client = web_client()
    # (the page of an already withdrawn purpose offers no undo; the form is posted as crafted)
    assert "Vous êtes déjà désabonné" in client.get(f"/u/{token}").text
    response = post_form(client, f"/u/{token}/undo", [("form_token", csrf.form_token(token))])
    assert "Rien à annuler" in response.text
    assert consents(recipient_id)["nouma_offers"] is False


def forged_tokens(recipient_id: int) -> dict[str, str]:
    good = tokens.unsubscribe_token(recipient_id, "nouma_offers")
    payload, signature = good.split(".")
    other = tokens.unsubscribe_token(recipient_id + 1, "nouma_offers").split(".")[0]
    return {
        "truncated": good[:-6],
        "signature cut off": payload,
        "altered signature": f"{payload}.{signature[::-1]}",
        "another recipient's payload": f"{other}.{signature}",
        "a preference token": tokens.preferences_token(recipient_id),
        "signed with an unknown key": "WzEsMV0.bm90LWEtcmVhbC1zaWduYXR1cmU",
        "garbage": "%00%ff<script>",
    }


@pytest.mark.parametrize("kind", list(forged_tokens(1)))
def test_forged_tokens_change_nothing_and_get_a_clear_page(db, kind):
    # Given an English-speaking recipient and a link that was cut, altered or forged
    recipient_id = given_recipient(locale="en")
    token = forged_tokens(recipient_id)[kind]
    before = snapshot()
    client = web_client()
    # When it is opened, one-clicked, confirmed and undone
    responses = [
        client.get(f"/u/{token}"),
        client.post(f"/u/{token}", content=ONE_CLICK_BODY, headers=FORM_ENCODED),
        post_form(client, f"/u/{token}/confirm", [("form_token", "x")]),
        post_form(client, f"/u/{token}/undo", [("form_token", "x")]),
    ]
    # Then nothing changed, and each answer is the "not valid" page
    assert snapshot() == before
    for response in responses:
        assert response.status_code in (400, 404), response.text
    pages = [r.text for r in responses if r.status_code == 400]
    assert pages
    # ... in the language the browser asks for, never the one of whoever the token names
    assert all("Ce lien n’est pas valide" in page for page in pages)
    english = client.get(f"/u/{token}", headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"})
    assert english.status_code in (400, 404)
    if english.status_code == 400:
        assert "This link is not valid" in english.text


def test_an_unsubscribe_token_for_another_purpose_withdraws_that_purpose_only(db):
    recipient_id = given_recipient()
    token = tokens.unsubscribe_token(recipient_id, "tender_alerts")
    web_client().post(f"/u/{token}", content=ONE_CLICK_BODY, headers=FORM_ENCODED)
    assert consents(recipient_id) == {"tender_alerts": False, "nouma_offers": True}


def test_links_signed_with_an_older_key_keep_working(db, monkeypatch):
    # Given a link signed before the key was rotated
    recipient_id = given_recipient()
    monkeypatch.setenv("MAILER_SECRET_KEY", "key-of-2025")
    reset_process_state()
    old_link = tokens.unsubscribe_token(recipient_id, "nouma_offers")
    # When the key is rotated (new key first, old one kept) the old link still works
    monkeypatch.setenv("MAILER_SECRET_KEY", "key-of-2026,key-of-2025")
    reset_process_state()
    assert tokens.unsubscribe_token(recipient_id, "nouma_offers") != old_link
    response = web_client().post(f"/u/{old_link}", content=ONE_CLICK_BODY, headers=FORM_ENCODED)
    assert response.status_code == 200 and consents(recipient_id)["nouma_offers"] is False
    # ... and once the old key is dropped, it is refused and changes nothing
    monkeypatch.setenv("MAILER_SECRET_KEY", "key-of-2026")
    reset_process_state()
    before = snapshot()
    assert web_client().get(f"/u/{old_link}").status_code == 400
    assert snapshot() == before


def test_forms_need_our_form_token_and_a_same_origin_browser(db):
    recipient_id = given_recipient()
    token = tokens.unsubscribe_token(recipient_id, "nouma_offers")
    client = web_client()
    page = client.get(f"/u/{token}")
    good = form_token(page.text)
    before = snapshot()
    other_link = tokens.unsubscribe_token(recipient_id, "tender_alerts")
    refused = [
        post_form(client, f"/u/{token}/confirm", []),
        post_form(client, f"/u/{token}/confirm", [("form_token", "forged")]),
        post_form(
            client, f"/u/{token}/confirm", [("form_token", form_token(client.get(f"/u/{other_link}").text))]
        ),
        post_form(client, f"/u/{token}/confirm", [("form_token", good)], **{"sec-fetch-site": "cross-site"}),
        post_form(
            client,
            f"/u/{token}/confirm",
            [("form_token", good)],
            **{"sec-fetch-site": "", "origin": "https://evil.example"},
        ),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert "Cette page a expiré" in refused[0].text
    assert snapshot() == before


def test_the_preference_centre_switches_purposes_with_proof(db):
    # Given the preference centre of a recipient of tender alerts and NouMa's offers
    recipient_id = given_recipient()
    client = web_client()
    url = f"/preferences/{tokens.preferences_token(recipient_id)}"
    page = client.get(url)
    assert page.status_code == 200 and "Vos préférences d’e-mails" in page.text
    # Partner offers cannot be turned on without a configured partner list
    assert 'value="partner_offers" aria-describedby="hint-partner_offers" disabled' in page.text

    # When they keep tender alerts only
    saved = post_form(
        client,
        url,
        [
            ("form_token", form_token(page.text)),
            ("shown", "tender_alerts"),
            ("shown", "nouma_offers"),
            ("granted", "tender_alerts"),
        ],
    )

    # Then NouMa's offers are withdrawn with the preference centre as source, the rest unchanged
    assert saved.status_code == 200 and "Vos préférences sont enregistrées" in saved.text
    assert consents(recipient_id) == {"tender_alerts": True, "nouma_offers": False}
    last = consent_events(recipient_id)[-1]
    assert (last.source, last.purpose) == (ConsentSource.PREFERENCE_CENTRE, "nouma_offers")

    # When they turn NouMa's offers on again, then it is a grant with the centre's wording version
    post_form(
        client,
        url,
        [("form_token", form_token(saved.text)), ("shown", "nouma_offers"), ("granted", "nouma_offers")],
    )
    grant = consent_events(recipient_id)[-1]
    assert grant.action == ConsentAction.GRANTED and grant.wording_version == "preference-centre-2026-11"


def test_partner_offers_granted_in_the_centre_name_the_partner_list(db, monkeypatch):
    monkeypatch.setenv("MAILER_PARTNER_LIST_VERSION", "partners-2026-10")
    monkeypatch.setenv("MAILER_PARTNERS", "Marchés Plus, Appels Conseil")
    reset_process_state()
    recipient_id = given_recipient(locale="en")
    client = web_client()
    url = f"/preferences/{tokens.preferences_token(recipient_id)}"
    page = client.get(url)
    assert "Partners: Marchés Plus, Appels Conseil." in page.text
    post_form(
        client,
        url,
        [("form_token", form_token(page.text)), ("shown", "partner_offers"), ("granted", "partner_offers")],
    )
    grant = consent_events(recipient_id)[-1]
    assert (grant.purpose, grant.partner_list_version) == ("partner_offers", "partners-2026-10")


def test_stop_everything_opposes_all_mail(db):
    recipient_id = given_recipient(granted=ALL)
    client = web_client()
    url = f"/preferences/{tokens.preferences_token(recipient_id)}"
    page = client.get(url)
    stopped = post_form(client, f"{url}/stop", [("form_token", form_token(page.text))])
    assert stopped.status_code == 200 and "NouMa n’enverra plus aucun e-mail" in stopped.text
    assert consents(recipient_id) == dict.fromkeys(ALL, False)
    with session_scope(readonly=True) as session:
        (entry,) = entries_for(session, "marie@example.com")
        assert (entry.scope, entry.reason, entry.source) == (
            "all",
            SuppressionReason.OPPOSITION,
            "preference_centre",
        )
    # The centre now says so, and offers no switch
    again = client.get(url)
    assert (
        "Plus aucun e-mail n’est envoyé à cette adresse" in again.text and "<fieldset disabled>" in again.text
    )


def test_a_suppressed_purpose_is_not_withdrawn_by_saving_the_rest(db):
    recipient_id = given_recipient(granted=ALL)
    oppose("marie@example.com", scope="partner_offers", reason=SuppressionReason.SPAM_COMPLAINT)
    client = web_client()
    url = f"/preferences/{tokens.preferences_token(recipient_id)}"
    page = client.get(url)
    # the form lists only switchable purposes, as a browser would submit it
    shown = [
        ("shown", p) for p in ("tender_alerts", "nouma_offers") if f'name="shown" value="{p}"' in page.text
    ]
    assert 'name="shown" value="partner_offers"' not in page.text
    post_form(
        client,
        url,
        [
            ("form_token", form_token(page.text)),
            *shown,
            ("granted", "tender_alerts"),
            ("granted", "nouma_offers"),
        ],
    )
    assert consents(recipient_id) == dict.fromkeys(ALL, True)


def test_erased_recipients_links_change_nothing(db):
    from mailer import recipients

    recipient_id = given_recipient(locale="en")
    with session_scope() as session:
        recipients.erase(session, "marie@example.com")
    before = snapshot()
    client = web_client()
    token = tokens.unsubscribe_token(recipient_id, "nouma_offers")
    assert client.get(f"/u/{token}").status_code == 410
    assert "no longer in use" in client.get(f"/preferences/{tokens.preferences_token(recipient_id)}").text
    assert client.post(f"/u/{token}", content=ONE_CLICK_BODY, headers=FORM_ENCODED).status_code == 200
    assert snapshot() == before


def test_healthz_and_unknown_pages(sqlite_db):
    client = web_client()
    assert client.get("/healthz").json() == {"status": "ok"}
    missing = client.get("/nothing-here")
    assert missing.status_code == 404 and "Page introuvable" in missing.text
    assert client.put("/healthz").status_code == 405


def test_every_message_has_a_french_translation():
    from babel.messages.pofile import read_po

    from mailer.rendering import LOCALE_DIR

    with (LOCALE_DIR / "fr" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle)
    untranslated = [m.id for m in catalog if m.id and (not m.string or m.fuzzy)]
    assert untranslated == []
    with (LOCALE_DIR / "messages.pot").open("rb") as handle:
        template = read_po(handle)
    assert {m.id for m in template if m.id} <= {m.id for m in catalog if m.id}


def test_a_failing_page_keeps_its_security_headers_and_logs_one_line(tmp_path, monkeypatch, caplog):
    # Given a web process whose database cannot be opened (a folder where the file should be)
    (tmp_path / "mailer.sqlite").mkdir()
    monkeypatch.setenv("MAILER_DATABASE_URL", f"sqlite:///{tmp_path / 'mailer.sqlite'}")
    from mailer.config import reset_settings

    reset_settings()
    token = tokens.preferences_token(12)
    # When a link is opened
    with caplog.at_level("INFO", logger="mailer.web"):
        response = web_client().get(f"/preferences/{token}")
    # Then the reader gets the error page with every security header
    assert response.status_code == 500
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "Traceback" not in response.text
    # ... and the log says what failed in one line, without the token or a traceback
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(failures) == 1 and "OperationalError" in failures[0].getMessage()
    assert failures[0].exc_info is None
    assert token not in caplog.text and "Traceback" not in caplog.text
