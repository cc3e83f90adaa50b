"""Campaign content written by the marketing team: read, checked at ``create``, rendered in a sandbox.

Campaign templates run in Jinja2's immutable sandbox with a fixed set of variables and no access to
other templates. Everything that could fail mid-send is found when the campaign is created: a syntax
error, an unknown variable, an unsafe construct, or a per-recipient value that is tested or
transformed (those values are filled in by SendGrid per recipient, see below). Each refusal names
the file and the line.

A batch renders each locale once: per-recipient values (first name, greeting, unsubscribe and
preference links) are rendered as substitution tags that SendGrid (or the outbox) replaces for
each recipient. SendGrid puts the same value into the text and the HTML part, so each value has a
tag per part: the HTML one carries the HTML-escaped value.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from jinja2 import meta, nodes

from mailer.campaigns.sandbox import CREATE_RENDER_SECONDS, render_bounded, sandbox
from mailer.config import SUPPORTED_LOCALES, get_settings
from mailer.errors import InvalidInput, RenderBudgetExceeded, TemplateProblem
from mailer.message import substitute
from mailer.purposes import get_purpose
from mailer.rendering import environment, gettext

#: The files of one locale, as the marketing team writes them.
CONTENT_FILES = ("subject.txt", "body.html", "body.txt")
#: Locale every campaign must have; recipients in a locale the campaign lacks get this one.
REQUIRED_LOCALE = "fr"

#: Values that differ per recipient: rendered as substitution tags.
PER_RECIPIENT = ("first_name", "greeting", "unsubscribe_url", "preferences_url")
#: Values shared by every recipient of a locale.
SHARED = ("locale", "partner_name", "purpose_label", "campaign_name")
VARIABLES = frozenset(PER_RECIPIENT + SHARED)

#: Longest file accepted (a campaign mail is a few kilobytes; SendGrid takes 30 MB a request).
MAX_FILE_BYTES = 200_000

#: Sample recipients a template is tried with at ``create``: an accented name with HTML
#: metacharacters, and none at all (the greeting then has no name).
SAMPLE_NAMES = ("Zoé <Dupré> & Fils", None)


@dataclass(frozen=True)
class LocaleContent:
    """One locale's three files, as written."""

    locale: str
    subject: str
    body_html: str
    body_text: str

    def source(self, part: str) -> str:
        return {"subject.txt": self.subject, "body.html": self.body_html, "body.txt": self.body_text}[part]


