"""Email providers' tracking webhooks (django-anymail), one URL per project and ESP.

``/webhooks/email/<project public id>/<esp>/tracking/``, guarded by HTTP basic auth with the
project's ``EmailSettings.webhook_secret`` ("user:password", put in the URL given to the ESP).
anymail's own webhook secret is one global setting, so its views are not routed directly: this
view checks the project's secret first, then lets the ESP's anymail view validate (its signature
checks, with the project's keys) and parse the payload into normalized events, and applies them
to the project's messages here rather than through anymail's global ``tracking`` signal, which
would not know the project.

Amazon SES publishes its events (a configuration set's event destination) to an SNS topic, and SNS
posts them here. Besides the project's secret, each SNS message must carry a valid SNS signature
(checked with the signing certificate from an ``sns.<region>.amazonaws.com`` URL; anymail does not
check it), and with ``sns_topic_arn`` in the provider settings come from that topic. A subscription
is confirmed automatically only for that topic (anymail would confirm any topic).

Applying goes through the one write path, ``campaigns.channel_events.record`` (dedup keys: a
replayed webhook records nothing new), the one address rule (``subscribers.email_status``) and
the consent ledger (``change_consent``, which ignores a state the subscriber already has).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from anymail.exceptions import AnymailConfigurationError, AnymailError, AnymailWebhookValidationFailure
from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from anymail.utils import get_request_basic_auth
from anymail.webhooks.amazon_ses import AmazonSESTrackingWebhookView
from anymail.webhooks.base import AnymailCoreWebhookView
from anymail.webhooks.brevo import BrevoTrackingWebhookView
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from botocore.exceptions import BotoCoreError, ClientError
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from campaigns import channel_events
from campaigns.models import Channel, Message
from controlpanel.models import Project
from controlpanel.services import Actor
from controlpanel.views import public_base_url
from subscribers.email_status import mark_undeliverable
from subscribers.models import ConsentSource

from . import tracking
from .backends import ConnectionProblem, provider_options
from .models import EmailBackend, EmailSettings

ESP_VIEWS: dict[str, type[AnymailCoreWebhookView]] = {
    EmailBackend.AMAZON_SES: AmazonSESTrackingWebhookView,
    EmailBackend.MAILGUN: MailgunTrackingWebhookView,
    EmailBackend.POSTMARK: PostmarkTrackingWebhookView,
    EmailBackend.SENDGRID: SendGridTrackingWebhookView,
    EmailBackend.BREVO: BrevoTrackingWebhookView,
}
# anymail's rejections that mean the address cannot take mail (the ESP's suppression of a bounce).
HARD_REJECTIONS = {RejectReason.BOUNCED, RejectReason.INVALID}
MAX_URL = 4096  # the EmailClicked url attribute's limit
MAX_REASON = 500
# SES's Reject (a virus found, nothing sent): the message failed, the address is not to blame.
MESSAGE_REJECTED = "message_rejected"


@dataclass(frozen=True)
class WebhookEndpoint:
    esp: str
    label: str
    url: str  # with the basic-auth credentials in it, as the ESP's webhook form wants it


def ensure_webhook_secret(email_settings: EmailSettings) -> str:
    """The project's webhook secret, made on first use ("user:password", URL-safe)."""
    if not email_settings.webhook_secret:
        secret = f"{secrets.token_urlsafe(12)}:{secrets.token_urlsafe(24)}"
        # Conditional: two first views at once keep one secret, the one both then show.
        EmailSettings.objects.filter(pk=email_settings.pk, webhook_secret="").update(webhook_secret=secret)
        email_settings.refresh_from_db(fields=["webhook_secret"])
    return email_settings.webhook_secret


def webhook_context(request: HttpRequest, email_settings: EmailSettings) -> dict[str, object]:
    """What ``templates/mail/_webhook_urls.html`` needs: the settings and one URL per ESP."""
    user, _, password = ensure_webhook_secret(email_settings).partition(":")
    base = urlsplit(public_base_url(request))
    project_id = email_settings.project.public_id
    endpoints = [
        WebhookEndpoint(
            esp=esp,
            label=EmailBackend(esp).label,
            url=f"{base.scheme}://{user}:{password}@{base.netloc}"
            + reverse("mail_webhooks:tracking", args=[project_id, esp]),
        )
        for esp in ESP_VIEWS
    ]
    return {"email_settings": email_settings, "webhook_endpoints": endpoints}


