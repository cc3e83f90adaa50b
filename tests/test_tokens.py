"""Unsubscribe tokens: signed, purpose-scoped, rotating keys, nothing readable, nothing forgeable."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.config import reset_settings
from mailer.errors import BadToken
from mailer.suppression import tokens


def test_round_trip_for_every_purpose():
    for purpose in ("tender_alerts", "nouma_offers", "partner_offers"):
        claim = tokens.read_unsubscribe_token(tokens.unsubscribe_token(42, purpose))
        assert (claim.recipient_id, claim.purpose) == (42, purpose)
    assert tokens.read_preferences_token(tokens.preferences_token(42)) == 42


def test_links_point_at_the_base_url():
    assert tokens.unsubscribe_url(7, "nouma_offers").startswith("https://mailer.example.com/u/")
    assert tokens.preferences_url(7).startswith("https://mailer.example.com/preferences/")


@given(position=st.integers(min_value=0, max_value=200), replacement=st.characters(codec="ascii"))
def test_any_altered_character_is_refused(position, replacement):
    # Any change at all, even one base64 decoding would forgive (the unused low bits of the last
    # character, a "+" for a "-"), is refused: only the spelling we issued is read
    token = tokens.unsubscribe_token(42, "nouma_offers")
    position %= len(token)
    altered = token[:position] + replacement + token[position + 1 :]
    if altered == token:
        return
    with pytest.raises(BadToken):
        tokens.read_unsubscribe_token(altered)


@pytest.mark.parametrize(
    "alter",
    [
        lambda t: t + "=",
        lambda t: t + "==",
        lambda t: t.replace(".", "=."),
        lambda t: t.replace("-", "+").replace("_", "/") if ("-" in t or "_" in t) else t + "+",
        lambda t: t[:5] + "\n" + t[5:],
        lambda t: t[:5] + " " + t[5:],
        lambda t: t[:5] + "!" + t[5:],
        lambda t: t + ".",
        lambda t: "." + t,
        lambda t: t + "A" * 300,
    ],
)
def test_lenient_base64_spellings_of_a_valid_token_are_refused(alter):
    for recipient_id in range(1, 60):
        token = tokens.unsubscribe_token(recipient_id, "nouma_offers")
        with pytest.raises(BadToken):
            tokens.read_unsubscribe_token(alter(token))
        with pytest.raises(BadToken):
            tokens.read_preferences_token(alter(tokens.preferences_token(recipient_id)))


def test_the_unused_bits_of_the_last_character_are_refused():
    # "AQ" and "AR" both decode to b"\x01": only the canonical spelling passes
    for recipient_id in range(1, 200):
        token = tokens.unsubscribe_token(recipient_id, "tender_alerts")
        body, signature = token.split(".")
        last = signature[-1]
        for other in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
            if other != last:
                with pytest.raises(BadToken):
                    tokens.read_unsubscribe_token(f"{body}.{signature[:-1]}{other}")


def test_ids_past_the_database_range_are_refused_even_when_signed():
    # Signed by us, but naming no row the database can hold: refused, never a 500
    for value in (2**63, 10**30, 0, -1, True):
        signed = tokens._serializer(tokens.UNSUBSCRIBE_SALT).dumps([value, 1])
        with pytest.raises(BadToken):
            tokens.read_unsubscribe_token(signed)
        signed = tokens._serializer(tokens.PREFERENCES_SALT).dumps(value)
        with pytest.raises(BadToken):
            tokens.read_preferences_token(signed)
    signed = tokens._serializer(tokens.UNSUBSCRIBE_SALT).dumps([2**63 - 1, True])
    with pytest.raises(BadToken):
        tokens.read_unsubscribe_token(signed)


def test_every_purpose_keeps_the_token_code_of_the_links_already_mailed():
    # Links already in people's mailboxes name their purpose by number: the numbers never move
    from mailer.purposes import PURPOSES

    assert {key: p.token_code for key, p in PURPOSES.items()} == {
        "tender_alerts": 0,
        "nouma_offers": 1,
        "partner_offers": 2,
    }
    codes = [p.token_code for p in PURPOSES.values()]
    assert len(set(codes)) == len(codes)
    # ... and a link mailed with code 1 still means NouMa's offers
    legacy = tokens._serializer(tokens.UNSUBSCRIBE_SALT).dumps([7, 1])
    assert tokens.read_unsubscribe_token(legacy) == tokens.UnsubscribeClaim(7, "nouma_offers")


def test_truncated_and_forged_tokens_are_refused():
    token = tokens.unsubscribe_token(42, "tender_alerts")
    for bad in (token[:-1], token[:10], "", "garbage", token + "x"):
        with pytest.raises(BadToken):
            tokens.read_unsubscribe_token(bad)
    _, _, signature = token.partition(".")
    forged_payload = base64.urlsafe_b64encode(b"[43,0]").decode().rstrip("=")
    with pytest.raises(BadToken):
        tokens.read_unsubscribe_token(f"{forged_payload}.{signature}")


def test_an_unsubscribe_token_is_not_a_preference_token():
    with pytest.raises(BadToken):
        tokens.read_preferences_token(tokens.unsubscribe_token(42, "tender_alerts"))
    with pytest.raises(BadToken):
        tokens.read_unsubscribe_token(tokens.preferences_token(42))


def test_key_rotation_keeps_old_links_working(monkeypatch):
    monkeypatch.setenv("MAILER_SECRET_KEY", "old-key")
    reset_settings()
    old = tokens.unsubscribe_token(42, "nouma_offers")
    monkeypatch.setenv("MAILER_SECRET_KEY", "new-key,old-key")
    reset_settings()
    assert tokens.read_unsubscribe_token(old).recipient_id == 42
    assert tokens.unsubscribe_token(42, "nouma_offers") != old
    monkeypatch.setenv("MAILER_SECRET_KEY", "new-key")
    reset_settings()
    with pytest.raises(BadToken):
        tokens.read_unsubscribe_token(old)


def test_the_token_shows_no_address():
    token = tokens.unsubscribe_token(42, "nouma_offers")
    assert "@" not in token and "example" not in token
