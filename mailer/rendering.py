"""Jinja2 + Babel: each mail rendered in its recipient's locale from templates compiled once.

Templates live in ``templates/email/<kind>/{subject.txt,body.txt,body.html}``; ``body.html`` is
autoescaped, the text part always exists, and a variable the template was not given is an error
(StrictUndefined), never an empty string in a sent mail.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import Translations

from mailer.config import SUPPORTED_LOCALES
from mailer.errors import TemplateProblem

TEMPLATES_DIR = Path(__file__).parent / "templates"
LOCALE_DIR = Path(__file__).parent / "locale"

_ONE_LINE = re.compile(r"[ \t\r\n]+")

#: The parts every e-mail kind has, by file name.
PARTS = ("subject.txt", "body.txt", "body.html")


@dataclass(frozen=True)
class RenderedEmail:
    """A mail's three parts, ready for a backend."""

    subject: str
    text: str
    html: str


@functools.cache
def translations(locale: str) -> Translations:
    """The catalog of a locale, read from its .po file once per process."""
    po_path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not po_path.exists():
        return Translations()
    with po_path.open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer)


def _defined(value: Any) -> Any:
    # Filters receive Undefined without complaint; make a missing variable fail here too.
    if isinstance(value, jinja2.Undefined):
        str(value)
    return value


def _filters(locale: str) -> dict[str, Any]:
    babel_locale = Locale.parse(locale)
    whole_pattern = babel_locale.currency_formats["standard"].pattern.replace(".00", "")

    def date(value: dt.date | dt.datetime | None, format: str = "long") -> str:
        if _defined(value) is None:
            return ""
        if isinstance(value, dt.datetime):
            value = value.date()
        return format_date(value, format=format, locale=locale)

    def datetime(value: dt.datetime | None, format: str = "medium", tz: str = "Europe/Paris") -> str:
        if _defined(value) is None:
            return ""
        return format_datetime(value, format=format, tzinfo=ZoneInfo(tz), locale=locale)

    def money(value: Decimal | float | int | None, currency: str = "EUR") -> str:
        if _defined(value) is None:
            return ""
        amount = Decimal(str(value))
        if amount == amount.to_integral_value():
            return format_currency(
                amount, currency, format=whole_pattern, currency_digits=False, locale=locale
            )
        return format_currency(amount, currency, locale=locale)

    def number(value: Decimal | float | int | None) -> str:
        return "" if _defined(value) is None else format_decimal(Decimal(str(value)), locale=locale)

    return {"date": date, "datetime": datetime, "money": money, "number": number}


@functools.cache
def environment(locale: str) -> jinja2.Environment:
    """The Jinja2 environment of one locale: its catalog installed, its compiled templates cached."""
    if locale not in SUPPORTED_LOCALES:
        raise TemplateProblem(f"unsupported locale {locale!r}")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        # Templates ship with the code: compile each once per process, never check the disk again.
        auto_reload=False,
        cache_size=-1,
    )
    env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(_filters(locale))
    env.globals["locale"] = locale
    return env


def render(kind: str, locale: str, context: dict[str, Any]) -> RenderedEmail:
    """Render the three parts of an e-mail kind for one locale. TemplateProblem on any error."""
    env = environment(locale)
    try:
        subject, text, html = (env.get_template(f"email/{kind}/{part}").render(context) for part in PARTS)
    except jinja2.TemplateError as error:
        where = f" ({error.filename}:{error.lineno})" if isinstance(error, jinja2.TemplateSyntaxError) else ""
        raise TemplateProblem(f"email/{kind}: {error}{where}") from error
    except Exception as error:
        # A value of the wrong type reaching a filter: that mail cannot be rendered; say why.
        raise TemplateProblem(f"email/{kind}: {error!r}") from error
    # One line: a subject template's newlines go, its no-break spaces (French typography) stay.
    return RenderedEmail(subject=_ONE_LINE.sub(" ", subject).strip(), text=text.strip() + "\n", html=html)


def kinds_on_disk() -> list[str]:
    """Every e-mail kind that has a template folder (``_``-prefixed folders are bases)."""
    return sorted(
        p.name for p in (TEMPLATES_DIR / "email").iterdir() if p.is_dir() and not p.name.startswith("_")
    )


def gettext(locale: str, message: str) -> str:
    """Translate one message outside a template (labels shown beside rendered mail)."""
    return str(translations(locale).gettext(message))
