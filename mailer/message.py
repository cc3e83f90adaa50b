"""What a backend sends: one content shared by envelopes that differ only in their own values."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol

from mailer.config import get_settings


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


class Backend(Protocol):
    """Sends one message; returns the provider's message id or raises a SendError subclass."""

    name: str

    def send(self, message: OutgoingMessage) -> str: ...


@functools.cache
def get_backend() -> Backend:
    """The configured backend of this process (one pooled HTTP client for SendGrid)."""
    settings = get_settings()
    if settings.email_backend == "sendgrid":
        from mailer.providers.sendgrid import SendGridBackend

        return SendGridBackend.from_settings(settings)
    from mailer.providers.outbox import OutboxBackend

    return OutboxBackend(settings.outbox_dir)
