"""Links signed for a whole batch are the very links signed one by one, and still read back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailer.suppression import tokens


def test_batch_links_equal_single_links_and_verify():
    ids = [*range(0, 50_000, 997), 2**40]
    for purpose in ("tender_alerts", "nouma_offers", "partner_offers"):
        links = tokens.unsubscribe_urls(ids, purpose)
        assert links == [tokens.unsubscribe_url(i, purpose) for i in ids]
        claim = tokens.read_unsubscribe_token(links[-1].rsplit("/", 1)[1])
        assert (claim.recipient_id, claim.purpose) == (2**40, purpose)
    assert tokens.preferences_urls(ids) == [tokens.preferences_url(i) for i in ids]
    assert tokens.unsubscribe_urls([], "nouma_offers") == []


def test_a_serializer_that_signs_differently_is_followed(monkeypatch):
    # Given tokens made otherwise (here: JSON not base64-encoded), the batch path must not guess
    from itsdangerous import Serializer

    def other(salt):
        return Serializer(["k"], salt=salt)

    monkeypatch.setattr(tokens, "_serializer", other)
    assert tokens.unsubscribe_urls([7], "nouma_offers") == [tokens.unsubscribe_url(7, "nouma_offers")]


@given(st.one_of(st.integers(), st.lists(st.integers(), max_size=4), st.booleans(), st.lists(st.booleans())))
def test_the_compact_payload_is_the_json_itsdangerous_signs(payload):
    import json

    assert tokens._compact_json(payload) == json.dumps(payload, separators=(",", ":"))
