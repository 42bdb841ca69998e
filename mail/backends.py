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

import requests
from anymail.backends.amazon_ses import EmailBackend as AnymailSesBackend
from anymail.exceptions import AnymailAPIError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
)
from django.core.mail import EmailMessage, InvalidMailer
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as DjangoSmtpBackend
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from controlpanel.models import Project

from .models import EmailBackend, EmailSettings, MailboxMessage, SmtpSecurity

SMTP_TIMEOUT = 20  # seconds per SMTP command: a dead server must not hold a sender for minutes
ESP_TIMEOUT = 20  # seconds per ESP API request

ANYMAIL_BACKENDS = {
    EmailBackend.AMAZON_SES: "mail.backends.AmazonSesBackend",
    EmailBackend.MAILGUN: "anymail.backends.mailgun.EmailBackend",
    EmailBackend.POSTMARK: "anymail.backends.postmark.EmailBackend",
    EmailBackend.SENDGRID: "anymail.backends.sendgrid.EmailBackend",
    EmailBackend.BREVO: "anymail.backends.brevo.EmailBackend",
}
# The keys each ESP's provider settings may have (anymail's OPTIONS), and the required ones.
PROVIDER_KEYS: dict[str, tuple[set[str], set[str]]] = {
    EmailBackend.AMAZON_SES: (
        {"region_name", "access_key_id", "secret_access_key", "configuration_set_name", "sns_topic_arn"},
        set(),
    ),
    EmailBackend.MAILGUN: ({"api_key", "sender_domain", "region"}, {"api_key"}),
    EmailBackend.POSTMARK: ({"server_token", "message_stream"}, {"server_token"}),
    EmailBackend.SENDGRID: ({"api_key"}, {"api_key"}),
    EmailBackend.BREVO: ({"api_key"}, {"api_key"}),
}
MAILGUN_API_URLS = {"us": "https://api.mailgun.net/v3", "eu": "https://api.eu.mailgun.net/v3"}
# An AWS region goes into the API's host name (email.<region>.amazonaws.com): only a region's shape.
AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")
SNS_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z]{2}(-[a-z]+)+-[0-9]{1,2}:[0-9]{12}:[A-Za-z0-9_-]{1,256}")


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
        _check_ses(data)
        session = {
            "region_name": data.get("region_name"),
            "aws_access_key_id": data.get("access_key_id"),
            "aws_secret_access_key": data.get("secret_access_key"),
        }
        options["session_params"] = {k: v for k, v in session.items() if v}
        if data.get("configuration_set_name"):
            options["configuration_set_name"] = data["configuration_set_name"]
        # One attempt per send, each with our timeout: boto3 would otherwise resend on a read
        # timeout (a second email when the first was accepted) and wait minutes on a dead network.
        # The outbox retries what is worth retrying.
        options["client_params"] = {
            "config": {
                "connect_timeout": ESP_TIMEOUT,
                "read_timeout": ESP_TIMEOUT,
                "retries": {"mode": "standard", "total_max_attempts": 1},
            }
        }
        return options
    options.update({k: v for k, v in data.items() if k != "region"})
    if backend == EmailBackend.MAILGUN:
        region = data.get("region", "us")
        if region not in MAILGUN_API_URLS:
            raise ConnectionProblem(_('Mailgun\'s region is "us" or "eu".'))
        options["api_url"] = MAILGUN_API_URLS[region]
    options["timeout"] = ESP_TIMEOUT
    return options


def _check_ses(data: dict[str, str]) -> None:
    region = data.get("region_name") or ""
    if region and not AWS_REGION.fullmatch(region):
        raise ConnectionProblem(
            _("Amazon SES's region_name is an AWS region such as eu-west-1, not %(region)s.")
            % {"region": repr(region)}
        )
    if bool(data.get("access_key_id")) != bool(data.get("secret_access_key")):
        raise ConnectionProblem(
            _(
                "Amazon SES needs access_key_id and secret_access_key together "
                "(or neither: then the server's own AWS credentials are used)."
            )
        )
    arn = data.get("sns_topic_arn") or ""
    if arn and not SNS_TOPIC_ARN.fullmatch(arn):
        raise ConnectionProblem(
            _(
                "Amazon SES's sns_topic_arn is an SNS topic's ARN, "
                "e.g. arn:aws:sns:eu-west-1:123456789012:email-events."
            )
        )


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


# --- Amazon SES (anymail's SES v2 backend over boto3) -------------------------------------------

