"""Whether a subscriber's email address can take mail: the one write path (ADR 0008).

Hard bounces and complaints (the email provider's webhook) mark the address undeliverable; an
operator can mark it deliverable again; a changed address is cleared by the profile rule in
``subscribers/profile.py``. Both writes are conditional UPDATEs, so concurrent or replayed
reports change the row once and the first report's time and reason stay.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from .models import Subscriber

MAX_REASON = Subscriber._meta.get_field("email_undeliverable_reason").max_length


def mark_undeliverable(subscriber: Subscriber, *, reason: str, at: datetime | None = None) -> bool:
    """Set ``email_undeliverable_at``/``_reason`` unless already set; True when it changed."""
    now = timezone.now()
    at = at or now
    reason = (reason or "")[:MAX_REASON]
    changed = Subscriber.objects.filter(pk=subscriber.pk, email_undeliverable_at__isnull=True).update(
        email_undeliverable_at=at, email_undeliverable_reason=reason, updated_at=now
    )
    if changed:
        subscriber.email_undeliverable_at, subscriber.email_undeliverable_reason = at, reason
    return bool(changed)


def mark_deliverable(subscriber: Subscriber) -> bool:
    """Clear the mark (an operator's decision, audited by the caller); True when it changed."""
    changed = Subscriber.objects.filter(pk=subscriber.pk, email_undeliverable_at__isnull=False).update(
        email_undeliverable_at=None, email_undeliverable_reason="", updated_at=timezone.now()
    )
    if changed:
        subscriber.email_undeliverable_at, subscriber.email_undeliverable_reason = None, ""
    return bool(changed)
