"""The pages behind the links in every mail: unsubscribe (RFC 8058 one-click too) and preferences.

A GET never changes anything (link scanners GET every link in a mail); every change is a POST and
becomes a consent event with the request's IP and user agent. A link whose token does not verify
changes nothing and gets a page saying so, in the language the browser asks for
(``Accept-Language``): never the language of whoever the token claims to name.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mailer import consent, preferences
from mailer.db import session_scope, utcnow
from mailer.errors import BadToken
from mailer.models import ConsentSource, Recipient
from mailer.purposes import CONSENT_KEYS, PURPOSES
from mailer.suppression import tokens
from mailer.web import csrf, pages
from mailer.web.forms import (
    MAX_FORM_BODY,
    MAX_ONE_CLICK_BODY,
    BodyTooLarge,
    form_fields,
    is_one_click,
    media_type,
    read_body,
)

log = logging.getLogger(__name__)
Claim = tokens.UnsubscribeClaim

#: Longest user agent kept with a consent event (the column's size).
MAX_USER_AGENT = 500
#: Media types a one-click POST may use (RFC 8058 section 3.2).
ONE_CLICK_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _proof(request: Request, source: ConsentSource, at: dt.datetime) -> consent.Proof:
    agent = request.headers.get("user-agent")
    return consent.Proof(
        source=source,
        at=at,
        ip=request.client.host[:45] if request.client else None,
        user_agent=agent[:MAX_USER_AGENT] if agent else None,
        recorded_by=preferences.RECORDED_BY_WEB,
    )


def _path(request: Request, route: str, token: str) -> str:
    # Paths, not absolute URLs: behind a TLS-terminating proxy the scheme the app sees may be
    # http, and an http form action on an https page is refused by browsers.
    return request.url_for(route, token=token).path


def _unsubscribe_claim(token: str) -> Claim | None:
    try:
        return tokens.read_unsubscribe_token(token)
    except BadToken:
        return None


def _preferences_claim(token: str) -> Claim | None:
    """A preference token as a claim on every purpose (``purpose`` is empty)."""
    try:
        return tokens.UnsubscribeClaim(tokens.read_preferences_token(token), "")
    except BadToken:
        return None


def _bad_link(request: Request) -> Response:
    # The request's language, never the token's recipient's: a forged token reveals nothing
    locale = pages.request_locale(request.headers.get("accept-language"))
    return pages.render("bad_link.html", locale, {}, status=400)


def _gone(locale: str) -> Response:
    return pages.render("gone.html", locale, {}, status=410)


def _expired(locale: str, back: str) -> Response:
    return pages.render("expired.html", locale, {"back_url": back}, status=403)


async def _form(request: Request) -> dict[str, list[str]] | None:
    try:
        body = await read_body(request, MAX_FORM_BODY)
    except BodyTooLarge:
        return None
    fields = form_fields(request.headers.get("content-type"), body)
    if fields is None:
        return None
    form: dict[str, list[str]] = {}
    for name, value in fields:
        form.setdefault(name, []).append(value)
    return form


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _form_allowed(request: Request, token: str, form: dict[str, list[str]] | None) -> bool:
    return (
        form is not None
        and csrf.same_origin(request.headers, request.headers.get("host"))
        and csrf.valid_form_token(token, _first(form, "form_token"))
    )


#: What a link's page shows once the recipient is known: a response, or one built after commit.
Page = Callable[[Session, Recipient, Claim], "Response | Callable[[], Response]"]
#: What a link's form changes, with the request's proof; then the page, as above.
Change = Callable[[Session, Recipient, Claim, consent.Proof], "Response | Callable[[], Response]"]


def _show(request: Request, read: Callable[[str], Claim | None], act: Page) -> Any:
    """GET behind a link: check the token, find the recipient, show a page. Changes nothing."""
    token = request.path_params["token"]
    claim = read(token)
    if claim is None:
        return run_in_threadpool(_bad_link, request)

    def show() -> Response:
        with session_scope(readonly=True) as session:
            recipient = preferences.active_recipient(session, claim.recipient_id)
            if recipient is None:
                return _gone(pages.locale_of(session, claim.recipient_id))
            done = act(session, recipient, claim)
        return done if isinstance(done, Response) else done()

    return run_in_threadpool(show)


async def _change(
    request: Request,
    read: Callable[[str], tokens.UnsubscribeClaim | None],
    source: ConsentSource,
    back: str,
    act: Callable[
        [Session, Recipient, tokens.UnsubscribeClaim, consent.Proof], Response | Callable[[], Response]
    ],
) -> Response:
    """POST behind a link: token, then the form and its CSRF checks, then one change in one
    transaction with the request's proof; the page once committed. The arrival time is the
    moment the person asked."""
    at = utcnow()
    token = request.path_params["token"]
    claim = read(token)
    if claim is None:
        return await run_in_threadpool(_bad_link, request)
    form = await _form(request)
    allowed = _form_allowed(request, token, form)
    proof = _proof(request, source, at)
    request.state.form = form or {}

    def change() -> Response:
        with session_scope() as session:
            recipient = preferences.active_recipient(session, claim.recipient_id)
            if recipient is None:
                return _gone(pages.locale_of(session, claim.recipient_id))
            if not allowed:
                return _expired(recipient.locale, _path(request, back, token))
            done = act(session, recipient, claim, proof)
        return done if isinstance(done, Response) else done()

    return await run_in_threadpool(change)


# /u/TOKEN ------------------------------------------------------------------------------------


def _unsubscribe_context(request: Request, token: str, recipient: Recipient, purpose: str) -> dict[str, Any]:
    return {
        "purpose": purpose,
        "purpose_label": pages.label(recipient.locale, PURPOSES[purpose].label),
        "confirm_url": _path(request, "unsubscribe_confirm", token),
        "undo_url": _path(request, "unsubscribe_undo", token),
        "preferences_url": _path(request, "preferences", tokens.preferences_token(recipient.id)),
        "form_token": csrf.form_token(token),
    }


async def unsubscribe_page(request: Request) -> Response:
    """GET /u/TOKEN: what the link does, and a button to confirm. Changes nothing."""
    token = request.path_params["token"]

    def page(session: Session, recipient: Recipient, claim: Claim) -> Response:
        context = _unsubscribe_context(request, token, recipient, claim.purpose)
        context["already"] = not preferences.is_granted(session, recipient.id, claim.purpose)
        return pages.render("unsubscribe_confirm.html", recipient.locale, context)

    return await _show(request, _unsubscribe_claim, page)


async def one_click(request: Request) -> Response:
    """POST /u/TOKEN with ``List-Unsubscribe=One-Click``: withdraw at once, answer 200 (RFC 8058)."""
    at = utcnow()
    token = request.path_params["token"]
    if media_type(request.headers.get("content-type")) not in ONE_CLICK_MEDIA_TYPES:
        return PlainTextResponse("expected List-Unsubscribe=One-Click, form-encoded or multipart", 415)
    try:
        body = await read_body(request, MAX_ONE_CLICK_BODY)
    except BodyTooLarge:
        return PlainTextResponse("body too large for a one-click request", 413)
    if not is_one_click(request.headers.get("content-type"), body):
        return PlainTextResponse("expected exactly List-Unsubscribe=One-Click", 400)
    claim = _unsubscribe_claim(token)
    if claim is None:
        return await run_in_threadpool(_bad_link, request)
    proof = _proof(request, ConsentSource.ONE_CLICK, at)

    def withdraw() -> None:
        with session_scope() as session:
            if preferences.active_recipient(session, claim.recipient_id) is not None:
                preferences.unsubscribe(session, claim.recipient_id, claim.purpose, proof)

    await run_in_threadpool(withdraw)
    # RFC 8058 asks for no redirect; mail clients show nothing, so nothing is sent back.
    return Response(status_code=200)


async def unsubscribe_confirm(request: Request) -> Response:
    """POST /u/TOKEN/confirm: the button of the GET page; withdraws and offers an undo."""
    token = request.path_params["token"]

    def confirm(session: Session, recipient: Recipient, claim: Claim, proof: consent.Proof) -> Response:
        preferences.unsubscribe(session, recipient.id, claim.purpose, proof)
        context = _unsubscribe_context(request, token, recipient, claim.purpose)
        context["can_undo"] = preferences.can_undo(session, recipient.id, claim.purpose)
        return pages.render("unsubscribe_done.html", recipient.locale, context)

    return await _change(
        request, _unsubscribe_claim, ConsentSource.UNSUBSCRIBE_LINK, "unsubscribe_page", confirm
    )


async def unsubscribe_undo(request: Request) -> Response:
    """POST /u/TOKEN/undo: re-grant what this link withdrew, recorded as an undo."""
    token = request.path_params["token"]

    def undo(session: Session, recipient: Recipient, claim: Claim, proof: consent.Proof) -> Response:
        undone = preferences.undo_unsubscribe(session, recipient.id, claim.purpose, proof)
        context = _unsubscribe_context(request, token, recipient, claim.purpose)
        context["undone"] = undone
        context["granted"] = preferences.is_granted(session, recipient.id, claim.purpose)
        return pages.render("undo_done.html", recipient.locale, context)

    return await _change(
        request, _unsubscribe_claim, ConsentSource.UNSUBSCRIBE_LINK, "unsubscribe_page", undo
    )


# /preferences/TOKEN --------------------------------------------------------------------------


def _preferences_page(
    request: Request, token: str, recipient: Recipient, status_message: str | None, status: int = 200
) -> Response:
    with session_scope(readonly=True) as session:
        state = preferences.preferences(session, recipient)
    locale = recipient.locale
    choices = [
        {
            "key": c.key,
            "label": pages.label(locale, c.label),
            "granted": c.granted,
            "stopped": c.stopped,
            "can_grant": c.can_grant,
            # A disabled box is not submitted: only switchable ones are listed as shown.
            "switchable": not c.stopped and (c.granted or c.can_grant),
        }
        for c in state.purposes
    ]
    context = {
        "choices": choices,
        "stopped_all_since": state.stopped_all_since,
        "partners": ", ".join(state.partner_names),
        "save_url": _path(request, "preferences_save", token),
        "stop_url": _path(request, "preferences_stop", token),
        "form_token": csrf.form_token(token),
        "status_message": status_message,
    }
    return pages.render("preferences.html", locale, context, status=status)


async def preferences_page(request: Request) -> Response:
    """GET /preferences/TOKEN: every purpose with its current state. Changes nothing."""
    token = request.path_params["token"]

    def page(session: Session, recipient: Recipient, claim: Claim) -> Callable[[], Response]:
        return lambda: _preferences_page(request, token, recipient, None)

    return await _show(request, _preferences_claim, page)


async def preferences_save(request: Request) -> Response:
    """POST /preferences/TOKEN: switch purposes on or off; each change is a consent event."""
    token = request.path_params["token"]

    def save(
        session: Session, recipient: Recipient, claim: Claim, proof: consent.Proof
    ) -> Callable[[], Response]:
        form = request.state.form
        shown = [p for p in form.get("shown", []) if p in CONSENT_KEYS]
        granted = set(form.get("granted", []))
        preferences.update(session, recipient, {p: p in granted for p in shown}, proof)
        return lambda: _preferences_page(request, token, recipient, "saved")

    return await _change(request, _preferences_claim, ConsentSource.PREFERENCE_CENTRE, "preferences", save)


async def preferences_stop(request: Request) -> Response:
    """POST /preferences/TOKEN/stop: no mail at all any more (an opposition, scope all)."""
    token = request.path_params["token"]

    def stop(
        session: Session, recipient: Recipient, claim: Claim, proof: consent.Proof
    ) -> Callable[[], Response]:
        preferences.stop_everything(session, recipient, proof)
        return lambda: _preferences_page(request, token, recipient, "stopped")

    return await _change(request, _preferences_claim, ConsentSource.PREFERENCE_CENTRE, "preferences", stop)
