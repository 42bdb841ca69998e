"""Campaign objects for the launch tests (fan-out, send policy, lifecycle, preflight, pricing)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from campaigns.models import (
    AudienceKind,
    Campaign,
    CampaignPurpose,
    CampaignStatus,
    Message,
    MessageStatus,
)
from subscribers.models import Subscriber

EVERYONE_RULE = {"type": "group", "op": "and", "children": [{"type": "all"}]}


def make_campaign(account, **kw) -> Campaign:
    defaults = {
        "project": account.project,
        "account": account,
        "name": "Winter sale",
        "purpose": CampaignPurpose.PROMOTION,
        "template_name": "winter_sale",
        "languages": ["en_US"],
        "fallback_language": "en_US",
        "audience_kind": AudienceKind.RULE,
        "rule": EVERYONE_RULE,
    }
    defaults.update(kw)
    return Campaign.objects.create(**defaults)


def sent_message(subscriber: Subscriber, *, marketing: bool = True, days_ago: float = 1, **kw) -> Message:
    """An outbox row that went out ``days_ago`` days ago (counts toward the cap when marketing)."""
    at = timezone.now() - timedelta(days=days_ago)
    defaults = {
        "project": subscriber.project,
        "subscriber": subscriber,
        "status": MessageStatus.SENT,
        "marketing": marketing,
        "sending_at": at,
        "sent_at": at,
    }
    defaults.update(kw)
    return Message.objects.create(**defaults)


def rows(campaign: Campaign) -> dict[int, Message]:
    """The campaign's outbox rows by subscriber id."""
    return {m.subscriber_id: m for m in Message.objects.filter(campaign=campaign)}


__all__ = ["EVERYONE_RULE", "CampaignStatus", "make_campaign", "rows", "sent_message"]
