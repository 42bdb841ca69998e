"""Upward notifications of the whatsapp app (receivers live in campaigns and journeys)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.dispatch import Signal


@dataclass(frozen=True)
class StatusUpdate:
    """One element of ``statuses[]`` of a status webhook (reference section 4.4)."""

    project_id: int
    account_id: int
    wamid: str
    status: str  # sent | delivered | read | played | failed
    timestamp: datetime
    recipient_id: str = ""
    recipient_user_id: str = ""
    callback_data: str = ""
    errors: tuple[dict, ...] = ()
    pricing: dict = field(default_factory=dict)


@dataclass(frozen=True)
class InboundMessage:
    project_id: int
    account_id: int
    subscriber_id: int
    event_id: int
    message_id: str
    type: str
    text: str
    normalized_text: str
    button_payload: str
    timestamp: datetime
    # "opted_out" / "opted_in" when this message changed consent by keyword or stop button, else "".
    consent_change: str = ""
    # The wamid this message answers (``context.id``: a quick-reply press names the template's
    # message; a reaction names the message reacted to), else "".
    context_message_id: str = ""


# send(sender=None, update=StatusUpdate(...), in_batch=...); sent inside the processing
# transaction, so a receiver that raises has the delivery retried. in_batch=True: the update
# was also announced in a statuses_received batch just before; a receiver of both acts once.
status_received = Signal()
# send(sender=None, updates=(StatusUpdate(...), ...)): the statuses of many deliveries in
# arrival order, for receivers that apply them set-based (the outbox); inside the transaction.
statuses_received = Signal()
# send(sender=None, message=InboundMessage(...))
inbound_received = Signal()
# send(sender=None, account_id=...): an account may send again (resumed, or new credentials);
# the outbox hands its waiting messages to workers.
sending_resumed = Signal()
