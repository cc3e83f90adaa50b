"""``python -m mailer.cli``: the same as the ``mailer`` command."""

from mailer.cli import entry_point

entry_point()
