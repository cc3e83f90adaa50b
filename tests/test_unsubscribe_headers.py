"""List-Unsubscribe headers of every mail, against the RFC 2369 / RFC 8058 examples."""

from __future__ import annotations

import email
import email.policy
import json
import re

import pytest

from mailer.batch import BatchSpec
from mailer.delivery import deliver_batch
from mailer.emails import unsubscribe_headers
from mailer.message import Envelope, OutgoingMessage
from mailer.providers.outbox import build_eml
from mailer.suppression.tokens import read_unsubscribe_token, unsubscribe_url
from tests.conftest import reset_process_state, shared_data
from tests.factories import all_deliveries, make_recipients


def examples() -> dict:
    return json.loads(shared_data("unsubscribe", "list_unsubscribe_examples.json").read_text())


def rfc2369_urls(value: str) -> list[str]:
    """The URLs of a List-* header the way a receiver reads them (parse_expectation of the examples)."""
    unfolded = re.sub(r"\r?\n[ \t]+", " ", value)
    without_comments = re.sub(r"\([^)]*\)", "", unfolded)
    return re.findall(r"<([^>]*)>", without_comments)


def test_our_parser_reads_every_rfc2369_example():
    # Given the RFC 2369 List-Unsubscribe examples, when parsed, then each yields its URLs
    found = [rfc2369_urls(v) for v in examples()["rfc2369_header_examples"]["List-Unsubscribe"]]
    assert found == [
        ["mailto:list@host.com?subject=unsubscribe"],
        ["mailto:list-manager@host.com?body=unsubscribe%20list"],
        ["mailto:list-off@host.com"],
        [
            "http://www.host.com/list.cgi?cmd=unsub&lst=list",
            "mailto:list-request@host.com?subject=unsubscribe",
        ],
    ]


def eml_headers(link: str) -> tuple[email.message.EmailMessage, str]:
    message = OutgoingMessage(
        purpose="nouma_offers",
        kind="test_message",
        subject="Offres",
        text="texte",
        html="<p>texte</p>",
        envelopes=(Envelope(1, "marie@example.com", headers=unsubscribe_headers(link)),),
    )
    raw = build_eml(message, message.envelopes[0], "outbox-1").as_bytes()
    return email.message_from_bytes(raw, policy=email.policy.default), raw.decode().split("\n\n", 1)[0]


@pytest.mark.parametrize("mailto", [None, "desinscription@nouma.fr", "mailto:desinscription@nouma.fr"])
@pytest.mark.parametrize("recipient_id", [1, 123_456_789_012])
def test_headers_follow_rfc8058_sender_rules(monkeypatch, mailto, recipient_id):
    # Given the configured mailto (or none) and a long or short link
    if mailto:
        monkeypatch.setenv("MAILER_UNSUBSCRIBE_MAILTO", mailto)
    monkeypatch.setenv("MAILER_BASE_URL", "https://desabonnement.mailer.nouma.example.com/liens")
    reset_process_state()
    link = unsubscribe_url(recipient_id, "nouma_offers")

    # When a mail is written
    parsed, raw_head = eml_headers(link)

    # Then exactly one List-Unsubscribe and one List-Unsubscribe-Post, as in the RFC 8058 example
    assert len(parsed.get_all("List-Unsubscribe")) == 1
    assert parsed.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    urls = rfc2369_urls(str(parsed["List-Unsubscribe"]))
    https = [u for u in urls if u.startswith("https://")]
    assert https == [link], "one HTTPS URI, the one-click target"
    # ... which identifies recipient and purpose by itself (RFC 8058 3.1)
    claim = read_unsubscribe_token(link.rsplit("/", 1)[1])
    assert (claim.recipient_id, claim.purpose) == (recipient_id, "nouma_offers")
    # ... a mailto beside it when configured, in the RFC 2369 form
    mailtos = [u for u in urls if u.startswith("mailto:")]
    assert mailtos == (["mailto:desinscription@nouma.fr?subject=unsubscribe"] if mailto else [])
    # ... and never RFC 2047-encoded: mail clients would find no URL in it
    assert "=?" not in raw_head
    assert all(len(line) <= 998 for line in raw_head.splitlines())


def test_plain_http_links_get_no_one_click_header(monkeypatch):
    # Given the embedded default's http://localhost link
    monkeypatch.setenv("MAILER_BASE_URL", "http://localhost:8000")
    monkeypatch.setenv("MAILER_DATABASE_URL", "sqlite:///var/never-opened.sqlite")
    reset_process_state()
    headers = unsubscribe_headers(unsubscribe_url(7, "tender_alerts"))
    # Then RFC 8058's POST header is left out (it requires an HTTPS URI); the link stays
    assert "List-Unsubscribe-Post" not in headers
    assert headers["List-Unsubscribe"].startswith("<http://localhost:8000/u/")


def test_the_one_click_example_headers_read_like_ours():
    # Given RFC 8058's own header example, then our reader finds its https and mailto URIs
    head = examples()["rfc8058_examples"]["message_headers"]
    parsed = email.message_from_string(head, policy=email.policy.default)
    assert rfc2369_urls(str(parsed["List-Unsubscribe"])) == [
        "mailto:listrequest@example.com?subject=unsubscribe",
        "https://example.com/unsubscribe/opaquepart",
    ]
    assert str(parsed["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"


def test_every_sent_mail_carries_its_own_purpose_link(db, isolated_environment):
    # Given recipients of two purposes, when mail goes out through the outbox
    ids = make_recipients(2, granted=("tender_alerts", "partner_offers"))
    deliver_batch(BatchSpec("test_message", "tender_alerts", "test:headers", tuple(ids)))
    deliver_batch(BatchSpec("test_message", "partner_offers", "test:headers", tuple(ids)))
    # Then each .eml names its recipient and purpose in its one-click link
    for record in all_deliveries():
        path = isolated_environment / f"delivery-{record.id}.eml"
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        (link,) = [u for u in rfc2369_urls(str(parsed["List-Unsubscribe"])) if u.startswith("https")]
        claim = read_unsubscribe_token(link.rsplit("/", 1)[1])
        assert (claim.recipient_id, claim.purpose) == (record.recipient_id, record.purpose)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
