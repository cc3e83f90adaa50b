"""Random bodies and headers against the one-click and webhook endpoints: no 500, no change."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.db import session_scope
from mailer.suppression import tokens
from tests.conftest import reset_process_state
from tests.factories import make_recipient
from tests.web_support import WebhookSigner, snapshot, web_client

HEADER_NAMES = st.sampled_from(
    [
        "content-type",
        "content-length",
        "origin",
        "sec-fetch-site",
        "user-agent",
        "X-Twilio-Email-Event-Webhook-Signature",
        "X-Twilio-Email-Event-Webhook-Timestamp",
        "x-anything",
    ]
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "text/plain",
        "application/json",
        "",
    ]
)
# Header values must be latin-1 without line breaks to be sent at all.
HEADER_VALUES = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=80
)
BODIES = st.one_of(
    st.binary(max_size=600),
    st.sampled_from(
        [
            b"List-Unsubscribe=One-Click&",
            b"List-Unsubscribe=One-Click&List-Unsubscribe=One-Click",
            b'--xyz\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--xyz',
            b'[{"event":"unsubscribe","email":"marie@example.com","sg_event_id":"x"}]',
            b"List-Unsubscribe=%FF%FE",
        ]
    ),
)


@pytest.fixture(scope="module")
def signer() -> WebhookSigner:
    return WebhookSigner()


def raw(headers: dict[str, str]) -> dict[str, bytes]:
    """Header values as bytes on the wire (latin-1), the way any client may send them."""
    return {name: value.encode("latin-1") for name, value in headers.items()}


def fuzz_settings():
    return settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.fixture
def world(db, monkeypatch, signer):
    monkeypatch.setenv("MAILER_SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key)
    reset_process_state()
    with session_scope() as session:
        recipient_id = make_recipient(
            session, "marie@example.com", granted=("tender_alerts", "nouma_offers")
        ).id
    return web_client(), recipient_id


@fuzz_settings()
@given(
    body=BODIES,
    content_type=CONTENT_TYPES,
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
    token_kind=st.sampled_from(["forged", "truncated", "empty-ish", "random"]),
    random_token=st.text(
        st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"), min_size=1, max_size=60
    ),
    suffix=st.sampled_from(["", "/confirm", "/undo"]),
)
def test_unsubscribe_endpoints_never_fail_and_never_change_anything(
    world, body, content_type, headers, token_kind, random_token, suffix
):
    client, recipient_id = world
    good = tokens.unsubscribe_token(recipient_id, "nouma_offers")
    token = {
        "forged": good[:-3] + "abc",
        "truncated": good[: len(good) // 2],
        "empty-ish": ".",
        "random": random_token,
    }[token_kind]
    before = snapshot()
    sent = {"content-type": content_type, **headers} if content_type else dict(headers)
    sent.pop("content-length", None)  # the client computes it; a wrong one is a transport error
    response = client.post(f"/u/{token}{suffix}", content=body, headers=raw(sent))
    assert response.status_code < 500
    assert snapshot() == before


@fuzz_settings()
@given(
    body=BODIES,
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
    sign=st.sampled_from(["none", "stale", "other-key", "good-then-altered"]),
)
def test_webhook_never_fails_and_stores_nothing_unsigned(world, signer, body, headers, sign):
    client, _ = world
    sent = dict(headers)
    sent.pop("content-length", None)
    if sign == "stale":
        sent.update(signer.headers(body, timestamp=int(time.time()) - 3600))
    elif sign == "other-key":
        sent.update(WebhookSigner().headers(body))
    elif sign == "good-then-altered":
        sent.update(signer.headers(body))
        body = body + b"\x00"
    before = snapshot()
    response = client.post("/webhooks/sendgrid", content=body, headers=raw(sent))
    assert response.status_code == 400
    assert snapshot() == before
