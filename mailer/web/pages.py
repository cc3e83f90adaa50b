"""Rendering the web pages: Jinja2 templates under templates/web/, in the recipient's language."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse

from mailer import rendering
from mailer.config import SUPPORTED_LOCALES, get_settings
from mailer.models import Recipient

#: Where people write about their data (NouMa's privacy policy names it).
SUPPORT_ADDRESS = "ServiceClients@nouma.fr"


def default_locale() -> str:
    """The language of a page whose reader we do not know: French, unless configured otherwise."""
    return get_settings().default_locale


def locale_of(session: Session, recipient_id: int | None) -> str:
    """The recipient's language when the id names one (erased ones too), else the default."""
    if recipient_id is not None:
        recipient = session.get(Recipient, recipient_id)
        if recipient is not None and recipient.locale in SUPPORTED_LOCALES:
            return recipient.locale
    return default_locale()


def request_locale(accept_language: str | None) -> str:
    """The language a request asks for (``Accept-Language``) among ours, else the default."""
    wanted = []
    for item in (accept_language or "").split(",")[:20]:
        tag, _, params = item.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and weight > 0:
            wanted.append((weight, tag.strip().lower()))
    for _, tag in sorted(wanted, key=lambda pair: -pair[0]):
        language = tag.split("-")[0]
        if language in SUPPORTED_LOCALES:
            return language
    return default_locale()


def render(name: str, locale: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """A page of templates/web/ rendered in a locale (compiled once per process)."""
    template = rendering.environment(locale).get_template(f"web/{name}")
    html = template.render({"support_address": SUPPORT_ADDRESS, "status_message": None, **context})
    return HTMLResponse(html, status_code=status)


def label(locale: str, message: str) -> str:
    """A message marked with N_() elsewhere, translated for the page."""
    return rendering.gettext(locale, message)
