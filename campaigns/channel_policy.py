"""Who may get an email or a push: the consent rules of those channels, in one place (ADR 0008).

The send services (``mail.services.send_email``, ``push.services.send_push``) refuse with these
words when a row is written, and the channel sender asks again for every row it claims (consent
may change in between), so "skipped by reason" groups one way whoever decided. Marketing needs
opt-in for email (as for WhatsApp); push needs an active device (the app's OS permission) and no
opt-out. Transactional messages need only "not opted out" and a way to reach the person.
"""

from __future__ import annotations

from django.utils.translation import gettext_noop

from subscribers.models import ConsentState, Subscriber

# Stored in English on skipped rows (they group by them); pages translate them when they show them.
NO_EMAIL = gettext_noop("The subscriber has no email address.")
EMAIL_UNDELIVERABLE = gettext_noop(
    "The email address is undeliverable (it bounced or the person complained)."
)
EMAIL_OPTED_OUT = gettext_noop("The subscriber opted out of email.")
EMAIL_NO_OPT_IN = gettext_noop("Marketing email needs email opt-in, and this subscriber has not opted in.")
NO_DEVICE = gettext_noop("The subscriber has no active push device.")
PUSH_OPTED_OUT = gettext_noop("The subscriber opted out of push.")


def email_refusal(subscriber: Subscriber, *, marketing: bool) -> str:
    """Why an email may not go to ``subscriber`` now, or ""."""
    if not subscriber.email:
        return NO_EMAIL
    if subscriber.email_undeliverable_at is not None:
        return EMAIL_UNDELIVERABLE
    if subscriber.email_consent == ConsentState.OPTED_OUT:
        return EMAIL_OPTED_OUT
    if marketing and subscriber.email_consent != ConsentState.OPTED_IN:
        return EMAIL_NO_OPT_IN
    return ""


def push_refusal(subscriber: Subscriber, *, active_devices: int) -> str:
    """Why a push may not go to ``subscriber`` now, or "". ``active_devices``: how many of their
    devices are registered, not removed and enabled (the caller counts them set-based)."""
    if subscriber.push_consent == ConsentState.OPTED_OUT:
        return PUSH_OPTED_OUT
    if active_devices <= 0:
        return NO_DEVICE
    return ""
