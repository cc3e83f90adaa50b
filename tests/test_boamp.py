"""BOAMP records: the notice text in ``donnees`` is kept; odd departments never stop a file."""

from __future__ import annotations

import json

import sqlalchemy as sa

from mailer.alerts.formats import read_tender_file
from mailer.alerts.models import Tender
from mailer.alerts.tenders import import_tenders
from mailer.cli import main
from mailer.db import session_scope
from tests.conftest import shared_data


def sample() -> dict:
    return json.loads(shared_data("tenders", "boamp_api_v21_sample.json").read_text(encoding="utf-8"))


def stored_tenders() -> dict[str, Tender]:
    with session_scope(readonly=True) as session:
        return {t.reference: t for t in session.scalars(sa.select(Tender))}


def test_the_boamp_sample_imports_with_its_notice_text(db):
    # Given the real BOAMP API response
    parsed = read_tender_file(shared_data("tenders", "boamp_api_v21_sample.json"))

    # When it is imported
    assert parsed.problems == [] and len(parsed.records) == 20
    with session_scope() as session:
        assert import_tenders(session, parsed.records).created == 20

    # Then the notice text is kept: description, CPV codes, contact, deadline time, descriptors
    stored = stored_tenders()
    chenove = stored["boamp:BXP06181020621O"]
    assert chenove.departments == ["21"] and chenove.regions == ["27"]
    assert (chenove.buyer_name, chenove.buyer_town) == ("ville de Chenôve", "Chenôve")
    assert chenove.description.startswith("restructuration, extension et création d'un bassin")
    assert (str(chenove.deadline_on), str(chenove.deadline_time)) == ("2006-07-21", "12:00:00")
    assert chenove.descriptors == ["Bardage", "Gros oeuvre"]
    assert (chenove.contact_email, chenove.contact_phone) == (
        "marches.publics@example.invalid",
        "03-80-51-55-00",
    )
    assert (chenove.notice_kind, chenove.notice_type) == ("competition", "boamp:APPEL_OFFRE")
    craon = stored["boamp:BWP06181100013U"]
    assert craon.cpv_codes[:3] == ["45454000", "45112500", "45223220"]
    assert len(craon.cpv_codes) == 16
    # every record has its descriptors, and most a description and a deadline time
    assert all(t.descriptors for t in stored.values())
    assert sum(1 for t in stored.values() if t.description) >= 18
    assert sum(1 for t in stored.values() if t.deadline_time) >= 16


def test_boamp_states_make_changes_and_cancellations(sqlite_db):
    parsed = read_tender_file(shared_data("tenders", "boamp_api_v21_sample.json"))
    kinds = {n.record.reference: n.record.notice_kind.value for n in parsed.records}
    assert kinds["boamp:BWP06181000031P"] == "cancellation"
    assert kinds["boamp:BWP06184060013B"] == "change"
    assert sum(1 for k in kinds.values() if k == "competition") == 18


def test_codes_of_the_older_cpv_vocabulary_are_left_out_with_a_note(sqlite_db):
    # Given the 2006 records, some of which give CPV 2003 codes
    parsed = read_tender_file(shared_data("tenders", "boamp_api_v21_sample.json"))

    # Then each such code is named in a note on its record, and none is stored
    notes = dict(parsed.notes)
    assert (
        notes[4]
        == "CPV 28120000, 20310000, 29844000 not in the CPV 2008 list (an older vocabulary): left out"
    )
    assert not any("28120000" in n.record.cpv for n in parsed.records)


def test_an_odd_department_leaves_the_record_and_the_file_in(sqlite_db, tmp_path, capsys):
    # Given the sample with odd department codes in two records, Corsica's old code in two
    document = sample()
    records = document["results"]
    records[0]["code_departement"] = ["99", "21"]
    records[1]["code_departement"] = ["ZZ"]
    records[2]["code_departement"] = ["20"]
    records[2]["donnees"] = json.dumps({"IDENT": {"CP": "20200", "VILLE": "Bastia"}})
    records[3]["code_departement"] = ["20"]
    records[3]["donnees"] = "{}"
    path = tmp_path / "boamp.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    # When it is imported
    assert main(["tenders", "import", str(path)]) == 0

    # Then every record is in; the odd codes are left out and named in a note
    out = capsys.readouterr().out
    assert f"{path}:1: department '99' names no French department: left out" in out
    assert f"{path}:2: department 'ZZ' names no French department: left out" in out
    stored = stored_tenders()
    assert len(stored) == 20
    assert stored[f"boamp:{records[0]['idweb']}"].departments == ["21"]
    assert stored[f"boamp:{records[1]['idweb']}"].departments == []
    # and Corsica's 20 is the department of the postal code, or both when there is none
    assert stored[f"boamp:{records[2]['idweb']}"].departments == ["2B"]
    assert stored[f"boamp:{records[3]['idweb']}"].departments == ["2A", "2B"]


def test_a_nature_the_mailer_does_not_know_is_refused_by_name(sqlite_db, tmp_path):
    document = sample()
    document["results"][4]["nature"] = "AVIS_INCONNU"
    path = tmp_path / "boamp.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    parsed = read_tender_file(path)
    ((where, message),) = parsed.problems
    assert where == 5 and message.startswith("nature 'AVIS_INCONNU' is not one the mailer knows (")


def test_awards_are_left_out_by_name(sqlite_db, tmp_path):
    document = sample()
    document["results"][0]["nature"] = "ATTRIBUTION"
    path = tmp_path / "boamp.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    parsed = read_tender_file(path)
    assert [(s.where, s.message) for s in parsed.skipped] == [
        (1, "boamp:ATTRIBUTION: a contract award notice, not announced")
    ]
    assert len(parsed.records) == 19
