"""The embedded backend: each message written as an RFC 5322 ``.eml`` file, as SendGrid would get it."""

from __future__ import annotations

import json
import os
import uuid
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import formatdate, make_msgid
from pathlib import Path

from mailer.config import Settings, get_settings
from mailer.message import Envelope, OutgoingMessage, substitute
from mailer.providers.backend import Backend, ProviderLimits

#: Header carrying what SendGrid would get as custom_args (ids only), for inspection.
CUSTOM_ARGS_HEADER = "X-Mailer-Custom-Args"
#: Header saying whether SendGrid would measure opens and clicks of this mail, for inspection.
TRACKING_HEADER = "X-Mailer-Tracking"

#: RFC 2369 headers hold <URL> lists: never RFC 2047-encoded (mail clients then find no URL).
URL_LIST_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post", "list-help", "list-subscribe"})


class _MailPolicy(EmailPolicy):
    """The default policy, except that URL-list headers fold only between their <URL>s.

    The default folding turns a header with a word longer than 78 characters (a long
    unsubscribe link) into RFC 2047 encoded-words, which no mail client reads as a URL; RFC 5322
    allows such a line up to 998 characters instead.
    """

    def fold(self, name: str, value: str) -> str:
        if name.lower() in URL_LIST_HEADERS:
            return self._fold_url_list(name, value)
        if self._needs_encoded_subject(name, value):
            return self._fold_encoded(name, value)
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in URL_LIST_HEADERS:
            return self._fold_url_list(name, value).encode("ascii")
        if self._needs_encoded_subject(name, value):
            return self._fold_encoded(name, value).encode("ascii")
        return super().fold_binary(name, value)

    def _needs_encoded_subject(self, name: str, value: str) -> bool:
        # A long ASCII subject whose first word does not fit the first line is folded by the
        # default folder before that word: read back with a leading space.
        text = str(value)
        too_long = self.max_line_length is not None and len(name) + 2 + len(text) > self.max_line_length
        return name.lower() == "subject" and (not text.isascii() or too_long)

    def _fold_encoded(self, name: str, value: str) -> str:
        # The default folder drops the space between two encoded-words on some long French
        # subjects ("d’offres très" read back as "d’offrestrès"); the classic Header encoder
        # keeps every space inside the encoded text.
        encoded = Header(str(value), "utf-8", header_name=name).encode(linesep=self.linesep)
        return f"{name}: {encoded}{self.linesep}"

    def _fold_url_list(self, name: str, value: str) -> str:
        items = [item.strip() for item in str(value).split(",")]
        return f"{name}: " + f",{self.linesep} ".join(items) + self.linesep


MAIL_POLICY = _MailPolicy()


class OutboxBackend(Backend):
    """Writes ``<outbox>/delivery-<id>.eml`` for every envelope; never talks to the network."""

    name = "outbox"
    label = "the outbox"
    #: SendGrid's, though a file has no such limits: the embedded default then composes every
    #: message as production does, and each .eml is what a SendGrid recipient would get.
    limits = ProviderLimits(
        max_recipients=1000,
        substitutes_per_recipient=True,
        max_substitution_bytes=10_000,
        max_custom_args_bytes=10_000,
    )

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxBackend:
        return cls(settings.outbox_dir)

    def send(self, message: OutgoingMessage) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        provider_id = f"outbox-{uuid.uuid4().hex}"
        for envelope in message.envelopes:
            self._write(self.path_for(envelope.delivery_id), build_eml(message, envelope, provider_id))
        return provider_id

    def path_for(self, delivery_id: int) -> Path:
        """Where the .eml of a delivery is written."""
        return self.directory / f"delivery-{delivery_id}.eml"

    @staticmethod
    def _write(path: Path, email: EmailMessage) -> None:
        # Write then rename: a reader never sees half a file.
        temporary = path.with_suffix(".eml.tmp")
        temporary.write_bytes(email.as_bytes())
        os.replace(temporary, path)


def build_eml(message: OutgoingMessage, envelope: Envelope, provider_id: str) -> EmailMessage:
    """The RFC 5322 message one envelope receives."""
    settings = get_settings()
    email = EmailMessage(policy=MAIL_POLICY)
    email["From"] = Address(settings.from_name, addr_spec=settings.from_email)
    email["To"] = Address(envelope.to_name or "", addr_spec=envelope.to_address)
    email["Subject"] = substitute(message.subject, envelope.substitutions)
    email["Date"] = formatdate(localtime=False, usegmt=True)
    email["Message-ID"] = make_msgid(idstring=provider_id, domain=settings.from_email.split("@")[1])
    for name, value in {**message.headers, **envelope.headers}.items():
        email[name] = value
    email[CUSTOM_ARGS_HEADER] = json.dumps({"delivery_id": str(envelope.delivery_id)}, separators=(",", ":"))
    email[TRACKING_HEADER] = "opens-and-clicks" if message.tracking else "off"
    email.set_content(substitute(message.text, envelope.substitutions))
    email.add_alternative(substitute(message.html, envelope.substitutions), subtype="html")
    return email
