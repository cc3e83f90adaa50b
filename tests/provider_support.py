"""Providers with other limits than SendGrid's, for the tests of what composers do with them."""

from __future__ import annotations

import dataclasses

import pytest

from mailer.providers.sendgrid import SendGridBackend


def declare_limits(monkeypatch: pytest.MonkeyPatch, **changes: object) -> None:
    """The SendGrid backend declaring other limits, as another provider would (the fake still
    checks every request against SendGrid's own)."""
    monkeypatch.setattr(SendGridBackend, "limits", dataclasses.replace(SendGridBackend.limits, **changes))
