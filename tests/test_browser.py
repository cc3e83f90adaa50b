"""End to end in headless Chromium: a mail's unsubscribe link, then the preference centre.

Debian's ``chromium`` (installed by ``make test``), driven by Playwright; never a downloaded
browser. A missing Chromium skips locally and fails under CI=1.
"""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailer.batch import BatchSpec
from mailer.db import session_scope
from mailer.delivery import deliver_batch
from mailer.models import ConsentAction, ConsentSource
from tests.conftest import CI, reset_process_state
from tests.factories import make_recipient
from tests.web_support import consent_events, consents

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.slow


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (make test installs Debian's chromium)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def live_server(sqlite_db, monkeypatch) -> Iterator[str]:
    """The web app on a real socket (uvicorn), its links pointing at itself."""
    import uvicorn

    from mailer.web import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("MAILER_BASE_URL", url)
    reset_process_state()
    server = uvicorn.Server(
        uvicorn.Config(create_app(run_worker=False), log_level="error", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the web app did not start"
        time.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_unsubscribe_from_a_mail_then_the_preference_centre(
    live_server, chromium, isolated_environment, tmp_path
):
    from playwright.sync_api import expect, sync_playwright

    # Given Marie, who gets tender alerts and NouMa's offers, and an offer mail in the outbox
    with session_scope() as session:
        recipient_id = make_recipient(
            session, "marie@example.com", name="Marie", granted=("tender_alerts", "nouma_offers")
        ).id
    outcome = deliver_batch(BatchSpec("test_message", "nouma_offers", "test:browser", (recipient_id,)))
    assert outcome.sent == 1
    (eml,) = isolated_environment.glob("delivery-*.eml")
    mail = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    html = mail.get_body(("html",)).get_content()
    link = re.search(r'<a href="([^"]+/u/[^"]+)"', html).group(1)
    assert link.startswith(live_server)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page()
            # When she opens the link from the mail: a page that asks, and has changed nothing
            page.goto(link)
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Ne plus recevoir «\u00a0Offres de NouMa\u00a0»\u00a0?"
            )
            assert consents(recipient_id)["nouma_offers"] is True
            # ... and confirms
            page.get_by_role("button", name="Se désabonner").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Vous êtes désabonné")
            expect(page.get_by_role("status")).to_contain_text("Offres de NouMa")
            page.screenshot(path=str(tmp_path / "unsubscribed.png"))

            # Then the withdrawal is recorded with her browser as proof
            assert consents(recipient_id) == {"tender_alerts": True, "nouma_offers": False}
            withdrawal = consent_events(recipient_id)[-1]
            assert (withdrawal.action, withdrawal.source) == (
                ConsentAction.WITHDRAWN,
                ConsentSource.UNSUBSCRIBE_LINK,
            )
            assert withdrawal.ip == "127.0.0.1" and "Chrome" in (withdrawal.user_agent or "")

            # When she goes on to the preference centre and stops tender alerts too
            page.get_by_role("link", name="Gérer toutes vos préférences d’e-mails").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Vos préférences d’e-mails")
            alerts = page.get_by_label("Alertes appels d’offres")
            offers = page.get_by_label("Offres de NouMa", exact=True)
            expect(alerts).to_be_checked()
            expect(offers).not_to_be_checked()
            alerts.uncheck()
            page.get_by_role("button", name="Enregistrer mes préférences").click()
            expect(page.get_by_role("status")).to_have_text("Vos préférences sont enregistrées.")
            expect(page.get_by_label("Alertes appels d’offres")).not_to_be_checked()
            page.screenshot(path=str(tmp_path / "preferences.png"), full_page=True)
        finally:
            browser.close()

    # Then the database holds both withdrawals, the last from the preference centre
    assert consents(recipient_id) == {"tender_alerts": False, "nouma_offers": False}
    last = consent_events(recipient_id)[-1]
    assert (last.purpose, last.source) == ("tender_alerts", ConsentSource.PREFERENCE_CENTRE)
