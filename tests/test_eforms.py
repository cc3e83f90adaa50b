"""eForms notices: every official example is imported, refused with its reason, or left out by kind."""

from __future__ import annotations

import csv
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from lxml import etree

from mailer.alerts.formats import documents, read_tender_file
from mailer.alerts.formats import eforms as eforms_format
from mailer.alerts.models import Tender
from mailer.alerts.notice_kinds import NOTICE_TYPES_FILE
from mailer.alerts.tenders import import_tenders
from mailer.cli import main
from mailer.db import session_scope
from mailer.errors import ImportFailed
from tests.conftest import shared_data
from tests.factories import table_counts

#: eForms notice types the mailer stores: calls for competition and prior information.
STORED_TYPES = {
    "cn-standard", "cn-social", "cn-desg", "pin-cfc-standard", "pin-cfc-social", "qu-sy", "subco",
    "pin-only", "pin-rtl", "pin-buyer", "pin-tran",
}  # fmt: skip


def examples() -> Path:
    return shared_data("tenders", "eforms_sdk", "notices")


def notice_type_of(path: Path) -> str:
    root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
    return root.findtext("cbc:NoticeTypeCode", namespaces=eforms_format.NS)


def stored_tenders() -> dict[str, Tender]:
    with session_scope(readonly=True) as session:
        return {t.reference: t for t in session.scalars(sa.select(Tender))}


def test_every_official_example_is_read_refused_with_its_reason_or_left_out_by_kind():
    # Given the 92 official examples of the eForms SDK
    files = sorted(p.name for p in examples().glob("*.xml"))
    assert len(files) == 92

    # When the folder is read
    parsed = read_tender_file(examples())

    # Then each INVALID_ example is refused, with a reason, and no valid one is
    refused = dict(parsed.problems)
    assert sorted(refused) == [f for f in files if f.startswith("INVALID_")]
    assert refused["INVALID_cn_24_empty.xml"] == "no notice identifier (BT-701)"
    assert refused["INVALID_cn_24_multiple.xml"] == "an organisation has no identifier (OPT-200)"
    assert refused["INVALID_change-cn_24_FRA_comments.xml"].startswith(
        "changes notice da4d46e9-490b-41ff-a2ae-8166d356a619 of another procedure"
    )
    # and each valid one is kept or left out, by its notice type; none twice, none lost
    kept = {n.where: n.record for n in parsed.records}
    left_out = {s.where: s.message for s in parsed.skipped}
    assert sorted([*refused, *kept, *left_out]) == files
    for name, record in kept.items():
        assert record.notice_type in STORED_TYPES, name
    for name, message in left_out.items():
        code = notice_type_of(examples() / name)
        assert code not in STORED_TYPES or "superseded by version 02" in message, name
        assert message.startswith(code) or "superseded" in message, message
    assert left_out["can_24_minimal.xml"] == "can-standard: a contract award notice, not announced"
    assert (
        left_out["veat_24.xml"]
        == "veat: a direct award pre-announcement (ex ante transparency), not announced"
    )
    assert Counter(r.notice_kind.value for r in kept.values()) == {
        "competition": 26,
        "planning": 16,
        "change": 2,
        "cancellation": 1,
    }


def test_the_examples_import_through_the_command_on_both_databases(db, capsys):
    # Given the folder of examples, with its INVALID_ ones
    before = table_counts()

    # When it is imported as it is
    code = main(["tenders", "import", str(examples())])

    # Then the command names each refused file and the reason, imports nothing, shows no trace
    out, err = capsys.readouterr()
    assert code == 1
    assert f"{examples() / 'INVALID_cn_24_empty.xml'}: no notice identifier (BT-701)" in err
    assert "Traceback" not in err and "nothing was imported" in err
    assert f"{examples() / 'E4_minimal.xml'}: can-standard: a contract award notice, not announced" in out
    assert table_counts() == before

    # And with --skip-invalid the good notices go in, once, whatever runs it again
    assert main(["tenders", "import", str(examples()), "--skip-invalid"]) == 0
    assert main(["tenders", "import", str(examples()), "--skip-invalid"]) == 0
    out = capsys.readouterr().out
    assert "0 created, 0 updated, 45 unchanged" in out
    assert (
        "34 notices of kinds never announced left out: 21 result, 5 modification, 4 direct_award, "
        "2 registration, 1 consultation, 1 completion"
    ) in out
    stored = stored_tenders()
    assert len(stored) == 45
    assert not any(t.notice_type.startswith(("can-", "veat", "compl", "brin")) for t in stored.values())


