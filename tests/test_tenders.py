"""Tenders in: the real TED notices and BOAMP records import; re-imports update; bad lines named."""

from __future__ import annotations

import csv
import json

import pytest
import sqlalchemy as sa

from mailer.alerts.models import Tender
from mailer.alerts.places import places
from mailer.alerts.tenders import import_tenders, read_tender_file
from mailer.cli import main
from mailer.db import session_scope
from mailer.errors import InvalidInput
from mailer.suppression.models import TenderContactKey
from tests.conftest import shared_data
from tests.factories import table_counts


def tenders_by_reference() -> dict[str, Tender]:
    with session_scope(readonly=True) as session:
        return {t.reference: t for t in session.scalars(sa.select(Tender))}


def test_the_758_real_ted_notices_import_and_a_second_import_changes_nothing(db):
    # Given the real TED notices
    path = shared_data("tenders", "ted_fr_notices.jsonl")

    # When they are imported twice
    parsed = read_tender_file(path)
    assert parsed.problems == []
    with session_scope() as session:
        first = import_tenders(session, parsed.records)
    with session_scope() as session:
        second = import_tenders(session, read_tender_file(path).records)

    # Then all 758 are there once, the second import found each unchanged
    assert (first.created, first.updated) == (758, 0)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 758)
    stored = tenders_by_reference()
    assert len(stored) == 758
    sample = stored["ted:141492-2016"]
    assert sample.buyer_name == "Commune de Saint-Didier-au-Mont-d'Or"
    assert sample.departments == ["69"] and sample.regions == ["84"]
    assert sample.cpv_codes[0] == "85300000" and "85312110" in sample.cpv_codes
    assert sample.value_cents == 6_250_000 * 100
    assert str(sample.deadline_on) == "2016-05-19" and str(sample.deadline_time) == "12:00:00"
    assert sample.contact_name == "M. le maire" and sample.contact_email == "mgbarra@example.invalid"


def test_departments_derived_from_nuts_and_postal_codes_agree_with_the_flat_reference_file(sqlite_db):
    # Given the flat file, whose dep_code was derived independently for 733 notices
    flat = shared_data("tenders", "ted_fr_notices_flat.csv")
    with session_scope() as session:
        import_tenders(session, read_tender_file(shared_data("tenders", "ted_fr_notices.jsonl")).records)
    stored = tenders_by_reference()

    # Then every department it names is one we derived
    with flat.open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["dep_code"]]
    assert len(rows) == 733
    assert [r["id"] for r in rows if r["dep_code"] not in stored[f"ted:{r['id']}"].departments] == []
    # and the region follows the department
    assert all(
        places().departments[d].region_code in t.regions for t in stored.values() for d in t.departments
    )


def test_reimporting_a_changed_tender_updates_it_keeps_its_id_and_its_contact_keys(db, tmp_path):
    # Given a tender imported once
    path = tmp_path / "tenders.jsonl"
    line = {
        "reference": "nouma:1",
        "title": "Voirie",
        "departments": ["38"],
        "contact": {"name": "Jean Dupré"},
    }
    path.write_text(json.dumps(line) + "\n")
    assert main(["tenders", "import", str(path)]) == 0
    (before,) = tenders_by_reference().values()

    # When the site sends it again with a new title and another contact
    line.update(title="Voirie et réseaux divers", contact={"email": "achats@example.invalid"})
    path.write_text(json.dumps(line) + "\n")
    assert main(["tenders", "import", str(path)]) == 0

    # Then it is the same tender (same id: not announced again), updated, with the new contact's keys
    (after,) = tenders_by_reference().values()
    assert (after.id, after.title, after.contact_name) == (before.id, "Voirie et réseaux divers", None)
    with session_scope(readonly=True) as session:
        keys = session.scalars(sa.select(TenderContactKey.key)).all()
    from mailer.addresses import hash_of
    from mailer.suppression.contacts import contact_keys

    assert sorted(keys) == sorted(contact_keys(None, "achats@example.invalid"))
    assert hash_of("achats@example.invalid") in keys
    assert not contact_keys("Jean Dupré", None) & set(keys)


def test_a_bad_line_is_named_and_nothing_is_imported(db, tmp_path, capsys):
    # Given a file whose third line has a bad CPV code and fourth is not JSON
    path = tmp_path / "tenders.jsonl"
    good = {"reference": "nouma:1", "title": "Voirie", "departments": ["38"]}
    path.write_text(
        "\n".join(
            [
                json.dumps(good),
                json.dumps({**good, "reference": "nouma:2"}),
                json.dumps({**good, "reference": "nouma:3", "cpv": ["4523"]}),
                "{not json",
                json.dumps({**good, "reference": "nouma:4", "departments": ["99"]}),
            ]
        )
    )
    before = table_counts()

    # When it is imported
    code = main(["tenders", "import", str(path)])

    # Then the command fails naming the lines, and the database is unchanged
    err = capsys.readouterr().err
    assert code == 1
    assert f"{path}:3: cpv: '4523' is not a CPV code (8 digits)" in err
    assert f"{path}:4: not valid JSON" in err
    assert f"{path}:5: departments: '99' is not a French department code" in err
    assert "line 3:" in err and "nothing was imported" in err and "Traceback" not in err
    assert table_counts() == before

    # And with --skip-invalid the good lines go in
    assert main(["tenders", "import", str(path), "--skip-invalid"]) == 0
    assert sorted(tenders_by_reference()) == ["nouma:1", "nouma:2"]


def test_the_boamp_api_sample_imports(sqlite_db):
    parsed = read_tender_file(shared_data("tenders", "boamp_api_v21_sample.json"))
    assert parsed.problems == [] and len(parsed.records) == 20
    with session_scope() as session:
        assert import_tenders(session, parsed.records).created == 20
    chenove = tenders_by_reference()["boamp:BXP06181020621O"]
    assert chenove.departments == ["21"] and chenove.regions == ["27"]
    assert chenove.buyer_name == "ville de Chenôve"
    assert str(chenove.deadline_on) == "2006-07-21"


def test_a_missing_file_is_a_clear_error(sqlite_db, tmp_path):
    with pytest.raises(InvalidInput, match="no such file"):
        read_tender_file(tmp_path / "absent.jsonl")


def test_postal_codes_name_corsican_and_overseas_departments():
    reference = places()
    assert reference.department_of_postal_code("20000") == "2A"
    assert reference.department_of_postal_code("20200") == "2B"
    assert reference.department_of_postal_code("97400") == "974"
    assert reference.department_of_postal_code("38000") == "38"
    assert reference.department_of_postal_code("3800") is None
    assert reference.from_nuts(["FR"]) == ([], [])
    assert reference.from_nuts(["FRK24"]) == (["38"], [])
    assert reference.from_nuts(["FRK2"]) == ([], ["84"])
