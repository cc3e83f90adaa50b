"""What an import accepts and refuses: BOM, every department, control characters, CPV, currency, text."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from mailer.alerts.formats import read_tender_file
from mailer.alerts.models import Tender
from mailer.alerts.places import places
from mailer.alerts.tenders import TenderRecord
from mailer.cli import main
from mailer.db import session_scope
from tests.conftest import shared_data
from tests.factories import table_counts


def stored_tenders() -> dict[str, Tender]:
    with session_scope(readonly=True) as session:
        return {t.reference: t for t in session.scalars(sa.select(Tender))}


def write_lines(path, *records) -> None:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")


@pytest.mark.parametrize("name", ["ted_fr_notices.jsonl", "boamp_api_v21_sample.json"])
def test_a_byte_order_mark_is_not_content(sqlite_db, tmp_path, name):
    # Given a real file saved by an editor that writes a UTF-8 byte order mark
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + shared_data("tenders", name).read_bytes())

    # When it is read, then it reads as the original does
    with_bom, original = read_tender_file(path), read_tender_file(shared_data("tenders", name))
    assert with_bom.problems == []
    assert [n.record for n in with_bom.records] == [n.record for n in original.records]


def test_every_department_and_overseas_collectivity_is_a_place(sqlite_db, tmp_path):
    # Given one tender in each of the 101 departments, the 7 overseas collectivities, and Corsica's 20
    codes = [*places().departments]
    collectivities = ["975", "977", "978", "984", "986", "987", "988"]
    assert len(codes) == 108 and set(collectivities) <= set(codes)
    path = tmp_path / "tenders.jsonl"
    write_lines(
        path,
        *(
            {"reference": f"nouma:{code}", "title": "Voirie", "departments": [code]}
            for code in [*codes, "20"]
        ),
    )

    # When they are imported
    assert main(["tenders", "import", str(path)]) == 0

    # Then each is in its place; 20 names both Corsican departments
    stored = stored_tenders()
    assert {code: stored[f"nouma:{code}"].departments for code in codes} == {code: [code] for code in codes}
    assert stored["nouma:20"].departments == ["2A", "2B"]
    assert stored["nouma:988"].regions == [] and stored["nouma:971"].regions == ["01"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("title", "Voirie\u0000", "title: holds a control character (U+0000)"),
        ("description", "Réfection\u0007 de la chaussée", "description: holds a control character (U+0007)"),
        ("contact", {"name": "Marie\u0000Houssay"}, "contact.name: holds a control character (U+0000)"),
        ("buyer", {"name": "Mairie\u001b[31m"}, "buyer.name: holds a control character (U+001B)"),
    ],
)
def test_a_control_character_is_refused_with_its_line_and_nothing_else(
    db, tmp_path, capsys, field, value, message
):
    # Given a file whose second line holds a NUL or another control character
    path = tmp_path / "tenders.jsonl"
    write_lines(
        path,
        {"reference": "nouma:1", "title": "Voirie"},
        {"reference": "nouma:2", "title": "Voirie", field: value},
    )
    before = table_counts()

    # When it is imported (PostgreSQL cannot store a NUL)
    code = main(["tenders", "import", str(path)])

    # Then one line names the file, the line and the field; no trace, no personal data; nothing written
    err = capsys.readouterr().err
    assert code == 1
    assert f"{path}:2: {message}" in err
    assert "Traceback" not in err and "Houssay" not in err and "Marie" not in err
    assert table_counts() == before


def test_an_unparsable_contact_address_is_refused_without_showing_it(sqlite_db, tmp_path, capsys):
    path = tmp_path / "tenders.jsonl"
    write_lines(path, {"reference": "nouma:1", "title": "Voirie", "contact": {"email": "marie.houssay@"}})
    assert main(["tenders", "import", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:1: contact.email: not an e-mail address" in err
    assert "houssay" not in err


def test_cpv_codes_are_those_of_the_cpv_list_and_a_check_digit_is_dropped():
    # Given codes as notices write them
    record = TenderRecord.model_validate(
        {"reference": "n:1", "title": "Voirie", "cpv": ["45233140-2", "45233141", " 72000000-5 "]}
    )
    # Then the 8 digits are kept, once each
    assert record.cpv == ["45233140", "45233141", "72000000"]
    # and a code absent from the CPV 2008 list, or malformed, is refused with the code
    for raw, message in [
        ("45233999", "'45233999' is not in the CPV 2008 list"),
        ("4523314", "'4523314' is not a CPV code (8 digits, optionally -check digit)"),
        ("45233140-23", "'45233140-23' is not a CPV code (8 digits, optionally -check digit)"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            TenderRecord.model_validate({"reference": "n:1", "title": "Voirie", "cpv": [raw]})


def test_a_value_in_another_currency_is_refused_for_value_bounds(sqlite_db, tmp_path, capsys):
    # Given a tender of the site's format valued in dollars
    path = tmp_path / "tenders.jsonl"
    write_lines(
        path, {"reference": "nouma:1", "title": "Voirie", "value": {"amount": "1000", "currency": "USD"}}
    )

    # Then it is refused: searches bound values in euros
    assert main(["tenders", "import", str(path)]) == 1
    assert f"{path}:1: value.currency: 'USD': only euros are accepted (value bounds are in euros)" in (
        capsys.readouterr().err
    )


def test_an_outside_notice_valued_in_another_currency_keeps_no_value_and_says_so(sqlite_db):
    # Given the official eForms example valued in Botswana pula
    parsed = read_tender_file(shared_data("tenders", "eforms_sdk", "notices", "cn-social_25.xml"))
    # Then the notice is kept without a value, and a note says why
    (numbered,) = parsed.records
    assert numbered.record.value is None
    assert parsed.notes == [("", "estimated value in BWP: left out (value bounds are in euros)")]


def test_mojibake_is_repaired_and_text_still_damaged_is_flagged(sqlite_db, tmp_path, capsys):
    # Given a title decoded twice, and one that lost a character before it reached us
    path = tmp_path / "tenders.jsonl"
    write_lines(
        path,
        {
            "reference": "nouma:1",
            "title": "Contrôle d'accès et sÃ©curitÃ© incendie",
            "buyer": {"name": "CÃ´te-d'Or"},
        },
        {"reference": "nouma:2", "title": "Ma\ufffdtrise d'uvre des bâtiments"},
    )

    # When they are imported
    assert main(["tenders", "import", str(path)]) == 0

    # Then the first is repaired; the second is kept, flagged, and named in a note
    stored = stored_tenders()
    assert stored["nouma:1"].title == "Contrôle d'accès et sécurité incendie"
    assert stored["nouma:1"].buyer_name == "Côte-d'Or"
    assert (stored["nouma:1"].text_damaged, stored["nouma:2"].text_damaged) == (False, True)
    assert f"{path}:2: text still damaged after repair (U+FFFD): flagged" in capsys.readouterr().out


def test_a_title_is_one_line(sqlite_db):
    record = TenderRecord.model_validate(
        {
            "reference": "n:1",
            "title": "Voirie\n## Lot 2\r\n\tréseaux",
            "description": "Ligne 1\n\t\t\tLigne 2",
            "buyer": {"name": "Mairie\nde Lyon"},
            "lots": [{"id": "LOT-0001", "title": "Lot\nun"}],
        }
    )
    assert record.title == "Voirie ## Lot 2 réseaux"
    assert record.buyer is not None and record.buyer.name == "Mairie de Lyon"
    assert record.lots[0].title == "Lot un"
    # a description keeps its lines, without the indentation around them
    assert record.description == "Ligne 1\nLigne 2"
