"""The interface every e-mail provider's backend implements; it knows none of them.

In the manner of Dramatiq's ``rate_limits/backend.py``: the pipeline and the composers speak to
this class only, and ``registry.py`` picks the implementation the settings name.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from mailer.config import Settings
from mailer.message import OutgoingMessage


@dataclass(frozen=True)
class ProviderLimits:
    """What one request to a provider may carry: composers size their messages by it."""

    #: Recipients (SendGrid: personalizations) in one request.
    max_recipients: int
    #: Whether the provider writes each recipient's own values into shared content (SendGrid's
    #: substitutions). Without it, a message carries one recipient's values written in.
    substitutes_per_recipient: bool
    #: Bytes of one recipient's substitutions, tags and values together.
    max_substitution_bytes: int
    #: Bytes of one recipient's custom arguments as JSON (our delivery id travels there).
    max_custom_args_bytes: int


class Backend(abc.ABC):
    """Sends one message: returns the provider's message id or raises a ``SendError`` subclass."""

    #: The name the settings use for it (``MAILER_EMAIL_BACKEND``).
    name: str
    #: The provider's name in what people read (a campaign's pause reason).
    label: str
    #: What one request may carry.
    limits: ProviderLimits

    @classmethod
    def from_settings(cls, settings: Settings) -> Backend:
        """The backend configured by ``settings`` (the registry builds one per process)."""
        raise NotImplementedError(f"{cls.__name__} is not built from the settings")

    @abc.abstractmethod
    def send(self, message: OutgoingMessage) -> str:
        """Hand one message to the provider; its envelopes are its recipients."""

    def close(self) -> None:  # noqa: B027 (optional hook: most backends hold nothing to release)
        """Release what the backend holds open (connections); it may be used again afterwards."""
