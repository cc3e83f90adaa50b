"""The ``web`` process: unsubscribe links, the preference centre and SendGrid's event webhook."""

from mailer.web.app import create_app

__all__ = ["create_app"]
