"""Saved searches in: the file format, updates by ref, geolocation consent; the site's batch actors."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from mailer.alerts.models import Geolocation, SavedSearch
from mailer.alerts.searches import SearchRecord, cpv_prefix
from mailer.cli import main
from mailer.db import session_scope
from tests.alert_factories import add_search, add_tenders, run_window, tender
from tests.factories import make_recipient, table_counts


def searches() -> dict[str, SavedSearch]:
    with session_scope(readonly=True) as session:
        return {s.external_ref: s for s in session.scalars(sa.select(SavedSearch))}


def write_lines(path, *lines) -> None:
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n")


@pytest.fixture
def reader():
    with session_scope() as session:
        make_recipient(session, "marie@example.com", granted=["tender_alerts"])
        recipient = make_recipient(session, "john@example.com", locale="en")
        recipient.external_ref = "account-7"


def test_searches_import_then_update_by_ref_keeping_their_high_water_mark(db, reader, tmp_path):
    # Given a file of two searches, one naming its recipient by account
    path = tmp_path / "searches.jsonl"
    first = {
        "ref": "s-1",
        "recipient": "Marie@Example.com",
        "name": "Voirie Isère",
        "keywords": 'voirie "travaux de voirie" -parking',
        "cpv": ["45233140", "72*"],
        "departments": ["38", "1"],
        "min_value": 100000,
    }
    write_lines(path, first, {"ref": "s-2", "account": "account-7", "name": "IT", "frequency": "weekly"})
    assert main(["searches", "import", str(path)]) == 0
    stored = searches()
    assert stored["s-1"].cpv_prefixes == ["4523314", "72"] and stored["s-1"].departments == ["38", "01"]
    assert stored["s-2"].frequency.value == "weekly"

    # When a run announced tenders, then the site sends the search again, renamed
    add_tenders(tender(title="Travaux de voirie", departments=["38"], cpv=["45233140"]))
    run_window()
    high_water = searches()["s-1"].announced_up_to
    assert high_water is not None
    write_lines(path, {**first, "name": "Voirie en Isère"})
    assert main(["searches", "import", str(path)]) == 0

    # Then it is the same search, renamed, still past what it announced
    again = searches()["s-1"]
    assert (again.id, again.name, again.announced_up_to) == (stored["s-1"].id, "Voirie en Isère", high_water)


def test_bad_lines_are_named_and_nothing_is_imported(db, reader, tmp_path, capsys):
    path = tmp_path / "searches.jsonl"
    write_lines(
        path,
        {"ref": "s-1", "recipient": "marie@example.com", "name": "Bien"},
        {"ref": "s-2", "recipient": "marie@example.com", "name": "Guillemet", "keywords": '"voirie'},
        {"ref": "s-3", "recipient": "marie@example.com", "name": "CPV", "cpv": ["4"]},
        {"ref": "s-4", "recipient": "marie@example.com", "name": "Bornes", "min_value": 10, "max_value": 5},
        {"ref": "s-5", "name": "Personne"},
    )
    before = table_counts()
    assert main(["searches", "import", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: keywords: keywords '\"voirie': a quote is not closed" in err
    assert f"{path}:3: cpv: '4' is not a CPV code or prefix" in err
    assert f"{path}:4: min_value is above max_value" in err
    assert f"{path}:5: give exactly one of recipient" in err
    assert table_counts() == before

    # A line naming nobody we know fails the whole file too
    write_lines(path, {"ref": "s-1", "recipient": "nobody@example.com", "name": "Bien"})
    assert main(["searches", "import", str(path)]) == 1
    assert "line 1: no recipient with address 'nobody@example.com'" in capsys.readouterr().err
    assert table_counts() == before


def test_a_radius_uses_the_stored_location_only_while_its_consent_is_granted(
    db, reader, tmp_path, isolated_environment
):
    # Given a search around Marie's location, and a tender 10 km away (site-provided coordinates)
    geolocation = {"lat": 45.19, "lon": 5.72, "consent": False, "source": "preference_centre"}
    add_search("marie@example.com", name="Autour de moi", radius_km=30, geolocation=geolocation)
    add_tenders(tender(title="Près de chez moi", departments=["73"], location={"lat": 45.25, "lon": 5.83}))

    # Without her express consent the location is not used: nothing matches by radius
    assert run_window().digests == 0

    # With it (recorded with its proof), the next window finds the tenders around her
    add_search(
        "marie@example.com",
        ref="s-geo",
        name="Autour de moi",
        radius_km=30,
        geolocation={**geolocation, "consent": True, "wording_version": "geo-2026-01"},
    )
    add_tenders(tender(title="Toujours près", departments=["73"], location={"lat": 45.25, "lon": 5.83}))
    import datetime as dt

    from tests.alert_factories import TODAY

    assert run_window(as_of=TODAY + dt.timedelta(days=1)).digests == 1
    with session_scope(readonly=True) as session:
        stored = session.scalars(sa.select(Geolocation)).one()
    assert stored.consent_granted and stored.wording_version == "geo-2026-01"


def test_cpv_criteria_stand_for_their_codes_and_the_codes_under_them():
    assert cpv_prefix("72*") == "72"
    assert cpv_prefix("72000000") == "72"
    assert cpv_prefix("45233140-2") == "4523314"
    assert cpv_prefix("4523") == "4523"
    with pytest.raises(ValueError):
        cpv_prefix("7")


def test_the_sites_batches_are_imported_by_file_name_only(db, reader, tmp_path, monkeypatch, stub_worker):
    from mailer import actors
    from tests.conftest import reset_process_state

    # Given the site dropped two files in the import directory
    monkeypatch.setenv("MAILER_IMPORT_DIR", str(tmp_path))
    reset_process_state()
    write_lines(
        tmp_path / "tenders-0001.jsonl", {"reference": "nouma:1", "title": "Voirie", "departments": ["38"]}
    )
    write_lines(
        tmp_path / "searches-0001.jsonl", {"ref": "s-1", "recipient": "marie@example.com", "name": "Isère"}
    )

    # When it sends their names (never their content) to the actors
    actors.import_tender_batch.send("tenders-0001.jsonl")
    actors.import_search_batch.send("searches-0001.jsonl")
    actors.import_tender_batch.send("../etc/passwd")
    stub_worker.join(actors.MAINTENANCE_QUEUE)

    # Then both are imported and marked done; a path outside the directory is refused
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "searches-0001.jsonl.done",
        "tenders-0001.jsonl.done",
    ]
    assert list(searches()) == ["s-1"]
    assert len(stub_worker.dead_letters) == 1


def test_erasing_a_recipient_removes_their_searches_and_location(db, reader, isolated_environment):
    # Given Marie's search with her location, and a window planned for it
    geolocation = {"lat": 45.19, "lon": 5.72, "consent": True}
    add_search("marie@example.com", name="Autour de moi", radius_km=30, geolocation=geolocation)
    add_tenders(tender(title="Près de chez moi", location={"lat": 45.25, "lon": 5.83}))
    from tests.alert_factories import plan

    planned = plan()

    # When she asks for erasure before the digest goes out
    assert main(["subject", "erase", "marie@example.com", "--yes"]) == 0
    from mailer.alerts import planning
    from mailer.delivery import deliver_batch

    for spec in planning.pending_batches(planned.frequency, planned.window):
        deliver_batch(spec)

    # Then her searches and location are gone, and nothing was sent
    assert searches() == {}
    with session_scope(readonly=True) as session:
        assert session.scalars(sa.select(Geolocation)).all() == []
    from tests.factories import all_deliveries

    assert [(d.state.value, d.skip_reason) for d in all_deliveries()] == [("skipped", "erased")]


def test_an_access_request_shows_saved_searches_location_and_tenders_naming_the_address(db, reader, capsys):
    add_search(
        "marie@example.com",
        ref="s-9",
        name="Voirie",
        keywords="voirie",
        geolocation={"lat": 45.19, "lon": 5.72, "consent": True, "source": "preference_centre"},
    )
    add_tenders(tender(title="Voirie", contact={"name": "Marie", "email": "marie@example.com"}))

    assert main(["audit", "show", "marie@example.com", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)

    assert [(s["external_ref"], s["name"], s["keywords"]) for s in found["saved_searches"]] == [
        ("s-9", "Voirie", "voirie")
    ]
    assert found["geolocation"]["consent_granted"] is True
    assert found["geolocation"]["consent_source"] == "preference_centre"
    assert len(found["tender_contact_of"]) == 1 and found["tender_contact_of"][0].startswith("test:")


def test_a_control_character_in_a_search_is_refused_with_its_line(db, tmp_path, capsys):
    # Given a saved search whose name holds a NUL (PostgreSQL cannot store one)
    with session_scope() as session:
        make_recipient(session, "marie@example.com", granted=["tender_alerts"])
    path = tmp_path / "searches.jsonl"
    path.write_text(
        json.dumps({"ref": "s-1", "recipient": "marie@example.com", "name": "Voirie\u0000"}) + "\n"
    )

    # When it is imported, then one line names it, without a trace or the recipient's address
    assert main(["searches", "import", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:1: name: holds a control character (U+0000)" in err
    assert "Traceback" not in err and "marie@example.com" not in err


def test_corsicas_former_code_names_both_its_departments_in_a_search():
    record = SearchRecord.model_validate(
        {"ref": "s-1", "recipient": "marie@example.com", "name": "Corse", "departments": ["20", "38"]}
    )
    assert record.departments == ["2A", "2B", "38"]
