"""Which provider sends, and whose webhooks we take: the one place that names implementations.

The interfaces (``backend.py``, ``webhook.py``) never import an implementation; these tables map
a name to its class, imported when chosen: the backend the settings name
(``MAILER_EMAIL_BACKEND``), and every webhook source, each given its route ``/webhooks/<name>``.
Adding a provider is a line in each.
"""

from __future__ import annotations

import functools
import importlib

from mailer.config import get_settings
from mailer.providers.backend import Backend
from mailer.providers.webhook import WebhookSource

#: ``MAILER_EMAIL_BACKEND`` -> ``module:Class`` of its backend.
BACKENDS: dict[str, str] = {
    "outbox": "mailer.providers.outbox:OutboxBackend",
    "sendgrid": "mailer.providers.sendgrid:SendGridBackend",
}

#: Webhook sources by name: ``POST /webhooks/<name>``, and the name kept with what they post.
WEBHOOK_SOURCES: dict[str, str] = {
    "sendgrid": "mailer.providers.sendgrid_webhook:SendGridWebhook",
}


def load(path: str) -> type:
    """The class a ``module:Class`` path names, its module imported now."""
    module_name, _, class_name = path.partition(":")
    found: type = getattr(importlib.import_module(module_name), class_name)
    return found


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name``; ValueError names the known ones otherwise."""
    try:
        path = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown e-mail backend {name!r}; known: {', '.join(sorted(BACKENDS))}") from None
    found: type[Backend] = load(path)
    return found


@functools.cache
def get_backend() -> Backend:
    """The configured backend of this process (one pooled HTTP client for SendGrid)."""
    settings = get_settings()
    return backend_class(settings.email_backend).from_settings(settings)


@functools.cache
def _webhook_class(name: str) -> type[WebhookSource]:
    try:
        path = WEBHOOK_SOURCES[name]
    except KeyError:
        known = ", ".join(sorted(WEBHOOK_SOURCES))
        raise ValueError(f"unknown webhook source {name!r}; known: {known}") from None
    found: type[WebhookSource] = load(path)
    return found


def webhook_source(name: str) -> WebhookSource:
    """The webhook source registered under ``name``, as the current settings configure it."""
    return _webhook_class(name).from_settings(get_settings())
