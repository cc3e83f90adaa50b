"""Tracking only with consent: every request states its tracking, and opens and clicks are measured
only in requests whose every recipient consented to it (CNIL, 2025: individual open and click
measurement needs consent). The fake SendGrid refuses any request that leaves tracking to the
account's defaults, in every test that uses it."""

from __future__ import annotations

import email
from email import policy

import sqlalchemy as sa

from mailer import consent
from mailer.batch import BatchSpec
from mailer.db import session_scope
from mailer.delivery import deliver_batch
from mailer.models import ConsentEvent, ConsentSource
from tests.factories import make_recipient
from tests.web_support import SAME_ORIGIN, form_token, post_form, web_client


def given_readers(tracked: int, untracked: int) -> list[int]:
    ids = []
    with session_scope() as session:
        for i in range(tracked + untracked):
            recipient = make_recipient(session, f"reader{i}@example.com", granted=["tender_alerts"])
            if i < tracked:
                consent.grant(
                    session, recipient.id, "tracking", consent.Proof(source=ConsentSource.SIGNUP_FORM)
                )
            ids.append(recipient.id)
    return ids


def test_a_batch_is_split_by_tracking_consent_and_every_request_states_it(db, fake_sendgrid):
    # Given three readers who consented to tracking and two who did not
    ids = given_readers(tracked=3, untracked=2)
    # When a batch goes out
    deliver_batch(BatchSpec("test_message", "tender_alerts", "test:tracking", tuple(ids)))
    # Then opens and clicks are measured for the three only, no request mixing them
    by_tracking: dict[bool, list[str]] = {}
    for request in fake_sendgrid.requests:
        by_tracking.setdefault(request.body["tracking_settings"]["open_tracking"]["enable"], []).extend(
            request.recipients
        )
    by_tracking = {state: sorted(addresses) for state, addresses in by_tracking.items()}
    assert by_tracking == {
        True: ["reader0@example.com", "reader1@example.com", "reader2@example.com"],
        False: ["reader3@example.com", "reader4@example.com"],
    }
    for request in fake_sendgrid.requests:
        settings = request.body["tracking_settings"]
        measured = settings["open_tracking"]["enable"]
        assert settings["click_tracking"] == {"enable": measured, "enable_text": measured}
        assert settings["subscription_tracking"] == {"enable": False}
        assert settings["ganalytics"] == {"enable": False}


def test_a_withdrawn_tracking_consent_turns_measurement_off(db, fake_sendgrid):
    (reader,) = given_readers(tracked=1, untracked=0)
    with session_scope() as session:
        consent.withdraw(session, reader, "tracking", consent.Proof(source=ConsentSource.SUPPORT_REQUEST))
    deliver_batch(BatchSpec("test_message", "tender_alerts", "test:withdrawn", (reader,)))
    (request,) = fake_sendgrid.requests
    assert request.body["tracking_settings"]["open_tracking"]["enable"] is False


def test_the_fake_refuses_a_request_that_leaves_tracking_to_the_account():
    from tests.fakes.sendgrid import tracking_left_to_the_account

    assert tracking_left_to_the_account({}) != []
    assert tracking_left_to_the_account({"tracking_settings": {"open_tracking": {"enable": False}}}) != []


def test_the_outbox_shows_whether_a_mail_is_measured(db, isolated_environment):
    ids = given_readers(tracked=1, untracked=1)
    deliver_batch(BatchSpec("test_message", "tender_alerts", "test:outbox", tuple(ids)))
    seen = {}
    for path in isolated_environment.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        seen[str(message["To"])] = str(message["X-Mailer-Tracking"])
    assert seen == {"reader0@example.com": "opens-and-clicks", "reader1@example.com": "off"}


def test_people_grant_and_withdraw_tracking_in_the_preference_centre_with_proof(db):
    from mailer.suppression import tokens

    (reader,) = given_readers(tracked=0, untracked=1)
    client = web_client()
    url = f"/preferences/{tokens.preferences_token(reader)}"
    page = client.get(url).text
    assert 'value="tracking"' in page
    shown = [("shown", key) for key in ("tender_alerts", "nouma_offers", "tracking")]
    post_form(
        client,
        url,
        [("form_token", form_token(page)), *shown, ("granted", "tender_alerts"), ("granted", "tracking")],
        **SAME_ORIGIN,
    )
    with session_scope(readonly=True) as session:
        events = session.scalars(
            sa.select(ConsentEvent).where(
                ConsentEvent.recipient_id == reader, ConsentEvent.purpose == "tracking"
            )
        ).all()
    assert [(e.action.value, e.source.value) for e in events] == [("granted", "preference_centre")]
    assert events[0].ip is not None


def test_a_recipient_file_may_carry_tracking_consent(db, tmp_path):
    import json

    from mailer.cli import main

    path = tmp_path / "people.jsonl"
    path.write_text(
        json.dumps(
            {"address": "t@example.com", "consents": {"tracking": {"granted": True, "source": "signup_form"}}}
        )
        + "\n"
    )
    assert main(["recipients", "import", str(path)]) == 0
    with session_scope(readonly=True) as session:
        assert session.scalar(sa.select(sa.func.count()).where(ConsentEvent.purpose == "tracking")) == 1


def test_digests_sharing_a_request_are_split_by_tracking(db, fake_sendgrid):
    from tests.alert_factories import add_search, add_tenders, run_window, tender

    # Given four French readers with a digest due, two of whom consented to tracking
    given_readers(tracked=2, untracked=2)
    for i in range(4):
        add_search(f"reader{i}@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Voirie"))
    # When the window runs
    run_window()
    # Then the locale's digests go in two requests, one measured, one not
    requests = sorted(
        (r.body["tracking_settings"]["open_tracking"]["enable"], sorted(r.recipients))
        for r in fake_sendgrid.requests
    )
    assert requests == [
        (False, ["reader2@example.com", "reader3@example.com"]),
        (True, ["reader0@example.com", "reader1@example.com"]),
    ]
