"""Upward notifications of the subscribers app, each with a typed payload.

Receivers live in apps below this one (whatsapp, campaigns, journeys); this app
never imports them. Sent after commit, so receivers see committed rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.dispatch import Signal


@dataclass(frozen=True)
class EventRecorded:
    project_id: int
    subscriber_id: int
    event_id: int
    name: str
    occurred_at: datetime


@dataclass(frozen=True)
class SubscriberErased:
    """Everything that identified the erased subscriber, so other apps can scrub their copies."""

    project_id: int
    public_id: str
    identifiers: tuple[str, ...]  # phone, wa_id, bsuid, external id, email (non-empty ones)


# send(sender=Subscriber, payload=EventRecorded(...))
event_recorded = Signal()
# send(sender=Subscriber, payload=SubscriberErased(...))
subscriber_erased = Signal()
