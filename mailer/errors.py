"""The mailer's errors; each says when it is raised."""

from __future__ import annotations

from collections.abc import Sequence


class MailerError(Exception):
    """Base of every error the mailer raises on purpose; its message is shown to the user as is."""


class ConfigError(MailerError):
    """Raised at start-up when an environment variable is missing or malformed."""


class InvalidInput(MailerError):
    """Raised when an argument or a value given by a user or a file is not acceptable."""


class InvalidAddress(InvalidInput):
    """Raised when an e-mail address does not parse."""


class UnknownPurpose(InvalidInput):
    """Raised when a purpose key is not one of the three purposes."""


class NotFound(MailerError):
    """Raised when a recipient, delivery or other record named by the user does not exist."""


class ImportFailed(MailerError):
    """Raised when an import file has bad lines; nothing was imported. Holds every problem found."""

    def __init__(self, problems: Sequence[tuple[int | str, str]]) -> None:
        self.problems = problems
        where, first_message = problems[0]
        # A line (or record) number, or a file inside a folder or an archive.
        first = f"line {where}" if isinstance(where, int) else where or "the file"
        more = f" (and {len(problems) - 1} more bad lines)" if len(problems) > 1 else ""
        super().__init__(f"{first}: {first_message}{more}; nothing was imported")


class TemplateProblem(MailerError):
    """Raised when a template does not compile or uses a variable it was not given."""


class RenderBudgetExceeded(TemplateProblem):
    """Raised when a template writes more characters, or takes longer, than its budget allows."""


class BadToken(MailerError):
    """Raised when an unsubscribe token is forged, truncated, altered or for an unknown purpose."""


class BadSignature(MailerError):
    """Raised when a provider webhook post's signature is missing, malformed, stale or wrong."""


class SendError(MailerError):
    """Base of the errors a backend raises when a provider call did not succeed."""

    #: Text recorded on the delivery (the provider's own error text where it gave one).
    detail: str

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class PermanentSendError(SendError):
    """Raised when the provider refused the request for good (400, 401, 403, 413): never retried."""


class TransientSendError(SendError):
    """Raised when the provider did not take the request but may later (5xx, connection refused)."""


class RateLimited(TransientSendError):
    """Raised on SendGrid 429; carries the delay the server asked for."""

    def __init__(self, detail: str, retry_after_ms: int) -> None:
        super().__init__(detail)
        self.retry_after_ms = retry_after_ms


class AmbiguousSendError(SendError):
    """Raised when the request was written but no answer came (read timeout, dropped connection).

    The provider may have accepted it; sending again could send twice, so the delivery is
    recorded ``unknown`` and settled later by provider events.
    """


class KeyRefused(TransientSendError):
    """Raised for a campaign when SendGrid refuses the API key (401/403): the campaign pauses.

    Not the recipients' fault: their sends go back to pending and go out after ``resume``.
    """


class WrongCampaignState(InvalidInput):
    """Raised when a campaign command does not apply in the campaign's current state."""