def read_content_dir(directory: Path) -> dict[str, LocaleContent]:
    """Read DIR/<locale>/{subject.txt,body.html,body.txt}; French required, English optional."""
    if not directory.is_dir():
        raise InvalidInput(f"{directory}: not a directory")
    found: dict[str, LocaleContent] = {}
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
        if sub.name not in SUPPORTED_LOCALES:
            raise InvalidInput(
                f"{sub}: unsupported locale {sub.name!r} (expected {', '.join(SUPPORTED_LOCALES)})"
            )
        parts: dict[str, str] = {}
        for name in CONTENT_FILES:
            path = sub / name
            if not path.is_file():
                raise InvalidInput(f"{path}: missing (each locale needs {', '.join(CONTENT_FILES)})")
            raw = path.read_bytes()
            if len(raw) > MAX_FILE_BYTES:
                raise InvalidInput(f"{path}: larger than {MAX_FILE_BYTES} bytes")
            try:
                parts[name] = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InvalidInput(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        found[sub.name] = LocaleContent(sub.name, parts["subject.txt"], parts["body.html"], parts["body.txt"])
    if REQUIRED_LOCALE not in found:
        raise InvalidInput(f"{directory}: the French content ({directory / REQUIRED_LOCALE}/) is required")
    return found


# -- checking at create


def check_content(
    contents: Mapping[str, LocaleContent], *, purpose: str, partner: str | None, campaign_name: str
) -> None:
    """Refuse content that would fail or misbehave mid-send; TemplateProblem names file and line.

    Rendered with the values the send will use (the campaign's own name, its partner), and with
    sample recipients with and without names.
    """
    for locale, content in contents.items():
        for part in CONTENT_FILES:
            name = f"{locale}/{part}"
            source = content.source(part)
            template = _compile(name, source, html=part.endswith(".html"))
            for sample in SAMPLE_NAMES:
                values = sample_values(locale, sample)
                shared = shared_values(locale, purpose=purpose, partner=partner, campaign_name=campaign_name)
                plain = {**shared, **_plain(values, html=part.endswith(".html"))}
                direct = _render(name, template, plain, seconds=CREATE_RENDER_SECONDS)
                tagged = _render(name, template, {**shared, **tags(html=part.endswith(".html"))})
                if substitute(tagged, substitutions(values, html=part.endswith(".html"))) != direct:
                    raise TemplateProblem(
                        f"{name}: {', '.join(PER_RECIPIENT)} are filled in for each recipient by the "
                        "provider: print them as they are ({{ first_name }}), do not test or transform them "
                        "(use {{ greeting }} for a salutation that works without a name)"
                    )
            if part == "subject.txt" and not " ".join(direct.split()):
                raise TemplateProblem(f"{name}: the subject is empty")
        _check_size(locale, render(content, purpose=purpose, partner=partner, campaign_name=campaign_name))


def _check_size(locale: str, mail: RenderedCampaign) -> None:
    """A mail over the configured size is refused at create, not found too large mid-send."""
    limit = get_settings().max_message_bytes
    size = sum(len(part.encode("utf-8")) for part in (mail.subject, mail.text, mail.html))
    if size > limit:
        raise TemplateProblem(
            f"{locale}: the mail is {size:,} bytes, over the {limit:,} allowed (MAILER_MAX_MESSAGE_BYTES)"
        )


def _compile(name: str, source: str, *, html: bool) -> jinja2.Template:
    env = sandbox(html)
    try:
        tree = env.parse(source, name=name)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateProblem(f"{name}:{error.lineno}: {error.message}") from None
    for other in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        raise TemplateProblem(
            f"{name}:{other.lineno}: other templates cannot be used (extends, include, import)"
        )
    for found in tree.find_all((nodes.Getattr, nodes.Getitem)):
        node: Any = found
        key = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        if isinstance(key, str) and key.startswith("_"):
            raise TemplateProblem(f"{name}:{node.lineno}: unsafe attribute {key!r}")
    unknown = meta.find_undeclared_variables(tree) - VARIABLES
    if unknown:
        first = min(
            (n for n in tree.find_all(nodes.Name) if n.name in unknown and n.ctx == "load"),
            key=lambda n: n.lineno,
        )
        raise TemplateProblem(
            f"{name}:{first.lineno}: unknown variable {first.name!r} "
            f"(available: {', '.join(sorted(VARIABLES))})"
        )
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateProblem(f"{name}:{error.lineno}: {error.message}") from None


def _render(
    name: str, template: jinja2.Template, context: dict[str, Any], *, seconds: float | None = None
) -> str:
    try:
        return render_bounded(
            name, template, context, max_characters=get_settings().max_message_bytes, seconds=seconds
        )
    except RenderBudgetExceeded:
        raise
    except Exception as error:
        line = _template_line(error)
        where = f"{name}:{line}" if line else name
        text = str(error) if isinstance(error, jinja2.TemplateError) else f"{type(error).__name__}: {error}"
        raise TemplateProblem(f"{where}: {text}") from None


def _template_line(error: BaseException) -> int | None:
    # Jinja2 rewrites tracebacks so template frames carry the template's own line numbers.
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if f.filename == "<template>"]
    return lines[-1] if lines else None


# -- values and tags


def tag(variable: str, *, html: bool) -> str:
    """The substitution tag of a per-recipient value in one part (HTML-escaped value or plain)."""
    return f"%%nm:{variable}:{'html' if html else 'text'}%%"


def tags(*, html: bool) -> dict[str, str]:
    return {v: tag(v, html=html) for v in PER_RECIPIENT}


def first_name(name: str | None) -> str:
    """The first word of a recipient's name ("Jean-Luc" of "Jean-Luc Picard"); empty without a name."""
    return name.split()[0] if name and name.split() else ""


def recipient_values(
    locale: str, name: str | None, unsubscribe_url: str, preferences_url: str
) -> dict[str, str]:
    """A recipient's own values, unescaped."""
    first = first_name(name)
    greeting = gettext(locale, "Hello %(name)s,") % {"name": first} if first else gettext(locale, "Hello,")
    return {
        "first_name": first,
        "greeting": greeting,
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
    }


