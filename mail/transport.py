"""The email transport: Django's email framework with the project's backend (ADR 0008).

A batch (one project, claimed and policy-checked by ``campaigns.channel_sending``) is sent over
one connection: the mailbox stores it in one INSERT; SMTP and the ESPs send message by message
so that each gets its own answer. What an answer means (``campaigns.channels.Delivery``):

- SMTP: 2xx -> sent; a 5xx refusal (recipient, sender, data) -> failed with the code; a 4xx ->
  retry. A lost connection or a timeout before DATA -> retry (the server never accepted the
  message); during DATA -> unknown (it may have). After a lost connection the rest of the batch
  is not attempted (retry).
- ESPs (anymail): accepted -> sent with the ESP's message id; rejected recipients -> failed; API
  429 and 5xx, a connection error -> retry; other 4xx -> failed with the status; a read timeout
  -> unknown.
- Settings that cannot make a connection (no host, a missing key) or a server that cannot be
  reached: every message retries, with the reason, until the sender's attempt limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import smtplib
import uuid
from collections.abc import Sequence
from email.headerregistry import Address
from email.utils import parseaddr

import requests
from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.html import escape
from django.utils.translation import gettext as _

from campaigns.channels import Delivery
from campaigns.models import Message
from controlpanel.models import Project

from . import tracking
from .backends import ConnectionProblem, MailboxBackend, SmtpBackend, connection_for
from .models import EmailSettings
from .text import html_to_text

ERROR_LENGTH = 300
logger = logging.getLogger(__name__)


def settings_for(project: Project) -> EmailSettings:
    """The project's settings; unsaved defaults (the mailbox) before anyone saved them."""
    found = EmailSettings.objects.for_project(project).select_related("project").first()
    return found or EmailSettings(project=project)


def sender(email_settings: EmailSettings) -> str:
    """ "Name <address>" from the settings, DEFAULT_FROM_EMAIL's parts where they are empty."""
    default_name, default_address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    address = email_settings.from_email or default_address
    name = email_settings.from_name or default_name
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=name, username=local, domain=domain)) if name else address


def _message_id(email_settings: EmailSettings, key: uuid.UUID) -> str:
    domain = parseaddr(sender(email_settings))[1].rpartition("@")[2] or "localhost"
    return f"<{key}@{domain}>"


def with_preheader(html: str, preheader: str) -> str:
    """``html`` with the preheader as the first, hidden text of the body (the inbox shows it
    after the subject)."""
    if not preheader:
        return html
    span = (
        '<span style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;'
        f'opacity:0;overflow:hidden;mso-hide:all">{escape(preheader)}</span>'
    )
    start = html.lower().find("<body")
    end = html.find(">", start) if start >= 0 else -1
    if end < 0:
        return span + html
    return html[: end + 1] + span + html[end + 1 :]


def compose(
    email_settings: EmailSettings, *, to: str, content: dict, message: Message | None = None
) -> EmailMultiAlternatives:
    """The email of ``content`` ({subject, preheader, html, text}) to ``to``. With ``message`` (an
    outbox row): its Message-ID, tracking (pixel, click redirects) and unsubscribe headers;
    without (a test to a typed address): neither."""
    html = with_preheader(content.get("html") or "", content.get("preheader") or "")
    text = content.get("text") or html_to_text(content.get("html") or "")
    headers = {"Message-ID": _message_id(email_settings, message.public_id if message else uuid.uuid4())}
    if message is not None:
        html = tracking.instrument(html, message) if html else html
        headers.update(tracking.headers(message))
    email = EmailMultiAlternatives(
        subject=content.get("subject") or "",
        body=text,
        from_email=sender(email_settings),
        to=[to],
        reply_to=[email_settings.reply_to] if email_settings.reply_to else None,
        headers=headers,
    )
    if html:
        email.attach_alternative(html, "text/html")
    if message is not None:
        email.outbox_message_id = message.pk  # the mailbox links its row to the outbox
    return email


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())[:ERROR_LENGTH]


def _unexpected(exc: BaseException) -> str:
    return _("Sending failed unexpectedly: %(error)s") % {"error": _text(exc)}


def _by_smtp_code(code: int, text: object, what: str) -> Delivery:
    words = f"{what}: {code} {_text(text)}"  # what: translated by the caller
    if 400 <= code < 500:
        return Delivery(ok=False, retry=True, error_code=str(code), error=words)
    return Delivery(ok=False, error_code=str(code), error=words)


def _send_smtp(backend: SmtpBackend, email: EmailMultiAlternatives) -> Delivery:
    connection = backend.connection
    connection.data_started = False
    try:
        backend.send_messages([email])
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        return _by_smtp_code(code, text, _("The server refused the recipient"))
    except smtplib.SMTPSenderRefused as exc:
        return _by_smtp_code(exc.smtp_code, exc.smtp_error, _("The server refused the sender address"))
    except smtplib.SMTPResponseException as exc:
        return _by_smtp_code(exc.smtp_code, exc.smtp_error, _("The server refused the message"))
    except ValueError as exc:  # an address Django cannot encode (prep_address)
        return Delivery(ok=False, error_code="invalid_address", error=_text(exc))
    except (smtplib.SMTPException, OSError) as exc:
        if connection.data_started:
            return Delivery(
                ok=False,
                unknown=True,
                error=_("The connection failed while sending the message: %(error)s") % {"error": _text(exc)},
            )
        return Delivery(
            ok=False,
            retry=True,
            error=_("The connection to the server failed: %(error)s") % {"error": _text(exc)},
        )
    except Exception as exc:
        # Earlier messages of the batch went out: raising would have the sender queue them again.
        logger.exception("Sending email %s failed unexpectedly", email.extra_headers["Message-ID"])
        if connection.data_started:
            return Delivery(ok=False, unknown=True, error=_unexpected(exc))
        return Delivery(ok=False, error_code="error", error=_unexpected(exc))
    return Delivery(ok=True, provider_message_id=email.extra_headers["Message-ID"])


