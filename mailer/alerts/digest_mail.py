"""The digest mail: each recipient's digest composed, those of a locale packed into one request.

Digests differ per reader, so there is no content to render once; what the digests of a locale
share is the layout. The layout goes once per request with tags, and each reader's subject,
digest part and links travel as SendGrid substitutions; the outbox applies the same substitutions,
so the ``.eml`` is what the reader gets.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from mailer import emails
from mailer.alerts.digest_content import DigestContent
from mailer.alerts.models import Digest, DigestRun, Frequency
from mailer.alerts.windows import DIGEST_KIND, PURPOSE, parse_belongs_to
from mailer.batch import BatchSpec
from mailer.config import get_settings
from mailer.db import id_in, in_chunks
from mailer.emails import Addressed, Composition, RecipientView
from mailer.errors import TemplateProblem
from mailer.message import Envelope, OutgoingMessage
from mailer.providers import get_backend
from mailer.rendering import environment
from mailer.suppression.tokens import preferences_url, unsubscribe_url

#: A digest whose substitutions come this close (bytes) to the provider's limit on one
#: recipient's (SendGrid: 10,000, tags and values) is sent in a request of its own.
SUBSTITUTION_MARGIN_BYTES = 500
#: Digests per request, at most (SendGrid takes up to 1,000): a 200-digest body is ~1 MB, so a
#: worker thread never holds tens of megabytes of request, and one refusal fails fewer sends.
MAX_DIGESTS_PER_MESSAGE = 200
#: Tags the shared content carries; each digest's own parts replace them (SendGrid substitutions).
SUBJECT_TAG = "[%nouma-digest-subject%]"
TEXT_TAG = "[%nouma-digest-text%]"
HTML_TAG = "[%nouma-digest-html%]"
UNSUBSCRIBE_TAG = "[%nouma-unsubscribe%]"
PREFERENCES_TAG = "[%nouma-preferences%]"
TAGS = (SUBJECT_TAG, TEXT_TAG, HTML_TAG, UNSUBSCRIBE_TAG, PREFERENCES_TAG)
#: A subject on one line: its newlines go, French typography's no-break spaces stay.
_ONE_LINE = re.compile(r"[ \t\r\n]+")


def _escaped_safely(value: str) -> bool:
    # A value substituted into both the text and the HTML part must read the same in both.
    return str(escape(value)) == value


@dataclass(frozen=True)
class _Shell:
    """The content shared by every digest of a locale in a batch: the chrome around the tags."""

    text: str
    html: str


@emails.email_kind(DIGEST_KIND)
class DigestComposer:
    """Builds each recipient's digest; packs those of a locale into one SendGrid request.

    Digests differ per recipient, so there is no shared content to render once. What is shared is
    the chrome (layout, footer, the reason for the mail); each recipient's subject, digest part
    and links travel as SendGrid substitutions of at most 10,000 bytes. Up to a thousand digests
    then cost one HTTP request and one delivery update, instead of one each; a digest too large
    for substitutions goes in a request of its own, rendered in full.
    """

    def compose(self, session: Session, spec: BatchSpec, addressed: Sequence[Addressed]) -> Composition:
        composition = Composition()
        if not addressed:
            return composition
        frequency, window = parse_belongs_to(spec.belongs_to)
        run = session.scalars(
            sa.select(DigestRun).where(DigestRun.frequency == frequency, DigestRun.window == window)
        ).one_or_none()
        if run is None:
            for item in addressed:
                composition.failed[item.delivery_id] = f"no digest run planned for {spec.belongs_to}"
            return composition
        digests = {
            rid: sections
            for rid, sections in session.execute(
                sa.select(Digest.recipient_id, Digest.sections).where(
                    Digest.run_id == run.id,
                    id_in(session, Digest.recipient_id, [a.recipient.id for a in addressed]),
                )
            )
        }
        for item in addressed:
            if item.recipient.id not in digests:
                composition.skipped[item.delivery_id] = "empty_digest"
        present = [a for a in addressed if a.recipient.id in digests]
        if not present:
            return composition
        needed: dict[str, set[int]] = defaultdict(set)
        search_ids: set[int] = set()
        for item in present:
            for search_id, tender_ids, _count in digests[item.recipient.id]:
                search_ids.add(search_id)
                needed[item.recipient.locale].update(tender_ids)
        content = DigestContent.load(session, needed, search_ids)
        packs: dict[str, list[Envelope]] = defaultdict(list)
        shells: dict[str, _Shell] = {}
        for item in present:
            recipient = item.recipient
            try:
                if recipient.locale not in shells:
                    shells[recipient.locale] = _render_shell(recipient.locale)
                parts = _render_digest(recipient, digests[recipient.id], content, frequency)
            except TemplateProblem as problem:
                composition.failed[item.delivery_id] = f"render_error: {problem}"
                continue
            envelope = _envelope(item, parts)
            if _fits(envelope):
                packs[recipient.locale].append(envelope)
            else:
                composition.messages.append(_alone(shells[recipient.locale], envelope))
        for locale, envelopes in packs.items():
            shell = shells[locale]
            for group in in_chunks(
                envelopes, min(MAX_DIGESTS_PER_MESSAGE, get_backend().limits.max_recipients)
            ):
                composition.messages.append(
                    OutgoingMessage(
                        purpose=PURPOSE,
                        kind=DIGEST_KIND,
                        subject=SUBJECT_TAG,
                        text=shell.text,
                        html=shell.html,
                        envelopes=tuple(group),
                    )
                )
        return composition


@dataclass(frozen=True)
class _Parts:
    subject: str
    text: str
    html: str


def _envelope(item: Addressed, parts: _Parts) -> Envelope:
    recipient = item.recipient
    unsubscribe = unsubscribe_url(recipient.id, PURPOSE)
    return Envelope(
        delivery_id=item.delivery_id,
        to_address=recipient.address,
        to_name=recipient.name,
        headers=emails.unsubscribe_headers(unsubscribe),
        substitutions={
            SUBJECT_TAG: parts.subject,
            TEXT_TAG: parts.text,
            HTML_TAG: parts.html,
            UNSUBSCRIBE_TAG: unsubscribe,
            PREFERENCES_TAG: preferences_url(recipient.id),
        },
    )


def _fits(envelope: Envelope) -> bool:
    limits = get_backend().limits
    values = envelope.substitutions
    size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
    if (
        not limits.substitutes_per_recipient
        or size > limits.max_substitution_bytes - SUBSTITUTION_MARGIN_BYTES
    ):
        return False
    # A value holding a tag would be read differently by SendGrid and by a plain replacement.
    if any(tag in value for value in values.values() for tag in TAGS):
        return False
    return _escaped_safely(values[UNSUBSCRIBE_TAG]) and _escaped_safely(values[PREFERENCES_TAG])


def _alone(shell: _Shell, envelope: Envelope) -> OutgoingMessage:
    """A digest in a request of its own: the shell with its parts written in."""
    values = envelope.substitutions

    def fill(text: str, *, html: bool) -> str:
        for tag in (TEXT_TAG, HTML_TAG):
            text = text.replace(tag, values[tag])
        for tag in (UNSUBSCRIBE_TAG, PREFERENCES_TAG):
            text = text.replace(tag, str(escape(values[tag])) if html else values[tag])
        return text

    return OutgoingMessage(
        purpose=PURPOSE,
        kind=DIGEST_KIND,
        subject=values[SUBJECT_TAG],
        text=fill(shell.text, html=False),
        html=fill(shell.html, html=True),
        envelopes=(
            Envelope(
                delivery_id=envelope.delivery_id,
                to_address=envelope.to_address,
                to_name=envelope.to_name,
                headers=envelope.headers,
            ),
        ),
    )


def _render_shell(locale: str) -> _Shell:
    env = environment(locale)
    context = {
        "purpose": PURPOSE,
        "marketing": False,
        "unsubscribe_url": UNSUBSCRIBE_TAG,
        "preferences_url": PREFERENCES_TAG,
        "digest_text": TEXT_TAG,
        "digest_html": Markup(HTML_TAG),
    }
    try:
        return _Shell(
            text=env.get_template(f"email/{DIGEST_KIND}/body.txt").render(context).strip() + "\n",
            html=env.get_template(f"email/{DIGEST_KIND}/body.html").render(context),
        )
    except Exception as error:
        raise TemplateProblem(f"email/{DIGEST_KIND}: {error!r}") from error


def _render_digest(
    recipient: RecipientView, sections: list[Any], content: DigestContent, frequency: Frequency
) -> _Parts:
    locale = recipient.locale
    env = environment(locale)
    shown = []
    for search_id, tender_ids, count in sections:
        search = content.searches.get(search_id)
        tenders = [view for view in (content.view(t, locale) for t in tender_ids) if view is not None]
        if search is None or not tenders:
            continue
        shown.append({"name": search, "count": count, "more": count - len(tenders), "tenders": tenders})
    if not shown:
        raise TemplateProblem("the digest's searches or tenders are gone")
    context = {
        "recipient": recipient,
        "sections": shown,
        "total": sum(s["count"] for s in shown),
        "weekly": frequency == Frequency.WEEKLY,
        "alerts_url": get_settings().alerts_url,
    }
    try:
        subject = env.get_template(f"email/{DIGEST_KIND}/subject.txt").render(context)
        text = env.get_template(f"email/{DIGEST_KIND}/content.txt").render(context)
        html = env.get_template(f"email/{DIGEST_KIND}/content.html").render(context)
    except Exception as error:
        raise TemplateProblem(f"email/{DIGEST_KIND}: {error!r}") from error
    return _Parts(subject=_ONE_LINE.sub(" ", subject).strip(), text=text.strip(), html=html.strip())
