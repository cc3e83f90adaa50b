"""Which provider sends: the one place that names the implementations, imported when chosen.

The interfaces (``backend.py``) never import an implementation; this table maps the name the
settings give (``MAILER_EMAIL_BACKEND``) to its class, so adding a provider is one line here.
"""

from __future__ import annotations

import functools
import importlib

from mailer.config import get_settings
from mailer.providers.backend import Backend

#: ``MAILER_EMAIL_BACKEND`` -> ``module:Class`` of its backend.
BACKENDS: dict[str, str] = {
    "outbox": "mailer.providers.outbox:OutboxBackend",
    "sendgrid": "mailer.providers.sendgrid:SendGridBackend",
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
