"""Campaign outbox rows for the sender's tests, as fanout writes them
(no content), and a stand-in for rendering.render_batch that fills them from the campaign."""

from __future__ import annotations

import itertools

from django.utils import timezone

from campaigns import rendering
from campaigns.models import Campaign, CampaignPurpose, CampaignStatus, Message, MessageKind, MessageStatus
from subscribers.models import ConsentState, Subscriber

_phones = itertools.count(1)


def make_campaign(account, *, status=CampaignStatus.RUNNING, throttle_mps=None, template_name="order_update"):
    return Campaign.objects.create(
        project=account.project,
        name="Spring sale",
        purpose=CampaignPurpose.TRANSACTIONAL,
        status=status,
        account=account,
        template_name=template_name,
        languages=["en_US"],
        fallback_language="en_US",
        throttle_mps=throttle_mps,
        snapshot_at=timezone.now(),
        launched_at=timezone.now(),
    )


def fill(campaign, n: int, **fields) -> list[Message]:
    """``n`` queued rows for ``n`` new opted-in subscribers, as launch's INSERT ... SELECT writes them."""
    subscribers = Subscriber.objects.bulk_create(
        Subscriber(
            project=campaign.project,
            phone=f"+49151{next(_phones):08d}",
            whatsapp_consent=ConsentState.OPTED_IN,
        )
        for _ in range(n)
    )
    rows = Message.objects.bulk_create(
        Message(
            project=campaign.project,
            subscriber=s,
            campaign=campaign,
            account=campaign.account,
            kind=MessageKind.TEMPLATE,
            status=MessageStatus.QUEUED,
            history=[{"status": "queued", "at": timezone.now().isoformat()}],
            **fields,
        )
        for s in subscribers
    )
    return rows


def render_all(messages):
    """Every campaign row gets the campaign's template with the subscriber's phone as {{1}}."""
    return {
        m.pk: rendering.Rendered(
            template_id=None,
            template_name=m.campaign.template_name,
            language="en_US",
            components=[{"type": "body", "parameters": [{"type": "text", "text": m.subscriber.phone}]}],
            body=f"Hello {m.subscriber.phone}",
        )
        for m in messages
    }


def patch_render(monkeypatch) -> list[list[int]]:
    """A stand-in for render_batch: every row renders (tests replace it to skip some)."""
    calls: list[list[int]] = []

    def render(messages):
        calls.append([m.pk for m in messages])
        return render_all(messages)

    monkeypatch.setattr(rendering, "render_batch", render)
    return calls
