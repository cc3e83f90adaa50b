"""Entry point of the worker processes: ``dramatiq worker``."""

import mailer.actors  # noqa: F401
