"""Every kind of e-mail the mailer sends, and how a batch of recipients becomes messages.

A kind is declared where it is defined, with ``@email_kind``: on a function returning each
recipient's template context (or a ``Skip``), rendered from ``templates/email/<kind>/``; or on a
``Composer`` class, for kinds that build their own messages (digests, campaigns). "What mail do we
send?" is answered by ``KIND_MODULES`` below, or ``grep -rn "@email_kind" mailer``. The module
declaring a kind is imported the first time the kind is needed: nothing imports a module only so
that its kinds register.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar, cast

from sqlalchemy.orm import Session

from mailer.batch import BatchSpec
from mailer.config import get_settings
from mailer.db import utcnow
from mailer.errors import TemplateProblem
from mailer.message import Envelope, OutgoingMessage
from mailer.purposes import get_purpose
from mailer.rendering import gettext, render
from mailer.suppression.tokens import preferences_url, unsubscribe_url


class RecipientView(NamedTuple):
    """What rendering may know of a recipient (a tuple: a campaign batch makes a thousand)."""

    id: int
    address: str
    name: str | None
    locale: str
    time_zone: str
    #: Consent to measure opens and clicks (the request's tracking follows it).
    tracked: bool = False


class Addressed(NamedTuple):
    """A recipient who passed the gate, with the delivery record its message answers to."""

    delivery_id: int
    recipient: RecipientView


@dataclass(frozen=True)
class Skip:
    """A recipient the kind has nothing to send to (e.g. ``empty_digest``)."""

    reason: str


@dataclass
class Composition:
    """A batch turned into messages, with the recipients skipped or failed on the way."""

    messages: list[OutgoingMessage] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)


class Composer(Protocol):
    """Turns the recipients of a batch who passed the gate into messages."""

    def compose(self, session: Session, spec: BatchSpec, addressed: Sequence[Addressed]) -> Composition: ...


ContextBuilder = Callable[
    [Session, BatchSpec, Sequence[RecipientView]], Mapping[int, "dict[str, Any] | Skip"]
]

#: Every kind of mail, and the module that declares it (imported when the kind is first needed).
KIND_MODULES: dict[str, str] = {
    "campaign": "mailer.campaigns.composer",
    "tender_digest": "mailer.alerts.digest_mail",
    "test_message": "mailer.emails",
}

_composers: dict[str, Composer] = {}
_requeued_by_owner: set[str] = set()

Declared = TypeVar("Declared", bound=Callable[..., Any])


def email_kind(kind: str, *, requeued_by_owner: bool = False) -> Callable[[Declared], Declared]:
    """Declare a kind where it is defined: on a context builder or on a ``Composer`` class.

    A context builder's kind is rendered from ``templates/email/<kind>/``, one message per
    recipient. ``requeued_by_owner``: the kind's own sweep queues its lost sends again (campaigns,
    which may be paused); the delivery sweep then leaves its pending sends alone.
    """

    def decorate(declared: Declared) -> Declared:
        if isinstance(declared, type):
            composer = cast(Composer, declared())
        else:
            composer = TemplateComposer(kind, cast(ContextBuilder, declared))
        register(kind, composer, module=declared.__module__, requeued_by_owner=requeued_by_owner)
        return declared

    return decorate


def register(kind: str, composer: Composer, *, module: str, requeued_by_owner: bool = False) -> None:
    """Make a kind sendable, once, from the module ``KIND_MODULES`` names for it."""
    if KIND_MODULES.get(kind) != module:
        raise ValueError(
            f"e-mail kind {kind!r} is declared in {module}: "
            "mailer.emails.KIND_MODULES must name that module for it"
        )
    if kind in _composers:
        raise ValueError(f"e-mail kind {kind!r} is registered twice")
    _composers[kind] = composer
    if requeued_by_owner:
        _requeued_by_owner.add(kind)


def _load(kind: str) -> None:
    """Import the module declaring a kind; Python's import lock makes it run once."""
    if kind in _composers or kind not in KIND_MODULES:
        return
    importlib.import_module(KIND_MODULES[kind])
    if kind not in _composers:
        raise LookupError(f"{KIND_MODULES[kind]} does not declare the e-mail kind {kind!r}")