def _provider_options(esp: str, email_settings: EmailSettings) -> dict[str, object]:
    """The ESP view's own checks, with this project's keys instead of anymail's global settings."""
    try:
        provider = json.loads(email_settings.provider_settings or "{}")
    except ValueError:
        provider = {}
    provider = provider if isinstance(provider, dict) else {}
    if esp == EmailBackend.MAILGUN:
        # Mailgun signs every webhook; anymail falls back to the API key, as Mailgun once did.
        key = provider.get("webhook_signing_key") or provider.get("api_key")
        return {"webhook_signing_key": key} if key else {}
    if esp == EmailBackend.SENDGRID:
        return {
            "tracking_webhook_verification_key": provider.get("tracking_webhook_verification_key") or None
        }
    if esp == EmailBackend.AMAZON_SES:
        # The project's AWS keys confirm the SNS subscription (in the topic's region).
        try:
            options = provider_options(esp, email_settings.provider_settings)
        except ConnectionProblem:  # settings that no longer fit: boto3's own credentials, if any
            options = {}
        return {
            "session_params": options.get("session_params", {}),
            "client_params": options.get("client_params", {}),
            "auto_confirm_sns_subscriptions": True,  # only reached for the expected topic
        }
    return {}


def _plain(status: int, text: str) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain")


@csrf_exempt
@require_http_methods(["POST", "HEAD"])
def tracking_webhook(request: HttpRequest, project_id: uuid.UUID, esp: str) -> HttpResponse:
    view_class = ESP_VIEWS.get(esp)
    if view_class is None:
        return _plain(404, "No webhook for this provider.")
    if request.method == "HEAD":
        return _plain(200, "")  # some ESPs probe the URL when it is configured, without credentials
    email_settings = (
        EmailSettings.objects.filter(project__public_id=project_id).select_related("project").first()
    )
    secret = email_settings.webhook_secret if email_settings else ""
    # One answer for an unknown project and a wrong secret: the URL is no oracle.
    if not secret or not constant_time_compare(get_request_basic_auth(request) or "", secret):
        response = _plain(401, "Missing or wrong credentials.")
        # Some HTTP clients send basic auth only after being challenged for it.
        response["WWW-Authenticate"] = 'Basic realm="email webhooks"'
        return response
    try:
        view = view_class(webhook_secret=[secret], **_provider_options(esp, email_settings))
    except AnymailConfigurationError:
        return _plain(403, "This provider's webhook needs its signing key in the project's email settings.")
    try:
        view.run_validators(request)
        if esp == EmailBackend.AMAZON_SES:
            refusal = _sns_refusal(view._parse_sns_message(request), email_settings)
            if refusal:
                return _plain(403, refusal)
        events = view.parse_events(request)
    except AnymailWebhookValidationFailure:
        return _plain(403, "Invalid signature.")
    except (ClientError, BotoCoreError) as exc:  # confirming the SNS subscription failed
        return _plain(502, f"The SNS subscription could not be confirmed: {_text(exc, MAX_REASON)}")
    # anymail's parsers assume the ESP's payload shapes (and refuse an inbound-mail payload with a
    # configuration error); anything else is the caller's error, not ours. RecursionError: JSON
    # nested deeper than the decoder goes; OverflowError, OSError: a Unix timestamp past what the
    # platform's time_t holds.
    except (
        AnymailError,
        AnymailConfigurationError,
        ValueError,
        LookupError,
        TypeError,
        AttributeError,
        RecursionError,
        OverflowError,
        OSError,
    ):
        return _plain(400, "The payload could not be read.")
    if esp == EmailBackend.AMAZON_SES:
        events = [_ses_event(event) for event in events]
    apply_events(email_settings.project, EmailBackend(esp).label, events)
    return _plain(200, "OK")


# --- Amazon SES through SNS ----------------------------------------------------------------------