def sample_values(locale: str, name: str | None) -> dict[str, str]:
    base = get_settings().base_url
    return recipient_values(
        locale, name, f"{base}/u/SAMPLE-TOKEN?a=1&b=2", f"{base}/preferences/SAMPLE-TOKEN"
    )


def _plain(values: Mapping[str, str], *, html: bool) -> dict[str, Any]:
    return (
        {k: v for k, v in values.items()}
        if not html
        else {k: markupsafe.escape(v) for k, v in values.items()}
    )


def substitutions(values: Mapping[str, str], *, html: bool, used: str | None = None) -> dict[str, str]:
    """Tag -> value for one part; only the tags that appear in ``used`` when given."""
    return {
        tag(k, html=html): str(markupsafe.escape(v)) if html else v
        for k, v in values.items()
        if used is None or tag(k, html=html) in used
    }


def shared_values(locale: str, *, purpose: str, partner: str | None, campaign_name: str) -> dict[str, Any]:
    return {
        "locale": locale,
        "partner_name": partner or "",
        "purpose_label": gettext(locale, get_purpose(purpose).label),
        "campaign_name": campaign_name,
    }


# -- rendering a locale once for a batch


@dataclass(frozen=True, eq=False)
class RenderedCampaign:
    """A locale's mail with substitution tags where per-recipient values go."""

    locale: str
    subject: str
    text: str
    html: str

    @functools.cached_property
    def used(self) -> tuple[tuple[str, str, bool], ...]:
        """(variable, tag, is HTML) of every tag this mail holds: the only substitutions sent."""
        plain = self.subject + self.text
        return tuple(
            (variable, tag(variable, html=html), html)
            for variable in PER_RECIPIENT
            for html in (False, True)
            if tag(variable, html=html) in (self.html if html else plain)
        )

    def substitutions_for(self, values: Mapping[str, str]) -> dict[str, str]:
        """The substitutions one recipient needs (only the tags this mail uses)."""
        return {
            key: str(markupsafe.escape(values[variable])) if html else values[variable]
            for variable, key, html in self.used
        }

    def as_received(self, values: Mapping[str, str]) -> tuple[str, str, str]:
        """(subject, text, html) as one recipient reads them, the substitutions applied (previews)."""
        applied = self.substitutions_for(values)
        return (
            substitute(self.subject, applied),
            substitute(self.text, applied),
            substitute(self.html, applied),
        )


@functools.lru_cache(maxsize=64)
def _compiled(content: LocaleContent) -> tuple[jinja2.Template, jinja2.Template, jinja2.Template]:
    return (
        _compile(f"{content.locale}/subject.txt", content.subject, html=False),
        _compile(f"{content.locale}/body.html", content.body_html, html=True),
        _compile(f"{content.locale}/body.txt", content.body_text, html=False),
    )


def render(
    content: LocaleContent, *, purpose: str, partner: str | None, campaign_name: str
) -> RenderedCampaign:
    """The campaign's content for one locale, wrapped in the marketing legal mentions, with tags."""
    locale = content.locale
    subject_t, html_t, text_t = _compiled(content)
    shared = shared_values(locale, purpose=purpose, partner=partner, campaign_name=campaign_name)
    subject = _render(f"{locale}/subject.txt", subject_t, {**shared, **tags(html=False)})
    body_html = _render(f"{locale}/body.html", html_t, {**shared, **tags(html=True)})
    body_text = _render(f"{locale}/body.txt", text_t, {**shared, **tags(html=False)})
    env = environment(locale)
    wrapper = {
        "purpose": purpose,
        "partner_name": partner,
        "postal_address": get_settings().postal_address,
        "base_url": get_settings().base_url,
    }
    try:
        html = env.get_template("email/_campaign/body.html").render(
            {**wrapper, **tags(html=True), "content": markupsafe.Markup(body_html)}
        )
        text = env.get_template("email/_campaign/body.txt").render(
            {**wrapper, **tags(html=False), "content": body_text}
        )
    except jinja2.TemplateError as error:
        raise TemplateProblem(f"email/campaign: {error}") from error
    return RenderedCampaign(locale, " ".join(subject.split()), text.strip() + "\n", html)