def test_a_french_notice_keeps_every_field(sqlite_db):
    # Given an official French contract notice in two lots
    parsed = read_tender_file(examples() / "cn_24_FRA_comments.xml")

    # When it is imported
    with session_scope() as session:
        import_tenders(session, parsed.records)

    # Then what the digests show is there, read from the notice
    (tender,) = stored_tenders().values()
    assert tender.reference == "eforms:da4d46e9-490b-41ff-a2ae-8166d356a619"
    assert tender.title == "Service d'entretien de remise en état et de nettoyage des espaces verts"
    assert tender.description.startswith("Service d'entretien de remise en état")
    assert (tender.buyer_name, tender.buyer_town) == ("Rouen Habitat", "Rouen Cedex 1")
    assert (tender.contact_name, tender.contact_email) == ("Info desk", "contact@rouenhabitat.fr")
    assert tender.cpv_codes == ["77310000"]
    assert (tender.departments, tender.regions) == (["76"], ["28"])
    # the deadline 2019-06-24 16:00 UTC is 18:00 in Paris
    assert (str(tender.deadline_on), str(tender.deadline_time)) == ("2019-06-24", "18:00:00")
    assert tender.url == "https://www.marches-publics.info/accueil.htm"
    assert (tender.notice_kind, tender.notice_type) == ("competition", "cn-standard")
    assert (tender.notice_id, tender.notice_version) == ("da4d46e9-490b-41ff-a2ae-8166d356a619", "01")
    assert tender.procedure_id == "e3cdabf1-e057-47a5-9210-b1f6fc757228"
    assert tender.lots == [
        {"id": "LOT-0001", "title": "Agence centre", "cpv": ["77310000"]},
        {"id": "LOT-0002", "title": "Agence Hauts de Rouen", "cpv": ["77310000"]},
    ]


def test_a_multilingual_notice_is_read_in_french(sqlite_db):
    parsed = read_tender_file(examples() / "cn_24_multilingual.xml")
    (numbered,) = parsed.records
    assert numbered.record.title.startswith("Fourniture de services informatiques")


def test_a_zip_of_notices_reads_as_the_folder_does(sqlite_db, tmp_path):
    # Given the examples in a .zip, in a sub-folder of the archive, with a README beside them
    archive = tmp_path / "notices.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(examples().glob("*.xml")):
            handle.write(path, f"2024/{path.name}")
        handle.writestr("2024/README.txt", "not a notice")

    # When both are read
    from_zip, from_folder = read_tender_file(archive), read_tender_file(examples())

    # Then they hold the same records, refusals and notices left out, named by member
    assert [n.record for n in from_zip.records] == [n.record for n in from_folder.records]
    assert [(w.removeprefix("2024/"), m) for w, m in from_zip.problems] == from_folder.problems
    assert ("2024/README.txt", "not an .xml file: not read") in [
        (s.where, s.message) for s in from_zip.skipped
    ]


