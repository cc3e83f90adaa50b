"""Each provider declares its limits; campaigns and digests size their requests by them."""

from __future__ import annotations

import html
import json

import pytest

from mailer.providers import registry
from tests.alert_factories import add_search, add_tenders, run_window, tender
from tests.campaign_helpers import drain, new_campaign, outcomes, queue_and_start
from tests.factories import all_deliveries, make_recipients
from tests.provider_support import declare_limits


def test_a_campaign_batch_is_cut_into_requests_of_the_providers_size(
    db, fake_sendgrid, tmp_path, monkeypatch
):
    # Given a provider taking two recipients a request, and five recipients in one locale
    declare_limits(monkeypatch, max_recipients=2)
    make_recipients(5, granted=("nouma_offers",))
    cid = new_campaign(tmp_path)
    # When the campaign's one batch runs
    drain(queue_and_start(cid))
    # Then three requests carry the five, each once
    assert [len(r.body["personalizations"]) for r in fake_sendgrid.requests] == [2, 2, 1]
    assert sorted(fake_sendgrid.recipients()) == [f"person{i}@example.com" for i in range(5)]
    assert outcomes(cid) == {("sent", None): 5}


def test_a_provider_that_cannot_substitute_gets_each_campaign_mail_written_out(
    db, fake_sendgrid, tmp_path, monkeypatch
):
    # Given a provider without per-recipient substitutions
    declare_limits(monkeypatch, substitutes_per_recipient=False)
    make_recipients(3, granted=("nouma_offers",))
    cid = new_campaign(tmp_path)
    # When the campaign runs
    drain(queue_and_start(cid))
    # Then each recipient's request carries their own values written in, and no tag is left
    assert len(fake_sendgrid.requests) == 3
    for request in fake_sendgrid.requests:
        (personalization,) = request.body["personalizations"]
        assert "substitutions" not in personalization
        content = request.body["subject"] + "".join(c["value"] for c in request.body["content"])
        assert "%%nm:" not in content
        assert "/preferences/" in request.body["content"][1]["value"]
    assert outcomes(cid) == {("sent", None): 3}


def test_digests_are_cut_into_requests_of_the_providers_size(db, fake_sendgrid, monkeypatch):
    # Given a provider taking two recipients a request, and five readers with something new
    declare_limits(monkeypatch, max_recipients=2)
    make_recipients(5)
    for i in range(5):
        add_search(f"person{i}@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Voirie"))
    # When the window runs
    run_window()
    # Then the digests go two at a time
    assert sorted(len(r.body["personalizations"]) for r in fake_sendgrid.requests) == [1, 2, 2]
    assert len(all_deliveries()) == 5 and sorted(fake_sendgrid.recipients()) == [
        f"person{i}@example.com" for i in range(5)
    ]


def test_a_provider_that_cannot_substitute_gets_each_digest_alone(db, fake_sendgrid, monkeypatch):
    # Given a provider without per-recipient substitutions, and two readers
    declare_limits(monkeypatch, substitutes_per_recipient=False)
    make_recipients(2)
    for i in range(2):
        add_search(f"person{i}@example.com", name="Isère", departments=["38"])
    add_tenders(tender(title="Voirie & ponts"))
    # When the window runs
    run_window()
    # Then each digest is a request of its own, its parts written in
    assert [len(r.body["personalizations"]) for r in fake_sendgrid.requests] == [1, 1]
    for request in fake_sendgrid.requests:
        assert "substitutions" not in request.body["personalizations"][0]
        text, markup = (c["value"] for c in request.body["content"])
        assert "[%" not in request.body["subject"] + text + markup
        assert "Voirie & ponts" in text and html.escape("Voirie & ponts") in markup


@pytest.mark.parametrize("name", sorted(registry.BACKENDS))
def test_our_largest_delivery_id_fits_every_providers_custom_args(name):
    # Given the custom args every personalization carries, with the largest id a delivery can have
    custom_args = {"delivery_id": str(2**63 - 1)}
    # Then the provider's declared limit holds it
    limits = registry.backend_class(name).limits
    assert len(json.dumps(custom_args).encode()) < limits.max_custom_args_bytes
    assert limits.max_recipients >= 1
