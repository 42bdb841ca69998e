"""What happened to an email or a push after it left: the one write path (ADR 0008).

Opens (email pixel, ``PushOpened`` from the app or the push simulator), clicks (the signed
redirect), deliveries, bounces and complaints (the email provider's webhook) all come here: the
message row is marked once (``opened_at``, ``clicked_at``, ``delivered_at``, a bounce fails it) and
an event is recorded in the subscriber's timeline with the message's origin, so segments,
journeys (wait for ``EmailOpened`` of a step) and statistics read one fact.

Event names and attributes (strings): ``EmailDelivered``, ``EmailOpened``, ``EmailClicked``
(+ ``url``), ``EmailBounced`` (+ ``bounce``: hard|soft, ``reason``), ``EmailComplained``,
``PushOpened`` (+ ``device`` when known), ``EmailFailed`` / ``PushFailed`` (the provider refused it
at send time; + ``error_code``, ``error_title``, ``reason``); each with ``message`` (the message's
public id) and, for a journey's message, ``journey`` (public id) and ``step`` (step id) from
``message.content["origin"]``. Dedup keys make a replayed webhook or a second open of the same
kind record nothing new (every click of another URL is its own event).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from subscribers.models import Event
from subscribers.services import record_event

from .models import Message, MessageStatus

OPENED, CLICKED, DELIVERED, BOUNCED, COMPLAINED = "opened", "clicked", "delivered", "bounced", "complained"
FAILED = "failed"  # refused by the provider at send time: recorded by the sender (sending.py), not here
EVENT_NAMES = {
    ("email", DELIVERED): "EmailDelivered",
    ("email", OPENED): "EmailOpened",
    ("email", CLICKED): "EmailClicked",
    ("email", BOUNCED): "EmailBounced",
    ("email", COMPLAINED): "EmailComplained",
    ("push", OPENED): "PushOpened",
    ("email", FAILED): "EmailFailed",
    ("push", FAILED): "PushFailed",
}
# The first of each marks the row; later ones only add their event (a second click of another URL).
MARKS = {OPENED: "opened_at", CLICKED: "clicked_at", DELIVERED: "delivered_at"}


def origin_attributes(message: Message) -> dict[str, str]:
    """``message``, its subject (email) or title (push), and ``journey`` / ``step`` when a journey's
    step wrote it."""
    attributes = {"message": str(message.public_id)}
    content = message.content if isinstance(message.content, dict) else {}
    # What the timeline names the message by: an email's subject, a push's title.
    label_key = "subject" if message.channel == "email" else "title"
    if isinstance(content.get(label_key), str) and content[label_key]:
        attributes[label_key] = content[label_key][:200]
    origin = content.get("origin")
    if isinstance(origin, dict):
        for key in ("journey", "step"):
            if origin.get(key):
                attributes[key] = str(origin[key])
    return attributes


@transaction.atomic
def record(
    message: Message,
    kind: str,
    *,
    attributes: dict[str, Any] | None = None,
    at: datetime | None = None,
    dedup: str = "",
) -> Event | None:
    """Mark ``message`` (``kind``: opened, clicked, delivered, bounced, complained) and record its
    event. ``dedup``: what makes two reports of this kind distinct (a click's URL); "" -> once per
    message and kind. Returns the event, or None for a kind the channel does not have.
    """
    name = EVENT_NAMES.get((message.channel, kind))
    if name is None:
        return None
    at = at or timezone.now()
    field = MARKS.get(kind)
    if field:
        unmarked = Message.objects.filter(pk=message.pk, **{f"{field}__isnull": True})
        unmarked.update(**{field: at, "updated_at": at})
        # Opening or clicking implies it arrived: a pixel seen before the provider's delivery report.
        if kind in (OPENED, CLICKED):
            Message.objects.filter(pk=message.pk, delivered_at__isnull=True).update(delivered_at=at)
    if kind == BOUNCED and (attributes or {}).get("bounce", "hard") == "hard":
        Message.objects.filter(pk=message.pk).exclude(status=MessageStatus.FAILED).update(
            status=MessageStatus.FAILED,
            failed_at=at,
            reason=gettext_noop("The email bounced."),
            updated_at=at,
        )
    event_attributes = {**origin_attributes(message), **(attributes or {})}
    key = f"{name}:{message.public_id}" + (f":{dedup}" if dedup else "")
    return record_event(
        project=message.project,
        subscriber=message.subscriber,
        name=name,
        attributes=event_attributes,
        occurred_at=at,
        dedup_key=key[:200],
    )
