"""What a backend sends: one content shared by envelopes that differ only in their own values."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Envelope:
    """One recipient of a message (a SendGrid personalization)."""

    delivery_id: int
    to_address: str
    to_name: str | None = None
    #: Headers of this recipient alone (its List-Unsubscribe link).
    headers: dict[str, str] = field(default_factory=dict)
    #: Tag -> value replaced in subject, text and HTML for this recipient only.
    substitutions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutgoingMessage:
    """Subject, text and HTML shared by every envelope, plus ids-only metadata."""

    purpose: str
    kind: str
    subject: str
    text: str
    html: str
    envelopes: tuple[Envelope, ...]
    headers: dict[str, str] = field(default_factory=dict)
    #: Measure opens and clicks: only when every recipient of the request consented to it.
    tracking: bool = False

    @property
    def delivery_ids(self) -> list[int]:
        return [e.delivery_id for e in self.envelopes]


def substitute(text: str, substitutions: dict[str, str]) -> str:
    """Replace an envelope's tags in shared content, the way SendGrid does (plain string replacement).

    Every backend and every preview applies this one rule, so what a reader gets is the same
    whichever writes their values in.
    """
    for tag, value in substitutions.items():
        text = text.replace(tag, value)
    return text


def split_by_tracking(message: OutgoingMessage, tracked: set[int]) -> list[OutgoingMessage]:
    """The message as requests whose recipients all consented to tracking, or none did: a
    provider sets tracking per request, never per recipient."""
    on = tuple(e for e in message.envelopes if e.delivery_id in tracked)
    off = tuple(e for e in message.envelopes if e.delivery_id not in tracked)
    return [
        replace(message, envelopes=envelopes, tracking=state)
        for envelopes, state in ((off, False), (on, True))
        if envelopes
    ]


def written_out(message: OutgoingMessage) -> list[OutgoingMessage]:
    """One message per envelope, its own values written into the content: for a provider that
    cannot substitute per recipient. Each reads exactly as that recipient's substitutions would."""
    return [
        replace(
            message,
            subject=substitute(message.subject, envelope.substitutions),
            text=substitute(message.text, envelope.substitutions),
            html=substitute(message.html, envelope.substitutions),
            envelopes=(replace(envelope, substitutions={}),),
        )
        for envelope in message.envelopes
    ]
