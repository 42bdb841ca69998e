from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaigns.models import MessageStatus
from campaigns.services import apply_status, deliver
from subscribers.models import Event
from whatsapp.signals import StatusUpdate

from .test_sending import queue


def update(message, status, ts, **kw):
    return StatusUpdate(
        project_id=message.project_id,
        account_id=message.account_id,
        wamid=kw.pop("wamid", message.wamid),
        status=status,
        timestamp=datetime.fromtimestamp(ts, tz=UTC),
        **kw,
    )


@pytest.fixture
def sent(graph, account, subscriber, template):
    message = queue(account, subscriber, template, "a", "b")
    deliver(message.pk)
    message.refresh_from_db()
    return message


def states(message):
    message.refresh_from_db()
    return message.status, message.delivered_at is not None, message.read_at is not None


def test_forward_only_and_read_before_delivered(sent):
    apply_status(update(sent, "read", 1750000200))
    apply_status(update(sent, "delivered", 1750000100))  # arrives late
    assert states(sent) == (MessageStatus.READ, True, True)
    apply_status(update(sent, "read", 1750000200))  # duplicate
    assert [h["status"] for h in sent.history] == ["queued", "sent", "read"]


def test_failed_after_delivered_fails_with_error_but_not_after_read(sent):
    apply_status(update(sent, "delivered", 1750000100))
    apply_status(update(sent, "failed", 1750000150, errors=({"code": 131026, "title": "undeliverable"},)))
    sent.refresh_from_db()
    assert (sent.status, sent.error_code) == (MessageStatus.FAILED, 131026)
    assert "not on WhatsApp" in sent.reason
    apply_status(update(sent, "read", 1750000300))
    assert sent.status == MessageStatus.FAILED  # terminal


def test_failed_never_overrides_read(sent):
    apply_status(update(sent, "read", 1750000200))
    apply_status(update(sent, "failed", 1750000250, errors=({"code": 131000},)))
    assert states(sent)[0] == MessageStatus.READ


def test_pricing_is_kept_for_cost_reports(sent):
    pricing = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "marketing"}
    apply_status(update(sent, "delivered", 1750000100, pricing=pricing))
    sent.refresh_from_db()
    assert (sent.pricing_category, sent.pricing_type, sent.billable) == ("marketing", "regular", True)


def test_unknown_message_is_settled_by_callback_data(sent):
    from campaigns.models import Message

    Message.objects.filter(pk=sent.pk).update(status=MessageStatus.UNKNOWN, wamid=None)
    apply_status(
        update(sent, "delivered", 1750000100, wamid="wamid.LATE", callback_data=f"m:{sent.public_id}")
    )
    sent.refresh_from_db()
    assert (sent.status, sent.wamid) == (MessageStatus.DELIVERED, "wamid.LATE")


def test_status_events_are_recorded_once(sent):
    for _ in range(2):
        apply_status(update(sent, "delivered", 1750000100))
        apply_status(update(sent, "read", 1750000200))
    names = list(Event.objects.filter(subscriber=sent.subscriber).values_list("name", flat=True))
    assert sorted(n for n in names if n.startswith("WhatsApp")) == ["WhatsAppDelivered", "WhatsAppRead"]


def test_status_of_another_projects_message_is_ignored(sent):
    other = StatusUpdate(
        project_id=sent.project_id + 999, account_id=0, wamid=sent.wamid, status="read",
        timestamp=datetime.fromtimestamp(1750000200, tz=UTC),
    )  # fmt: skip
    assert apply_status(other) is None
    assert states(sent)[0] == MessageStatus.SENT