def _load_all() -> None:
    for kind in KIND_MODULES:
        _load(kind)


def kinds_requeued_by_their_owner() -> frozenset[str]:
    """Kinds whose pending sends the delivery sweep must not queue again."""
    _load_all()
    return frozenset(_requeued_by_owner)


def composer_for(kind: str) -> Composer:
    """The composer of a kind; ValueError names the known ones otherwise."""
    composer = _composers.get(kind)
    if composer is None:
        _load(kind)
        composer = _composers.get(kind)
    if composer is None:
        raise ValueError(f"unknown e-mail kind {kind!r}; known: {', '.join(known_kinds())}")
    return composer


def known_kinds() -> list[str]:
    """Every kind of mail, each found through the module that declares it."""
    _load_all()
    return sorted(_composers)


def unsubscribe_headers(unsubscribe_link: str) -> dict[str, str]:
    """RFC 2369 / RFC 8058 headers: the https link (and a mailto when configured), one-click POST.

    RFC 8058 3.1: ``List-Unsubscribe-Post`` is only valid beside an HTTPS URI, so a plain-http
    link (the embedded default's localhost) gets the RFC 2369 header alone.
    """
    links = [f"<{unsubscribe_link}>"]
    mailto = get_settings().unsubscribe_mailto
    if mailto:
        links.append(f"<mailto:{mailto.removeprefix('mailto:')}?subject=unsubscribe>")
    headers = {"List-Unsubscribe": ", ".join(links)}
    if unsubscribe_link.startswith("https://"):
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def common_context(recipient: RecipientView, purpose: str, unsubscribe_link: str) -> dict[str, Any]:
    """What every mail template can use, whatever its kind."""
    settings = get_settings()
    kind_of_mail = get_purpose(purpose)
    return {
        "recipient": recipient,
        "purpose": purpose,
        "purpose_label": gettext(recipient.locale, kind_of_mail.label),
        "marketing": kind_of_mail.marketing,
        "unsubscribe_url": unsubscribe_link,
        "preferences_url": preferences_url(recipient.id),
        "postal_address": settings.postal_address,
        "base_url": settings.base_url,
    }


class TemplateComposer:
    """Renders a file-template kind for each recipient in its own locale."""

    def __init__(self, kind: str, build: ContextBuilder) -> None:
        self.kind = kind
        self.build = build

    def compose(self, session: Session, spec: BatchSpec, addressed: Sequence[Addressed]) -> Composition:
        composition = Composition()
        contexts = self.build(session, spec, [a.recipient for a in addressed])
        for item in addressed:
            recipient = item.recipient
            context = contexts.get(recipient.id)
            if isinstance(context, Skip):
                composition.skipped[item.delivery_id] = context.reason
                continue
            if context is None:
                composition.failed[item.delivery_id] = f"{self.kind}: no content built for recipient"
                continue
            link = unsubscribe_url(recipient.id, spec.purpose)
            try:
                rendered = render(
                    self.kind,
                    recipient.locale,
                    {**common_context(recipient, spec.purpose, link), **context},
                )
            except TemplateProblem as problem:
                composition.failed[item.delivery_id] = f"render_error: {problem}"
                continue
            composition.messages.append(
                OutgoingMessage(
                    purpose=spec.purpose,
                    kind=self.kind,
                    subject=rendered.subject,
                    text=rendered.text,
                    html=rendered.html,
                    envelopes=(
                        Envelope(
                            delivery_id=item.delivery_id,
                            to_address=recipient.address,
                            to_name=recipient.name,
                            headers=unsubscribe_headers(link),
                        ),
                    ),
                )
            )
        return composition


@email_kind("test_message")
def test_message(
    session: Session, spec: BatchSpec, recipients: Sequence[RecipientView]
) -> dict[int, dict[str, Any] | Skip]:
    """``mailer send-test``: one plain message under a purpose, through the whole pipeline."""
    now = utcnow()
    return {r.id: {"sent_at": now} for r in recipients}
