"""Replies and button clicks: what a person did with a message we sent, from their inbound messages.

- Replied: an inbound message within ``REPLY_WINDOW`` (72 h) after a WhatsApp message was sent to
  that person sets ``replied_at`` on the most recent such message, once (a later inbound leaves it).
- Clicked: a quick-reply button press (a template's ``button`` or an interactive ``button_reply``)
  sets ``clicked_at`` on the message it answers, once: the one whose wamid the inbound's
  ``context.id`` names, or, without that, the one whose id the button's payload carries
  (``m:<message id>``, our ``biz_opaque_callback_data`` format). A press is a click, not a reply:
  the funnel counts them apart, and a "Stop promotions" tap is no answer to the marketer's text.

This runs in the webhook's processing transaction at thousands of inbound messages a second, so
each inbound costs exactly one UPDATE (a subquery picks the row), whatever happens, plus one
counter upsert when it marked a campaign's row. Replays are
harmless: the processing skips inbound messages it has seen, and both timestamps are only set
when still empty.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Q, Subquery

from whatsapp.signals import InboundMessage

from . import counters
from .models import Channel, Message, MessageStatus

REPLY_WINDOW = timedelta(hours=72)
# Meta stamps an inbound message in whole seconds by its clock, we stamp sent_at by ours: a reply
# written right after the send may carry a time a little before our sent_at.
CLOCK_SKEW = timedelta(minutes=1)
BUTTON_TYPES = ("button", "interactive")
# Not written by the person (a number change notice): no reply.
NOT_REPLIES = ("system",)
# Delivered to the person, or at least accepted by Meta; a failed message got no answer.
ANSWERABLE = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)


def record_engagement(message: InboundMessage) -> int:
    """Apply one inbound message: set ``clicked_at`` or ``replied_at``. Returns rows changed (0 or 1)."""
    if message.type in BUTTON_TYPES and message.button_payload:
        return _record_click(message)
    if message.type in NOT_REPLIES:
        return 0
    return _record_reply(message)


def _record_reply(message: InboundMessage) -> int:
    latest = (
        Message.objects.filter(
            project_id=message.project_id,
            subscriber_id=message.subscriber_id,
            channel=Channel.WHATSAPP,
            status__in=ANSWERABLE,
            sent_at__gte=message.timestamp - REPLY_WINDOW,
            sent_at__lte=message.timestamp + CLOCK_SKEW,
        )
        .order_by("-sent_at", "-id")
        .values("id")[:1]
    )
    # Only the most recent message can take the reply: if it has one already, nothing changes.
    return _mark(Message.objects.filter(pk=Subquery(latest), replied_at__isnull=True), "replied_at", message)


def _record_click(message: InboundMessage) -> int:
    answered = Q(wamid=message.context_message_id) if message.context_message_id else None
    if answered is None:
        public_id = _payload_message_id(message.button_payload)
        if public_id is None:
            return 0
        answered = Q(public_id=public_id)
    # The subscriber too: a wamid or payload in someone else's inbound marks nothing of theirs.
    rows = Message.objects.filter(
        answered,
        project_id=message.project_id,
        subscriber_id=message.subscriber_id,
        clicked_at__isnull=True,
    )
    return _mark(rows, "clicked_at", message)


def _mark(rows, column: str, inbound: InboundMessage) -> int:
    """Set ``column`` to the inbound's time on ``rows`` (at most one) in one UPDATE ... RETURNING,
    and count it for its campaign (counters.py) in the same transaction."""
    ids_sql, ids_params = rows.values("id").query.sql_with_params()
    table = connection.ops.quote_name(Message._meta.db_table)
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {column} = %s WHERE id IN ({ids_sql}) "  # noqa: S608 - names from code
            "RETURNING campaign_id, status, pricing_category, billable",
            [connection.ops.adapt_datetimefield_value(inbound.timestamp), *ids_params],
        )
        marked = cursor.fetchall()
        delta = counters.Delta()
        for campaign_id, status, category, billable in marked:
            if campaign_id is not None:
                one = {"replied_at": "replied", "clicked_at": "clicked"}[column]
                delta.add(campaign_id, status, category, counters.is_free(billable), **{one: 1})
        delta.apply()
    return len(marked)


def _payload_message_id(payload: str) -> uuid.UUID | None:
    if not payload.startswith("m:"):
        return None
    try:
        return uuid.UUID(payload[2:])
    except ValueError:
        return None


def on_inbound_received(sender, message: InboundMessage, **kwargs) -> None:
    record_engagement(message)
