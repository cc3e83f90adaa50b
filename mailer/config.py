"""Typed settings, read once from the environment; a bad or missing variable fails naming it."""

from __future__ import annotations

import functools
import secrets
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mailer.errors import ConfigError

#: Where the embedded default keeps its SQLite file, outbox and generated secret.
DEFAULT_VAR_DIR = Path("var")

#: The two locales the mailer renders; French first.
SUPPORTED_LOCALES = ("fr", "en")


class Settings(BaseSettings):
    """Everything the mailer reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="MAILER_", extra="ignore", frozen=True)

    database_url: str = f"sqlite:///{DEFAULT_VAR_DIR / 'mailer.sqlite'}"
    #: Unset: the in-process broker (embedded default). ``redis://...``: the Redis broker.
    broker_url: str | None = None
    #: Prefix of every Redis key the broker and the rate limiters use.
    broker_namespace: str = "mailer"
    email_backend: Literal["outbox", "sendgrid"] = "outbox"
    outbox_dir: Path = DEFAULT_VAR_DIR / "outbox"
    sendgrid_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SENDGRID_API_KEY", "MAILER_SENDGRID_API_KEY")
    )
    sendgrid_api_url: str = "https://api.sendgrid.com"
    #: Seconds to wait for SendGrid to answer once the request is written.
    sendgrid_timeout: float = 15.0
    #: ``purpose=group_id`` pairs, comma separated: the SendGrid unsubscribe group of each purpose.
    sendgrid_asm_groups: str = ""
    #: One or more keys, comma separated; the first signs, all verify (rotation).
    secret_key: SecretStr | None = None
    base_url: str = "http://localhost:8000"
    from_email: str = "alertes@nouma.fr"
    from_name: str = "NouMa"
    postal_address: str = "NouMa, 10 rue de la Paix, 75002 Paris, France"
    #: Optional mailto: address offered in List-Unsubscribe beside the https link.
    unsubscribe_mailto: str | None = None
    default_locale: Literal["fr", "en"] = "fr"
    #: A send claimed for longer than this without an outcome is marked ``unknown``.
    stale_send_seconds: int = 600
    #: A claimed send still waiting for its worker after this long is queued again.
    stale_pending_seconds: int = 3600
    #: In-process worker threads of the embedded default.
    embedded_worker_threads: int = 4
    #: SendGrid's Event Webhook verification key (base64 SubjectPublicKeyInfo, as SendGrid shows it).
    sendgrid_webhook_public_key: str | None = None
    #: Webhook posts whose signed timestamp is further than this from now are refused (replays).
    sendgrid_webhook_max_age_seconds: int = 600
    #: Version of the partner list the preference centre names; unset, partner offers can only
    #: be stopped there (consent to them must name the partners).
    partner_list_version: str | None = None
    #: The partners named beside that version, comma separated.
    partners: str = ""
    #: NouMa's page where people manage their saved searches (linked from every digest).
    alerts_url: str = "https://www.nouma.fr/alertes"
    #: Cron lines (Europe/Paris) of the scheduler: daily digests, weekly digests.
    daily_digest_cron: str = "0 7 * * *"
    weekly_digest_cron: str = "0 7 * * mon"
    #: Minutes between two sweeps of stuck deliveries queued by the scheduler.
    sweep_every_minutes: int = Field(default=5, ge=1, le=1440)
    #: Where NouMa's site drops tender and saved-search batches for the import actors.
    import_dir: Path = DEFAULT_VAR_DIR / "import"

    # Campaigns (mailer/campaigns/).
    #: Largest campaign mail (subject, text and HTML, bytes): checked at ``campaign create`` and
    #: when a batch renders. Gmail clips what is over 102 KB; SendGrid takes 30 MB a request.
    max_message_bytes: int = Field(default=1_000_000, ge=10_000, le=20_000_000)
    #: Recipients per campaign batch (one Dramatiq message, one gate query, one request per locale).
    campaign_batch_size: int = Field(default=1000, ge=1, le=1000)
    #: Campaign mails per second, held across every worker by the Redis rate limiter.
    campaign_rate_per_second: int = Field(default=1000, ge=1)
    #: Campaign mails per hour across every worker; 0: no hourly limit.
    campaign_rate_per_hour: int = Field(default=0, ge=0)
    #: Batches of one campaign queued or running at once; more are released as these finish.
    campaign_batches_in_flight: int = Field(default=32, ge=1)
    #: A queued or running batch not finished after this long was lost with the broker: re-queued.
    campaign_batch_lease_seconds: int = Field(default=300, ge=1)
    #: Seconds between two campaign sweeps of the scheduler: due campaigns start within this,
    #: lost batches are queued again within it after their lease.
    campaign_sweep_seconds: int = Field(default=30, ge=1, le=3600)
    #: Failed sends in a row (no success between) after which a campaign pauses: five full
    #: batches, so one request lost on the way (recorded unknown) does not stop a campaign.
    campaign_error_budget: int = Field(default=5000, ge=1)
    #: Marketing mails (every campaign together) a recipient may get per period; 0: no cap.
    frequency_cap: int = Field(default=2, ge=0)
    frequency_cap_days: int = Field(default=7, ge=1)
    #: The complaint breaker judges the last this many deliveries of a marketing purpose...
    breaker_window: int = Field(default=1000, ge=1)
    #: ...once at least this many exist...
    breaker_min_deliveries: int = Field(default=100, ge=1)
    #: ...and pauses that purpose's campaigns above these rates (Gmail and Yahoo: 0.1% complaints).
    breaker_complaint_rate: float = Field(default=0.001, ge=0, le=1)
    breaker_bounce_rate: float = Field(default=0.02, ge=0, le=1)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        if value.startswith("postgres://"):
            value = "postgresql://" + value.removeprefix("postgres://")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL, or unset for the in-process broker")
        return value

    @field_validator("daily_digest_cron", "weekly_digest_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"not a cron line: {value!r}")
        return value

    @field_validator("base_url", "sendgrid_api_url", "alerts_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("from_email")
    @classmethod
    def _from_email(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("must be an e-mail address")
        return value

    @field_validator("sendgrid_webhook_public_key", "partner_list_version")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @field_validator("sendgrid_webhook_max_age_seconds")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be a positive number of seconds")
        return value

    def partner_names(self) -> list[str]:
        """The partners named in the preference centre, in the configured order."""
        return [name.strip() for name in self.partners.split(",") if name.strip()]

    @property
    def is_embedded(self) -> bool:
        """True for the default set-up: SQLite, in-process broker, outbox."""
        return (
            self.database_url.startswith("sqlite")
            and self.broker_url is None
            and self.email_backend == "outbox"
        )

    def asm_group(self, purpose: str) -> int | None:
        """The SendGrid unsubscribe group configured for a purpose, if any."""
        for pair in filter(None, (p.strip() for p in self.sendgrid_asm_groups.split(","))):
            key, _, group = pair.partition("=")
            if key.strip() == purpose:
                return int(group)
        return None

    def secret_keys(self) -> list[str]:
        """Signing keys, newest first; the embedded default generates and keeps one under var/."""
        if self.secret_key is not None:
            keys = [k.strip() for k in self.secret_key.get_secret_value().split(",") if k.strip()]
            if keys:
                return keys
        if not self.is_embedded:
            raise ConfigError("MAILER_SECRET_KEY: required outside the embedded default")
        return [_embedded_secret()]


def _embedded_secret() -> str:
    path = DEFAULT_VAR_DIR / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _variable_name(loc: tuple[object, ...]) -> str:
    field = str(loc[0]) if loc else "?"
    if field == "sendgrid_api_key":
        return "SENDGRID_API_KEY"
    return f"MAILER_{field.upper()}"


def load_settings() -> Settings:
    """Read the environment; raise ConfigError naming the first bad variable."""
    try:
        settings = Settings()
    except ValidationError as error:
        first = error.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{_variable_name(first['loc'])}: {message}") from None
    _check_coherence(settings)
    return settings


def _check_coherence(settings: Settings) -> None:
    if 0 < settings.campaign_rate_per_hour < settings.campaign_batch_size:
        raise ConfigError(
            "MAILER_CAMPAIGN_RATE_PER_HOUR: must be 0 (no hourly limit) or at least "
            f"MAILER_CAMPAIGN_BATCH_SIZE ({settings.campaign_batch_size}): a batch takes its hour at once"
        )
    if settings.email_backend == "sendgrid" and settings.sendgrid_api_key is None:
        raise ConfigError("SENDGRID_API_KEY: required when MAILER_EMAIL_BACKEND=sendgrid")
    if not settings.is_embedded:
        settings.secret_keys()
        if not settings.base_url.startswith("https://"):
            # RFC 8058: the one-click link must be https; mail clients ignore it otherwise.
            raise ConfigError("MAILER_BASE_URL: must be an https:// URL outside the embedded default")
    if settings.sendgrid_webhook_public_key is not None:
        # Imported here: only processes given a key load the cryptography library.
        from mailer.webhook_keys import load_public_key

        try:
            load_public_key(settings.sendgrid_webhook_public_key)
        except ValueError as error:
            raise ConfigError(f"MAILER_SENDGRID_WEBHOOK_PUBLIC_KEY: {error}") from None
    for pair in filter(None, (p.strip() for p in settings.sendgrid_asm_groups.split(","))):
        _, sep, group = pair.partition("=")
        if not sep or not group.strip().isdigit():
            raise ConfigError(
                "MAILER_SENDGRID_ASM_GROUPS: expected purpose=group_id pairs, got " + repr(pair)
            )


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the demo change the environment)."""
    get_settings.cache_clear()
