"""Which kinds of notice are announced, and how the mailer's own format states a kind."""

from __future__ import annotations

import json

from mailer.alerts.formats import read_tender_file
from mailer.alerts.notice_kinds import NoticeKind, eforms_notice_types, is_announced


def test_only_calls_for_competition_are_announced_and_prior_information_on_request():
    assert is_announced(NoticeKind.COMPETITION)
    assert is_announced(NoticeKind.COMPETITION, prior_information=True)
    assert not is_announced(NoticeKind.PLANNING)
    assert is_announced(NoticeKind.PLANNING, prior_information=True)
    for kind in set(NoticeKind) - {NoticeKind.COMPETITION, NoticeKind.PLANNING}:
        assert not is_announced(kind, prior_information=True), kind


def test_eforms_notice_types_have_the_kind_of_their_form_type():
    types = eforms_notice_types()
    assert types["cn-standard"].kind is NoticeKind.COMPETITION
    assert types["pin-cfc-social"].kind is NoticeKind.COMPETITION
    assert types["pin-only"].kind is NoticeKind.PLANNING
    assert types["can-standard"].kind is NoticeKind.RESULT
    assert types["can-modif"].kind is NoticeKind.MODIFICATION
    assert types["veat"].kind is NoticeKind.DIRECT_AWARD
    assert types["cn-standard"].name_fr == "Avis de marché ou de concession – régime ordinaire"


def test_the_mailers_format_states_a_kind_and_kinds_never_announced_are_left_out(sqlite_db, tmp_path):
    # Given the site's tenders: one without a kind, one of prior information, one award
    path = tmp_path / "tenders.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(line)
            for line in [
                {"reference": "nouma:1", "title": "Voirie"},
                {"reference": "nouma:2", "title": "Voirie 2027", "notice_kind": "planning"},
                {"reference": "nouma:3", "title": "Voirie attribuée", "notice_kind": "result"},
            ]
        )
    )

    # When it is read
    parsed = read_tender_file(path)

    # Then the first is a call for competition, the second prior information, the third left out
    assert [(n.where, n.record.notice_kind) for n in parsed.records] == [
        (1, NoticeKind.COMPETITION),
        (2, NoticeKind.PLANNING),
    ]
    assert [(s.where, s.message) for s in parsed.skipped] == [
        (3, "notice_kind result: a contract award notice, not announced")
    ]
