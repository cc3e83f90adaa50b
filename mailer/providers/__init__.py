"""E-mail providers: the backends that send a message, and the webhooks that report what became of it.

The interfaces know no implementation (``backend.py``); ``registry.py`` names them, and the
settings pick one. A provider is a backend module, a webhook module, a line in the registry and
its settings (the README's checklist).
"""

# Sending: the interface, its limits, the configured backend; webhooks: the configured sources.
from mailer.providers.backend import Backend, ProviderLimits

# What a provider call or a webhook post can end in.
from mailer.providers.errors import (
    AmbiguousSendError,
    BadSignature,
    KeyRefused,
    PermanentSendError,
    RateLimited,
    SendError,
    TransientSendError,
)
from mailer.providers.registry import get_backend, webhook_source

__all__ = [
    "AmbiguousSendError",
    "Backend",
    "BadSignature",
    "KeyRefused",
    "PermanentSendError",
    "ProviderLimits",
    "RateLimited",
    "SendError",
    "TransientSendError",
    "get_backend",
    "webhook_source",
]
