"""The interface of a provider's event webhook: verify a post, read its events; it knows none.

In the manner of django-anymail's ``webhooks/base.py``: each provider's webhook module verifies
its posts and turns them into provider-neutral events (``events.py``); ``mailer/provider_events``
stores and applies them, and the web process gives each source its route, ``/webhooks/<name>``.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping
from typing import ClassVar

from mailer.config import Settings
from mailer.models import ConsentSource
from mailer.providers.events import ProviderEvent


class WebhookSource(abc.ABC):
    """One provider's event webhook, built from the settings."""

    #: Its route's last part (``/webhooks/<name>``), kept with its stored batches and events and
    #: named as the author of what they record.
    name: ClassVar[str]
    #: The provider's name in the notes its events leave on suppressions and consent events.
    label: ClassVar[str]
    #: How the consent ledger records the withdrawals its unsubscribe events make.
    consent_source: ClassVar[ConsentSource]
    #: Posts larger than this are refused unread.
    max_body_bytes: ClassVar[int]

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings: Settings) -> WebhookSource:
        """The source as ``settings`` configure it (its key, its unsubscribe groups)."""

    @abc.abstractmethod
    def check_configured(self) -> None:
        """Raise ``WebhookNotConfigured`` when posts cannot be verified (a setting is missing)."""

    @abc.abstractmethod
    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> int:
        """Check a post's signature and freshness; its signed time (epoch seconds) or ``BadSignature``."""

    @abc.abstractmethod
    def parse(self, body: str, received_at: dt.datetime) -> list[ProviderEvent]:
        """The events of a verified post; ValueError when the body cannot be read at all.

        A malformed event is kept as an unknown one, never a crash: its post was signed.
        """
