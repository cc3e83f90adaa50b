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


class WrongCampaignState(InvalidInput):
    """Raised when a campaign command does not apply in the campaign's current state."""
