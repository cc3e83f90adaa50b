"""The mail/send body built directly equals what the official helpers build, field for field."""

from __future__ import annotations

import pytest
from sendgrid.helpers.mail import CustomArg, Header, Mail, Personalization, Substitution, To

from mailer.config import get_settings
from mailer.message import Envelope, OutgoingMessage
from mailer.providers.sendgrid import build_payload


def helper_personalization(envelope: Envelope) -> dict:
    personalization = Personalization()
    personalization.add_to(To(envelope.to_address, envelope.to_name or None))
    for name, value in envelope.headers.items():
        personalization.add_header(Header(name, value))
    for tag, value in envelope.substitutions.items():
        personalization.add_substitution(Substitution(tag, value))
    personalization.add_custom_arg(CustomArg("delivery_id", str(envelope.delivery_id)))
    mail = Mail()
    mail.add_personalization(personalization)
    return mail.get()["personalizations"][0]


@pytest.mark.parametrize(
    "envelope",
    [
        Envelope(1, "marie@example.com"),
        Envelope(2, "jean@example.com", "Jean Dupont"),
        Envelope(
            3,
            "a@example.com",
            "Dupont, Jean; fils",
            headers={"List-Unsubscribe": "<https://x.example.com/u/t>"},
        ),
        Envelope(4, "z@example.com", "Zoé <Dupré> & Fils", substitutions={"%%a%%": "é<&>", "%%b%%": ""}),
        Envelope(5, "e@example.com", "", headers={"A": "1", "B": "2"}, substitutions={"-x-": "y"}),
    ],
)
def test_each_personalization_is_the_helpers(envelope):
    message = OutgoingMessage("nouma_offers", "campaign", "S", "t", "<p>h</p>", (envelope,))
    body = build_payload(message, get_settings())
    assert body["personalizations"] == [helper_personalization(envelope)]


def test_order_and_the_rest_of_the_body_are_kept():
    envelopes = tuple(Envelope(i, f"p{i}@example.com") for i in range(5))
    body = build_payload(
        OutgoingMessage("nouma_offers", "campaign", "Sujet", "t", "<p>h</p>", envelopes), get_settings()
    )
    assert [p["custom_args"]["delivery_id"] for p in body["personalizations"]] == ["0", "1", "2", "3", "4"]
    assert body["subject"] == "Sujet" and [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert sorted(body["categories"]) == ["campaign", "nouma_offers"]
