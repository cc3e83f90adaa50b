"""The two backends: SendGrid payloads valid against the official schema; the outbox's .eml files."""

from __future__ import annotations

import json
from email import message_from_bytes, policy

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailer.config import get_settings
from mailer.message import Envelope, OutgoingMessage
from mailer.providers import get_backend
from mailer.providers.errors import (
    KeyRefused,
    PermanentSendError,
    RateLimited,
    SendError,
    TransientSendError,
)
from mailer.providers.outbox import OutboxBackend, build_eml
from mailer.providers.sendgrid import build_payload, retry_after_ms
from tests.conftest import shared_data
from tests.fakes.sendgrid import RateLimit, Reject, load_validator, violations_of


def message(n: int, *, purpose: str = "nouma_offers", substitutions: bool = False) -> OutgoingMessage:
    envelopes = tuple(
        Envelope(
            delivery_id=1000 + i,
            to_address=f"person{i}@example.com",
            to_name=f"Person {i}" if i % 2 else None,
            headers={
                "List-Unsubscribe": f"<https://mailer.example.com/u/token{i}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            substitutions={"-first_name-": f"Person {i}"} if substitutions else {},
        )
        for i in range(n)
    )
    return OutgoingMessage(
        purpose=purpose,
        kind="test_message",
        subject="Bonjour -first_name-" if substitutions else "Offres de novembre",
        text="Texte pour -first_name-\n",
        html="<p>HTML pour -first_name-</p>",
        envelopes=envelopes,
    )


@pytest.fixture(scope="module")
def validator():
    shared_data("sendgrid", "mail_send_request_schema.resolved.json")
    return load_validator()


@pytest.mark.parametrize("count", [1, 2, 1000])
@pytest.mark.parametrize("substitutions", [False, True])
def test_payloads_are_valid_against_the_official_schema(validator, count, substitutions, monkeypatch):
    monkeypatch.setenv("MAILER_SENDGRID_ASM_GROUPS", "nouma_offers=4242")
    from mailer.config import reset_settings

    reset_settings()
    body = build_payload(message(count, substitutions=substitutions), get_settings())
    raw = json.dumps(body)
    assert violations_of(body, len(raw), validator) == []
    assert len(body["personalizations"]) == count
    assert body["asm"] == {"group_id": 4242}
    assert body["content"][0]["type"] == "text/plain"
    first = body["personalizations"][0]
    assert first["custom_args"] == {"delivery_id": "1000"}
    assert first["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_fake_refuses_what_sendgrid_refuses(validator):
    body = build_payload(message(2), get_settings())
    body["personalizations"][1]["to"][0]["email"] = body["personalizations"][0]["to"][0]["email"]
    del body["from"]
    problems = violations_of(body, 10, validator)
    assert any("'from' is a required property" in p for p in problems)
    assert any("appears twice" in p for p in problems)


def test_the_official_helpers_bodies_pass_our_validator(validator):
    # The official helper's own expected bodies: two are known to disagree with the spec.
    bodies = json.loads(shared_data("sendgrid", "mail_send_expected_bodies.json").read_text())["bodies"]
    valid = [name for name, (body, *_) in bodies.items() if not violations_of(body, 0, validator, ours=False)]
    assert len(valid) >= len(bodies) - 2


def test_more_than_a_thousand_recipients_is_refused_before_sending():
    with pytest.raises(ValueError, match="1 to 1000"):
        build_payload(message(1001), get_settings())


def test_custom_args_hold_ids_only():
    body = build_payload(message(3), get_settings())
    for p in body["personalizations"]:
        assert list(p["custom_args"]) == ["delivery_id"] and p["custom_args"]["delivery_id"].isdigit()
    assert body["categories"] == ["test_message", "nouma_offers"] or set(body["categories"]) == {
        "test_message",
        "nouma_offers",
    }


def test_retry_after_reads_reset_header_and_clamps():
    import httpx

    response = httpx.Response(429, headers={"X-RateLimit-Reset": "1005"})
    assert retry_after_ms(response, now=1000) == 5000
    assert retry_after_ms(httpx.Response(429, headers={"Retry-After": "7"}), now=0) == 7000
    assert retry_after_ms(httpx.Response(429), now=0) == 1000
    assert retry_after_ms(httpx.Response(429, headers={"X-RateLimit-Reset": "999999"}), now=0) == 600_000


@pytest.mark.parametrize(
    "answer,error_class,status",
    [
        (Reject(401, "The provided authorization grant is invalid, expired, or revoked"), KeyRefused, 401),
        (Reject(403, "access forbidden"), KeyRefused, 403),
        (Reject(400, "The from address does not match a verified Sender Identity"), PermanentSendError, 400),
        (Reject(413, "Payload Too Large"), PermanentSendError, 413),
        (Reject(503, "Service Unavailable"), TransientSendError, 503),
        (RateLimit(reset_in=1), RateLimited, 429),
    ],
    ids=["401", "403", "400", "413", "503", "429"],
)
def test_each_refusal_is_an_error_class_carrying_its_status(fake_sendgrid, answer, error_class, status):
    # Given SendGrid answering the next request with a refusal
    fake_sendgrid.script(answer)
    # When the backend sends a message
    with pytest.raises(SendError) as raised:
        get_backend().send(message(1))
    # Then the class says what to do with it, and the error carries SendGrid's status
    assert type(raised.value) is error_class
    assert raised.value.status_code == status
    assert raised.value.detail.startswith(f"{status}: ")


def test_outbox_writes_one_eml_per_envelope_with_sendgrid_headers(tmp_path):
    backend = OutboxBackend(tmp_path)
    provider_id = backend.send(message(2, substitutions=True))
    assert provider_id.startswith("outbox-")
    for i in range(2):
        parsed = message_from_bytes(backend.path_for(1000 + i).read_bytes(), policy=policy.default)
        assert parsed["To"].addresses[0].addr_spec == f"person{i}@example.com"
        assert parsed["Subject"] == f"Bonjour Person {i}"  # substitutions applied as SendGrid would
        assert parsed["List-Unsubscribe"] == f"<https://mailer.example.com/u/token{i}>"
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert json.loads(parsed["X-Mailer-Custom-Args"]) == {"delivery_id": str(1000 + i)}
        assert parsed.get_body(("plain",)).get_content() == f"Texte pour Person {i}\n"
        assert parsed.get_body(("html",)).get_content().strip() == f"<p>HTML pour Person {i}</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["delivery-1000.eml", "delivery-1001.eml"]


@settings(max_examples=300, deadline=None)
@given(
    subject=st.lists(
        st.sampled_from(
            ["é", "très", "«\u00a0Voirie\u00a0»", "d’offres", "Isère", "à", "x" * 30, "plain", "€"]
        ),
        min_size=1,
        max_size=40,
    ).map(" ".join)
)
@example(subject=" ".join(["x" * 30, "x" * 30, "plain", "plain"]))
def test_any_french_subject_survives_the_outbox(subject):
    # Python's default header folding once dropped the space between two encoded-words.
    mail = OutgoingMessage(
        "tender_alerts", "test_message", subject, "t\n", "<p>h</p>", (Envelope(1, "a@example.com", "Hélène"),)
    )
    parsed = message_from_bytes(
        build_eml(mail, mail.envelopes[0], "outbox-x").as_bytes(), policy=policy.default
    )
    assert parsed["Subject"] == subject
    assert parsed["To"].addresses[0].display_name == "Hélène"


def test_the_sessions_fake_is_fresh_for_each_test(sendgrid_server):
    # Given a server that answered, counted and still has behaviours scripted
    from mailer.providers.sendgrid import SendGridBackend

    backend = SendGridBackend(settings_for(sendgrid_server))
    sendgrid_server.reset()
    sendgrid_server.script(Reject(500), Reject(500))
    with pytest.raises(TransientSendError):
        backend.send(message(2))
    assert sendgrid_server.requests and sendgrid_server.request_count == 1
    # When it is reset for the next test
    sendgrid_server.reset()
    # Then it has seen nothing and accepts the next request, as a freshly started one would
    assert sendgrid_server.requests == [] and sendgrid_server.request_count == 0
    try:
        backend.send(message(2))
    finally:
        backend.close()
    assert [r.status for r in sendgrid_server.requests] == [202]
    assert sendgrid_server.accepted_personalizations == 2


def settings_for(server):
    from pydantic import SecretStr

    return get_settings().model_copy(
        update={"sendgrid_api_key": SecretStr(server.api_key), "sendgrid_api_url": server.url}
    )
