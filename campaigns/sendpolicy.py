"""Whether each claimed outbox row may be sent now: consent, frequency cap, quiet hours.

The send path asks ``decide`` for every batch it claimed, so a consent change or a cap reached
after launch still counts. Launch decides what it can in SQL first (fanout.py); this is the last word.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from whatsapp.models import TemplateCategory

from . import policy
from .models import Message, MessageKind
from .outcomes import Hold, Skip


def decide(messages: Sequence[Message], now: datetime) -> dict[int, Hold | Skip]:
    """The rows of ``messages`` that must not go now, by id; every other row is sent.

    ``messages`` come with ``subscriber`` loaded. Consent is checked here for every row;
    frequency caps and quiet hours apply to marketing rows only (transactional and
    verification messages bypass them, never an opt-out).
    """
    decisions: dict[int, Hold | Skip] = {}
    for message in messages:
        reason = _consent_refusal(message)
        if reason:
            decisions[message.pk] = Skip(reason)
    return decisions


def _consent_refusal(message: Message) -> str:
    subscriber = message.subscriber
    if message.kind == MessageKind.TEXT:
        return policy.refusal_for_text(subscriber)
    if message.marketing:
        return policy.consent_refusal(subscriber, TemplateCategory.MARKETING)
    return policy.consent_refusal(subscriber, TemplateCategory.UTILITY)