def test_the_published_version_of_a_notice_updates_its_draft(db, tmp_path):
    # Given a prior information notice imported before publication (version 01)
    with session_scope() as session:
        import_tenders(session, read_tender_file(examples() / "pin-buyer_24.xml").records)
    (draft,) = stored_tenders().values()
    assert draft.reference == "eforms:e5dc3c2b-3df5-45e0-af7f-399ca201d7e0"

    # When its published version (02, with its TED publication number) arrives, then the draft again
    with session_scope() as session:
        published = import_tenders(
            session, read_tender_file(examples() / "pin-buyer_24_published.xml").records
        )
    with session_scope() as session:
        again = import_tenders(session, read_tender_file(examples() / "pin-buyer_24.xml").records)

    # Then it is the same tender, now under its TED reference; the older version changes nothing
    (tender,) = stored_tenders().values()
    assert (published.created, published.updated) == (0, 1)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)
    assert (tender.id, tender.reference, tender.notice_version) == (draft.id, "ted:12345678-2025", "02")


def test_a_change_notice_of_another_procedure_is_refused_against_the_stored_notice(db):
    # Given the notice it claims to change, imported on its own
    with session_scope() as session:
        import_tenders(session, read_tender_file(examples() / "cn_24_FRA_comments.xml").records)
    before = table_counts()

    # When the invalid change notice comes alone
    parsed = read_tender_file(examples() / "INVALID_change-cn_24_FRA_comments.xml")
    assert parsed.problems == []
    with pytest.raises(ImportFailed, match="another procedure") as refused, session_scope() as session:
        import_tenders(session, parsed.records)

    # Then it is refused naming the file's record, and nothing changed
    assert refused.value.problems[0][0] == ""
    assert table_counts() == before


def test_a_cancellation_and_changes_name_the_notice_they_change(sqlite_db):
    parsed = read_tender_file(examples() / "change-cn_24_void.xml")
    (numbered,) = parsed.records
    assert numbered.record.notice_kind == "cancellation"
    assert numbered.record.changes_notice_id == "f42be27e-09cf-4f0e-a745-63ec689631e6-01"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            b"<ContractNotice>&b;</ContractNotice>",
            "has a DOCTYPE, which no eForms notice has: not read",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]><ContractNotice>&x;</ContractNotice>',
            "has a DOCTYPE, which no eForms notice has: not read",
        ),
        (b"<ContractNotice><cbc:ID>", "not well-formed XML"),
        (b"<Invoice/>", "not an eForms notice (its root element is Invoice)"),
    ],
)
def test_hostile_or_broken_xml_is_refused_without_reading_anything_outside(tmp_path, content, reason):
    # Given an XML file that declares entities, reaches for a local file, is cut, or is no notice
    path = tmp_path / "notice.xml"
    path.write_bytes(content)

    # When it is read
    parsed = read_tender_file(path)

    # Then it is refused with the reason; no entity was expanded, no file read
    ((_, message),) = parsed.problems
    assert message.startswith(reason)
    assert parsed.records == []


def test_an_oversized_archive_member_is_refused_unread(tmp_path, monkeypatch):
    # Given an archive whose member is larger than a notice can be
    monkeypatch.setattr(documents, "MAX_NOTICE_BYTES", 1000)
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("big.xml", b"<ContractNotice>" + b" " * 100_000 + b"</ContractNotice>")

    # When it is read, then that member is refused by name
    assert read_tender_file(archive).problems == [
        ("big.xml", "over 1000 bytes, larger than any notice: not read")
    ]


def test_the_shipped_notice_types_are_the_eforms_code_lists():
    # Given the SDK's code lists: every notice type, and the form type list naming it
    codelists = shared_data("tenders", "eforms_sdk", "codelists")
    expected = {}
    for path in codelists.glob("notice-type_*.gc"):
        form_type = path.stem.removeprefix("notice-type_")
        for code in etree.parse(str(path)).iterfind(".//Row/Value[@ColumnRef='code']/SimpleValue"):
            expected[code.text] = form_type

    # Then the copy shipped in the package says the same
    with NOTICE_TYPES_FILE.open(encoding="utf-8") as handle:
        shipped = {row["code"]: row["form_type"] for row in csv.DictReader(handle)}
    assert shipped == expected
    assert len(shipped) == 21
