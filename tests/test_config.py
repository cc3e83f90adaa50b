"""Settings: read once, typed, and a bad or missing variable is named."""

from __future__ import annotations

import pytest

from mailer.config import load_settings
from mailer.errors import ConfigError


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "MAILER_DATABASE_URL",
            "mysql://db/x",
            "MAILER_DATABASE_URL: must be a sqlite:/// or postgresql:// URL",
        ),
        ("MAILER_BROKER_URL", "amqp://rabbit", "MAILER_BROKER_URL: must be a redis:// URL"),
        ("MAILER_EMAIL_BACKEND", "smtp", "MAILER_EMAIL_BACKEND: Input should be 'outbox' or 'sendgrid'"),
        ("MAILER_SENDGRID_TIMEOUT", "soon", "MAILER_SENDGRID_TIMEOUT: Input should be a valid number"),
        ("MAILER_BASE_URL", "mailer.example.com", "MAILER_BASE_URL: must start with http:// or https://"),
        ("MAILER_DEFAULT_LOCALE", "de", "MAILER_DEFAULT_LOCALE: Input should be 'fr' or 'en'"),
        (
            "MAILER_SENDGRID_ASM_GROUPS",
            "nouma_offers:12",
            "MAILER_SENDGRID_ASM_GROUPS: expected purpose=group_id pairs",
        ),
    ],
)
def test_a_bad_variable_is_named(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value).startswith(message)


def test_sendgrid_backend_needs_its_key(monkeypatch):
    monkeypatch.setenv("MAILER_EMAIL_BACKEND", "sendgrid")
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"^SENDGRID_API_KEY: required"):
        load_settings()


def test_the_secret_key_is_required_outside_the_embedded_default(monkeypatch):
    monkeypatch.delenv("MAILER_SECRET_KEY")
    monkeypatch.setenv("MAILER_DATABASE_URL", "postgresql://db/mailer")
    with pytest.raises(ConfigError, match=r"^MAILER_SECRET_KEY: required outside the embedded default"):
        load_settings()


def test_defaults_are_the_embedded_default(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILER_SECRET_KEY")
    monkeypatch.delenv("MAILER_OUTBOX_DIR")
    settings = load_settings()
    assert settings.is_embedded and settings.database_url == "sqlite:///var/mailer.sqlite"
    # the embedded default keeps one generated key, so links keep working from run to run
    assert settings.secret_keys() == load_settings().secret_keys()
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0


def test_secrets_never_print(monkeypatch):
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.very-secret")
    settings = load_settings()
    assert "very-secret" not in repr(settings) and "test-signing-key" not in repr(settings)


def test_asm_groups_and_postgres_urls(monkeypatch):
    monkeypatch.setenv("MAILER_SENDGRID_ASM_GROUPS", "nouma_offers=12, partner_offers=13")
    monkeypatch.setenv("MAILER_DATABASE_URL", "postgres://u@db/mailer")
    settings = load_settings()
    assert settings.asm_group("nouma_offers") == 12 and settings.asm_group("tender_alerts") is None
    assert settings.database_url == "postgresql+psycopg://u@db/mailer"
