"""Django email backends for a project's ``EmailSettings``: one connection per batch (ADR 0008).

Django 6.1 builds backends from ``MAILERS`` by calling ``BackendClass(alias=..., **OPTIONS)``;
a project's settings live in the database, not in ``MAILERS``, so ``connection_for`` does the
same call with the project's options (an alias of its own: with an alias, Django and anymail
15.2 refuse unknown options instead of silently reading global ``EMAIL_*`` settings).
"""

from __future__ import annotations

import json
import re
import smtplib
from typing import Any

from django.core.mail import EmailMessage, InvalidMailer
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as DjangoSmtpBackend
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from controlpanel.models import Project

from .models import EmailBackend, EmailSettings, MailboxMessage, SmtpSecurity

SMTP_TIMEOUT = 20  # seconds per SMTP command: a dead server must not hold a sender for minutes
ESP_TIMEOUT = 20  # seconds per ESP API request

ANYMAIL_BACKENDS = {
    EmailBackend.AMAZON_SES: "anymail.backends.amazon_ses.EmailBackend",
    EmailBackend.MAILGUN: "anymail.backends.mailgun.EmailBackend",
    EmailBackend.POSTMARK: "anymail.backends.postmark.EmailBackend",
    EmailBackend.SENDGRID: "anymail.backends.sendgrid.EmailBackend",
    EmailBackend.BREVO: "anymail.backends.brevo.EmailBackend",
}
# The keys each ESP's provider settings may have (anymail's OPTIONS), and the required ones.
PROVIDER_KEYS: dict[str, tuple[set[str], set[str]]] = {
    EmailBackend.AMAZON_SES: (
        {"region_name", "access_key_id", "secret_access_key", "configuration_set_name"},
        set(),
    ),
    EmailBackend.MAILGUN: ({"api_key", "sender_domain", "region"}, {"api_key"}),
    EmailBackend.POSTMARK: ({"server_token", "message_stream"}, {"server_token"}),
    EmailBackend.SENDGRID: ({"api_key"}, {"api_key"}),
    EmailBackend.BREVO: ({"api_key"}, {"api_key"}),
}
MAILGUN_API_URLS = {"us": "https://api.mailgun.net/v3", "eu": "https://api.eu.mailgun.net/v3"}


# Settings that end up in an email header, an SMTP command or an ESP's HTTP header: a line break
# (or another control character) would start a header or a command of its own.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_one_line(value: str) -> bool:
    """No control character, and text UTF-8 can carry (no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not _CONTROL.search(value)


class ConnectionProblem(Exception):
    """The project's settings cannot make a connection; ``str()`` says why in plain words."""


# --- the mailbox (embedded mode) -------------------------------------------------------------