SNS_CERT_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
# The fields each SNS message type signs, in this order ("Subject" only when the message has one).
SNS_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SNS_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERTIFICATE = 16_384
SNS_CERTIFICATE_TIMEOUT = 5  # seconds: SNS waits 15 for an answer, and the first one fetches it
_certificates: dict[str, x509.Certificate] = {}
_certificates_lock = threading.Lock()


def _fetch_sns_certificate(url: str) -> bytes:
    """The PEM at ``url`` (an SNS signing certificate; the URL was checked to be SNS's)."""
    response = requests.get(url, timeout=SNS_CERTIFICATE_TIMEOUT, allow_redirects=False)
    response.raise_for_status()
    if len(response.content) > MAX_CERTIFICATE:
        raise ValueError("The signing certificate is too large.")
    return response.content


def sns_certificate(url: str) -> x509.Certificate:
    """SNS's signing certificate at ``url``, fetched once per process (SNS rotates it rarely, and
    then under a new URL)."""
    with _certificates_lock:
        found = _certificates.get(url)
    if found is None:
        found = x509.load_pem_x509_certificate(_fetch_sns_certificate(url))
        with _certificates_lock:
            if len(_certificates) >= 32:  # a handful of regions' certificates; never unbounded
                _certificates.clear()
            _certificates[url] = found
    return found


def sns_signature_problem(message: dict[str, Any]) -> str:
    """Why ``message`` (an SNS HTTP message) is not signed by SNS, or "" when it is."""
    kind = message.get("Type")
    fields = SNS_SIGNED.get(kind) if isinstance(kind, str) else None
    algorithm = SNS_HASHES.get(str(message.get("SignatureVersion")))
    if fields is None or algorithm is None:
        return "Not a signed SNS message."
    url = message.get("SigningCertURL")
    parts = urlsplit(url) if isinstance(url, str) else None
    if (
        parts is None
        or parts.scheme != "https"
        or parts.username
        or parts.password
        or parts.port not in (None, 443)
        or not SNS_CERT_HOST.fullmatch(parts.hostname or "")
        or not parts.path.endswith(".pem")
    ):
        return "The signing certificate is not Amazon SNS's."
    try:
        signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
        lines = []
        for name in fields:
            if name == "Subject" and message.get(name) is None:
                continue
            value = message.get(name)
            if not isinstance(value, str):
                return f"The SNS message has no {name}."
            lines.append(f"{name}\n{value}\n")
        certificate = sns_certificate(url)
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            return "The signing certificate is not Amazon SNS's."
        now = timezone.now()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            return "The signing certificate has expired."
        key.verify(signature, "".join(lines).encode(), padding.PKCS1v15(), algorithm())
    except (binascii.Error, InvalidSignature):
        return "Invalid SNS signature."
    except (requests.RequestException, ValueError):
        return "The signing certificate could not be loaded."
    return ""


def _sns_refusal(message: dict[str, Any], email_settings: EmailSettings) -> str:
    """Why this project does not take ``message``, or "": SNS must have signed it, it must come
    from the project's topic (when one is set), and only that topic's subscription is confirmed."""
    problem = sns_signature_problem(message)
    if problem:
        return problem
    try:
        provider = json.loads(email_settings.provider_settings or "{}")
    except (ValueError, RecursionError):
        provider = {}
    expected = provider.get("sns_topic_arn") if isinstance(provider, dict) else None
    topic = message.get("TopicArn")
    if expected and topic != expected:
        return "This SNS topic is not the one in the project's email settings (sns_topic_arn)."
    if message.get("Type") == "SubscriptionConfirmation" and not expected:
        return (
            "Subscriptions are confirmed only for the topic in the project's email settings: "
            "add sns_topic_arn to the provider settings, then request the confirmation again."
        )
    return ""


def _ses_event(event: AnymailTrackingEvent) -> AnymailTrackingEvent:
    """anymail's SES event in this project's terms: only a Permanent bounce is hard (Transient and
    Undetermined are soft), a DeliveryDelay is soft, a Reject fails the message."""
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    kind = raw.get("eventType") or raw.get("notificationType")
    if event.event_type == EventType.BOUNCED:
        bounce = raw.get("bounce") if isinstance(raw.get("bounce"), dict) else {}
        if bounce.get("bounceType") != "Permanent":
            event.event_type = EventType.DEFERRED
    elif kind == "DeliveryDelay":
        delay = raw.get("deliveryDelay") if isinstance(raw.get("deliveryDelay"), dict) else {}
        event.event_type = EventType.DEFERRED
        event.description = f"Delivery delayed: {delay.get('delayType') or 'unknown reason'}"
    elif event.event_type == EventType.REJECTED:
        event.event_type = MESSAGE_REJECTED
        event.description = f"Rejected: {event.description or 'no reason given'}"
    return event


