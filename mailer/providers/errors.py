"""What a provider call or a provider's webhook post can end in; each error says when it is raised.

A backend turns its provider's answers into these classes, and callers branch on the class (the
pipeline: retry, fail, record unknown; a campaign: pause on a refused key), never on the text.
Every send error keeps the provider's HTTP status in ``status_code`` (None: no answer came).
"""

from __future__ import annotations

from mailer.errors import MailerError


class SendError(MailerError):
    """Base of the errors a backend raises when a provider call did not succeed."""

    #: Text recorded on the delivery (the provider's own error text where it gave one).
    detail: str
    #: The provider's HTTP status; None when no answer came (unreachable, timed out).
    status_code: int | None

    def __init__(self, detail: str, *, status_code: int | None = None) -> None:
        self.detail = detail
        self.status_code = status_code
        super().__init__(detail)


class PermanentSendError(SendError):
    """Raised when the provider refused the request for good (400, 404, 413): never retried."""


class KeyRefused(PermanentSendError):
    """Raised when the provider refuses our API key (401, 403): nothing to do with the recipients.

    Permanent for a send on its own; a campaign pauses instead, its sends back to pending until
    the key is fixed and the campaign resumed.
    """


class TransientSendError(SendError):
    """Raised when the provider did not take the request but may later (5xx, connection refused)."""


class RateLimited(TransientSendError):
    """Raised when the provider answers 429; carries the delay it asked for."""

    def __init__(self, detail: str, retry_after_ms: int, *, status_code: int | None = 429) -> None:
        super().__init__(detail, status_code=status_code)
        self.retry_after_ms = retry_after_ms


class AmbiguousSendError(SendError):
    """Raised when the request was written but no answer came (read timeout, dropped connection).

    The provider may have accepted it; sending again could send twice, so the delivery is
    recorded ``unknown`` and settled later by provider events.
    """


class BadSignature(MailerError):
    """Raised when a provider webhook post's signature is missing, malformed, stale or wrong."""


class WebhookNotConfigured(MailerError):
    """Raised when a webhook post arrives for a source whose verification key is not set (503)."""