# Error codes of the SES v2 API (and the AWS query protocol's for credentials) in plain words.
SES_CREDENTIALS = {
    "UnrecognizedClientException": gettext_lazy(
        "Amazon SES does not know the access key ID: check access_key_id."
    ),
    "InvalidClientTokenId": gettext_lazy("Amazon SES does not know the access key ID: check access_key_id."),
    "SignatureDoesNotMatch": gettext_lazy(
        "Amazon SES refused the secret access key: check secret_access_key."
    ),
    "IncompleteSignature": gettext_lazy("Amazon SES refused the secret access key: check secret_access_key."),
    "ExpiredToken": gettext_lazy("The AWS credentials have expired."),
    "ExpiredTokenException": gettext_lazy("The AWS credentials have expired."),
    "AccessDenied": gettext_lazy(
        "The AWS access key may not send with Amazon SES: "
        "its IAM policy needs ses:SendEmail and ses:SendRawEmail."
    ),
    "AccessDeniedException": gettext_lazy(
        "The AWS access key may not send with Amazon SES: "
        "its IAM policy needs ses:SendEmail and ses:SendRawEmail."
    ),
}
# Sending faster than the account's rate or past its daily quota: later may work.
SES_THROTTLED = {"TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException"}
SES_REASONS = {
    "MessageRejected": gettext_lazy("Amazon SES rejected the message"),
    "MailFromDomainNotVerifiedException": gettext_lazy("Amazon SES has not verified the MAIL FROM domain"),
    "AccountSuspendedException": gettext_lazy("Sending is suspended for this Amazon SES account"),
    "SendingPausedException": gettext_lazy(
        "Sending is paused for this Amazon SES account or configuration set"
    ),
    "NotFoundException": gettext_lazy("Amazon SES did not find it (is configuration_set_name right?)"),
    "BadRequestException": gettext_lazy("Amazon SES refused the request"),
}


def _one_line(value: object) -> str:
    return " ".join(str(value or "").split())[:300]


class SesAPIError(AnymailAPIError):
    """An SES answer in plain words; ``status_code`` is what the transport classifies by (429 and 5xx:
    retry; another 4xx: failed). ``ses_code`` is SES's own error code."""

    def __init__(self, words: str, *, status_code: int | None, ses_code: str = "", **kwargs: Any) -> None:
        super().__init__(words, status_code=status_code, **kwargs)
        self.ses_code = ses_code

    def __str__(self) -> str:  # anymail's would read a requests.Response boto3 does not have
        return str(self.args[0])


class SesUnreachable(SesAPIError, requests.ConnectionError):
    """SES was never reached (no connection): the message was not sent, sending again is safe."""


class SesNoAnswer(SesAPIError, requests.ReadTimeout):
    """The request went out and no answer came: SES may have sent it (unknown, never resent blindly)."""


def ses_error(exc: Exception) -> SesAPIError:
    """A boto3 error of a send as the transport's kinds of failure, in plain words."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "")
        text = _one_line(error.get("Message"))
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if code in SES_THROTTLED:
            return SesAPIError(
                _("Amazon SES is limiting this account's sending (%(code)s): %(error)s")
                % {"code": code, "error": text},
                status_code=429,
                ses_code=code,
            )
        if code in SES_CREDENTIALS:
            words = f"{SES_CREDENTIALS[code]} ({code}: {text})"
        else:
            words = f"{SES_REASONS.get(code, _('Amazon SES refused the message'))} ({code}): {text}"
        return SesAPIError(words, status_code=status if isinstance(status, int) else 400, ses_code=code)
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)):
        # The transport says "Amazon SES could not be reached" / "did not answer in time" itself.
        return SesUnreachable(_one_line(exc), status_code=None)
    if isinstance(exc, (ReadTimeoutError, ConnectionClosedError)):
        return SesNoAnswer(_one_line(exc), status_code=None)
    if isinstance(exc, NoCredentialsError):
        return SesAPIError(
            _("No AWS credentials: enter access_key_id and secret_access_key in the provider settings."),
            status_code=None,
        )
    # Another botocore error (a bad parameter before sending, an unexpected answer): not sent.
    return SesAPIError(f"Amazon SES: {_one_line(exc)}", status_code=400, ses_code=type(exc).__name__)


class ConnectionOpenProblem(OSError):
    """The SES client could not be made (a region boto3 does not know, no region at all)."""


class AmazonSesBackend(AnymailSesBackend):
    """anymail's SES v2 backend whose failures the transport can classify: throttling -> 429
    (retry), SES's refusals -> their 4xx (failed), never reached -> connection error (retry), no
    answer -> timeout (unknown); each with plain words."""

    def open(self) -> bool:
        try:
            return bool(super().open())
        except BotoCoreError as exc:
            raise ConnectionOpenProblem(f"Amazon SES: {_one_line(exc)}") from None

    def post_to_esp(self, payload: Any, message: Any) -> Any:
        try:
            return super().post_to_esp(payload, message)
        except AnymailAPIError as exc:
            cause = exc.__cause__
            if isinstance(cause, (BotoCoreError, ClientError)):
                raise ses_error(cause) from cause
            raise