def _text(value: object, limit: int) -> str:
    """Provider text as the database can store it: no NUL, no lone surrogate, bounded."""
    text = str(value or "").replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")[:limit]


@transaction.atomic
def apply_events(project: Project, esp: str, events: Sequence[AnymailTrackingEvent]) -> int:
    """Apply ``events`` to the project's email messages they name; returns how many matched.

    One query finds the messages (by ``provider_message_id``, within ``project``: another
    project's id matches nothing). All or nothing: a failure answers 500 and the ESP retries the
    batch, whose applied part the dedup keys then skip.
    """
    ids = {str(e.message_id) for e in events if e.message_id}
    messages = {
        m.provider_message_id: m
        for m in Message.objects.for_project(project)
        .filter(channel=Channel.EMAIL, provider_message_id__in=ids)
        .select_related("project", "subscriber")
    }
    matched = 0
    for event in events:
        message = messages.get(str(event.message_id))
        if message is not None:
            matched += 1
            apply_event(message, esp, event)
    return matched


def apply_event(message: Message, esp: str, event: AnymailTrackingEvent) -> None:
    at = event.timestamp or timezone.now()
    kind = event.event_type
    reason = _text(event.description or event.mta_response or event.reject_reason, MAX_REASON)
    if kind == EventType.DELIVERED:
        channel_events.record(message, channel_events.DELIVERED, at=at)
    elif kind == EventType.OPENED:
        channel_events.record(message, channel_events.OPENED, at=at)
    elif kind == EventType.CLICKED:
        url = _text(event.click_url, MAX_URL)
        channel_events.record(
            message, channel_events.CLICKED, attributes={"url": url}, at=at, dedup=tracking.click_dedup(url)
        )
    elif kind == EventType.BOUNCED or (kind == EventType.REJECTED and event.reject_reason in HARD_REJECTIONS):
        channel_events.record(message, channel_events.BOUNCED, attributes=_bounce("hard", reason), at=at)
        if _same_address(message, event):
            mark_undeliverable(message.subscriber, reason=f"Bounced ({esp}): {reason}".strip(), at=at)
    elif kind == MESSAGE_REJECTED:
        # Never sent: the message fails (a hard bounce's event), the address stays deliverable.
        channel_events.record(message, channel_events.BOUNCED, attributes=_bounce("hard", reason), at=at)
    elif kind == EventType.DEFERRED:
        # A temporary failure: the ESP keeps trying; the address stays deliverable.
        channel_events.record(
            message, channel_events.BOUNCED, attributes=_bounce("soft", reason), at=at, dedup="soft"
        )
    elif kind == EventType.COMPLAINED:
        channel_events.record(message, channel_events.COMPLAINED, at=at)
        if _same_address(message, event):
            mark_undeliverable(message.subscriber, reason=f"Spam complaint ({esp})", at=at)
        _opt_out(message, esp, at, "a spam complaint")
    elif kind == EventType.UNSUBSCRIBED:
        _opt_out(message, esp, at, "an unsubscribe at the provider")


def _bounce(bounce: str, reason: str) -> dict[str, str]:
    return {"bounce": bounce, "reason": reason} if reason else {"bounce": bounce}


def _same_address(message: Message, event: AnymailTrackingEvent) -> bool:
    """A report about the address the subscriber has now: a bounce of an address they have
    since replaced says nothing about the new one."""
    recipient = (event.recipient or "").strip().casefold()
    return bool(message.subscriber.email) and (
        not recipient or recipient == message.subscriber.email.strip().casefold()
    )


def _opt_out(message: Message, esp: str, at: datetime, what: str) -> None:
    tracking.opt_out(
        message,
        source=ConsentSource.EMAIL_PROVIDER,
        actor=Actor(label=esp),
        at=at,
        what=f"{esp} reported {what}",
    )