class MailboxBackend(BaseEmailBackend):
    """Stores every email as a ``MailboxMessage`` of ``project`` (one INSERT per batch); sends nothing.

    An email built by the transport carries ``outbox_message_id`` (the ``Message`` it sends) and a
    test send ``mailbox_test``; both are attributes of the Django message, never headers.
    """

    def __init__(self, *, project: Project, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project = project

    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        rows = [_mailbox_row(self.project, email) for email in email_messages]
        MailboxMessage.objects.bulk_create(rows)
        return len(rows)


def _mailbox_row(project: Project, email: EmailMessage) -> MailboxMessage:
    html = next((a.content for a in getattr(email, "alternatives", []) if a.mimetype == "text/html"), "")
    mime = email.message()
    return MailboxMessage(
        project=project,
        message_id=getattr(email, "outbox_message_id", None),
        from_email=email.from_email[:400],
        to=", ".join(email.to)[:400],
        subject=email.subject[:998],
        html=html,
        text=email.body,
        headers={name: str(value) for name, value in mime.items() if name.lower() != "content-type"},
        test=bool(getattr(email, "mailbox_test", False)),
    )


# --- SMTP ------------------------------------------------------------------------------------


class _PhaseMixin:
    # Set when DATA was issued for the current message: a failure before it was never accepted
    # (safe to retry), one during it may have been (unknown, never resent blindly).
    data_started = False

    def data(self, msg: Any) -> Any:
        self.data_started = True
        return super().data(msg)  # type: ignore[misc]


class _SMTP(_PhaseMixin, smtplib.SMTP):
    pass


class _SMTP_SSL(_PhaseMixin, smtplib.SMTP_SSL):
    pass


class SmtpBackend(DjangoSmtpBackend):
    """Django's SMTP backend whose connection tells whether DATA had started when a send failed."""

    @property
    def connection_class(self) -> type[smtplib.SMTP]:
        return _SMTP_SSL if self.use_ssl else _SMTP


# --- building a connection ---------------------------------------------------------------------


def provider_options(backend: str, raw: str) -> dict[str, Any]:
    """The anymail OPTIONS of ``backend`` from the stored provider settings (JSON); ConnectionProblem
    naming the key when they do not fit the ESP."""
    try:
        data = json.loads(raw or "{}")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
        raise ConnectionProblem(_("The provider settings are not valid JSON.")) from None
    if not isinstance(data, dict):
        raise ConnectionProblem(_('The provider settings are a JSON object, e.g. {"api_key": "..."}.'))
    allowed, required = PROVIDER_KEYS[backend]
    label = EmailBackend(backend).label
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConnectionProblem(
            _("%(provider)s has no setting %(unknown)s; its settings are %(allowed)s.")
            % {"provider": label, "unknown": ", ".join(unknown), "allowed": ", ".join(sorted(allowed))}
        )
    missing = sorted(k for k in required if not str(data.get(k) or "").strip())
    if missing:
        raise ConnectionProblem(
            _("%(provider)s needs %(keys)s in the provider settings.")
            % {"provider": label, "keys": ", ".join(missing)}
        )
    if any(not isinstance(v, str) for v in data.values()):
        raise ConnectionProblem(_("Every provider setting is text."))
    broken = sorted(k for k, v in data.items() if not is_one_line(v))
    if broken:
        raise ConnectionProblem(
            _("%(field)s may not contain line breaks or control characters.") % {"field": ", ".join(broken)}
        )
    options: dict[str, Any] = {}
    if backend == EmailBackend.AMAZON_SES:
        session = {
            "region_name": data.get("region_name"),
            "aws_access_key_id": data.get("access_key_id"),
            "aws_secret_access_key": data.get("secret_access_key"),
        }
        options["session_params"] = {k: v for k, v in session.items() if v}
        if data.get("configuration_set_name"):
            options["configuration_set_name"] = data["configuration_set_name"]
        return options
    options.update({k: v for k, v in data.items() if k != "region"})
    if backend == EmailBackend.MAILGUN:
        region = data.get("region", "us")
        if region not in MAILGUN_API_URLS:
            raise ConnectionProblem(_('Mailgun\'s region is "us" or "eu".'))
        options["api_url"] = MAILGUN_API_URLS[region]
    options["timeout"] = ESP_TIMEOUT
    return options


def connection_for(email_settings: EmailSettings) -> BaseEmailBackend:
    """A backend instance for the project's settings, not yet opened. ConnectionProblem when the
    settings are incomplete or the ESP's library is missing."""
    project = email_settings.project
    alias = f"project:{project.slug}"
    backend = email_settings.backend
    if backend == EmailBackend.MAILBOX:
        return MailboxBackend(project=project, alias=alias)
    if backend == EmailBackend.SMTP:
        if not email_settings.smtp_host:
            raise ConnectionProblem(_("No SMTP server is set: enter its host name in Email settings."))
        return SmtpBackend(
            alias=alias,
            host=email_settings.smtp_host,
            port=email_settings.smtp_port,
            username=email_settings.smtp_username or None,
            password=email_settings.smtp_password or None,
            use_tls=email_settings.smtp_security == SmtpSecurity.STARTTLS,
            use_ssl=email_settings.smtp_security == SmtpSecurity.SSL,
            timeout=SMTP_TIMEOUT,
        )
    options = provider_options(backend, email_settings.provider_settings)
    try:
        backend_class = import_string(ANYMAIL_BACKENDS[backend])
        return backend_class(alias=alias, **options)
    except ImportError:  # anymail's AnymailImproperlyInstalled (boto3 for SES)
        raise ConnectionProblem(
            _("%(provider)s needs a library that is not installed: %(command)s.")
            % {
                "provider": EmailBackend(backend).label,
                "command": f'pip install "django-anymail[{backend.replace("_", "-")}]"',
            }
        ) from None
    except InvalidMailer as exc:
        raise ConnectionProblem(
            _("The %(provider)s settings do not fit: %(error)s")
            % {"provider": EmailBackend(backend).label, "error": exc}
        ) from None