def _send_esp(backend: BaseEmailBackend, email: EmailMultiAlternatives) -> Delivery:
    esp = getattr(backend, "esp_name", None) or _("The provider")
    try:
        backend.send_messages([email])
    except AnymailRecipientsRefused as exc:
        return Delivery(
            ok=False,
            error_code="rejected",
            error=_("%(provider)s rejected the recipient: %(error)s")
            % {"provider": esp, "error": _text(exc)},
        )
    except AnymailAPIError as exc:
        if isinstance(exc, requests.ConnectionError):
            return Delivery(
                ok=False,
                retry=True,
                error=_("%(provider)s could not be reached: %(error)s")
                % {"provider": esp, "error": _text(exc)},
            )
        if isinstance(exc, requests.Timeout):
            return Delivery(
                ok=False,
                unknown=True,
                error=_("%(provider)s did not answer in time: %(error)s")
                % {"provider": esp, "error": _text(exc)},
            )
        status = exc.status_code
        if status is None or status == 429 or status >= 500:
            return Delivery(ok=False, retry=True, error_code=str(status or ""), error=_text(exc))
        return Delivery(ok=False, error_code=str(status), error=_text(exc))
    except AnymailError as exc:  # invalid address, a feature the ESP lacks
        return Delivery(ok=False, error_code="invalid", error=_text(exc))
    except Exception as exc:
        # The request may have reached the ESP, and earlier messages of the batch did: never
        # raise (the sender would queue them all again), never resend this one blindly.
        logger.exception("Sending email %s failed unexpectedly", email.extra_headers["Message-ID"])
        return Delivery(ok=False, unknown=True, error=_unexpected(exc))
    status = email.anymail_status
    return Delivery(ok=True, provider_message_id=str(status.message_id or ""))


def _lost(delivery: Delivery) -> bool:
    return delivery.unknown or (delivery.retry and not delivery.error_code)


def send_batch(backend: BaseEmailBackend, emails: Sequence[EmailMultiAlternatives]) -> list[Delivery]:
    """Send ``emails`` over one connection of ``backend``: one Delivery each, in order."""
    if isinstance(backend, MailboxBackend):
        backend.send_messages(list(emails))
        return [Delivery(ok=True, provider_message_id=e.extra_headers["Message-ID"]) for e in emails]
    try:
        backend.open()
    except (smtplib.SMTPException, OSError, requests.RequestException) as exc:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            backend.close()  # a half-open connection (refused login) is not left behind
        reason = _("Could not connect to the email server: %(error)s") % {"error": _text(exc)}
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            reason = _("The email server refused the user name or password: %(error)s") % {
                "error": _text(exc)
            }
        return [Delivery(ok=False, retry=True, error=reason) for _ in emails]
    send_one = _send_smtp if isinstance(backend, SmtpBackend) else _send_esp
    deliveries: list[Delivery] = []
    try:
        for email in emails:
            delivery = send_one(backend, email)
            deliveries.append(delivery)
            if isinstance(backend, SmtpBackend) and _lost(delivery):
                break  # the connection is gone: the rest was never attempted
    finally:
        # Closing a broken connection may fail: the answers above stand.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            backend.close()
    skipped = Delivery(ok=False, retry=True, error=_("Not attempted: the connection to the server was lost."))
    return deliveries + [skipped] * (len(emails) - len(deliveries))


# The provider settings that are credentials (the others, a domain or a region, are not secret).
SECRET_PROVIDER_KEYS = {
    "api_key",
    "server_token",
    "access_key_id",
    "secret_access_key",
    "webhook_signing_key",
    "tracking_webhook_verification_key",
}


def _secrets(email_settings: EmailSettings) -> list[str]:
    try:
        provider = json.loads(email_settings.provider_settings or "{}")
    except (ValueError, RecursionError):
        provider = {}
    values = [email_settings.smtp_password]
    if isinstance(provider, dict):
        values += [str(v) for k, v in provider.items() if k in SECRET_PROVIDER_KEYS]
    return [v for v in values if len(v) >= 4]


def without_secrets(email_settings: EmailSettings, deliveries: list[Delivery]) -> list[Delivery]:
    """``deliveries`` with the settings' password and keys cut out of their error words: those
    words go to the outbox row, the audit and the page, and a server or an ESP may echo what it
    was given."""
    secrets = _secrets(email_settings)
    if not secrets:
        return deliveries
    cleaned = []
    for delivery in deliveries:
        error = delivery.error
        for secret in secrets:
            error = error.replace(secret, "•••")
        cleaned.append(delivery if error == delivery.error else dataclasses.replace(delivery, error=error))
    return cleaned


def deliver_now(email_settings: EmailSettings, email: EmailMultiAlternatives) -> Delivery:
    """Send one email at once (the settings' and a template's test send); never raises."""
    try:
        backend = connection_for(email_settings)
    except ConnectionProblem as exc:
        return Delivery(ok=False, error=str(exc))
    return without_secrets(email_settings, send_batch(backend, [email]))[0]


class EmailTransport:
    channel = "email"

    def send(self, project: Project, messages: Sequence[Message]) -> list[Delivery]:
        email_settings = settings_for(project)
        try:
            backend = connection_for(email_settings)
        except ConnectionProblem as exc:
            return [Delivery(ok=False, retry=True, error=str(exc)) for _ in messages]
        emails = [
            compose(email_settings, to=m.subscriber.email, content=m.content or {}, message=m)
            for m in messages
        ]
        return without_secrets(email_settings, send_batch(backend, emails))
