"""Replies and button clicks recorded on the messages they answer (campaigns.engagement)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.engagement import record_engagement
from campaigns.models import Campaign, Message, MessageStatus
from tests.factories import SubscriberFactory
from tests.whatsapp import payloads as p
from tests.whatsapp.test_webhook import deliver
from whatsapp.signals import InboundMessage

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def sent(
    subscriber, at: datetime, *, status=MessageStatus.DELIVERED, wamid: str | None = None, **kw
) -> Message:
    return Message.objects.create(
        project=subscriber.project,
        subscriber=subscriber,
        status=status,
        sent_at=at,
        wamid=wamid or f"wamid.E{uuid.uuid4().hex[:12]}",
        **kw,
    )


def inbound(subscriber, at: datetime, *, type="text", context="", payload="") -> InboundMessage:
    return InboundMessage(
        project_id=subscriber.project_id,
        account_id=0,
        subscriber_id=subscriber.pk,
        event_id=0,
        message_id=f"wamid.IN{uuid.uuid4().hex[:8]}",
        type=type,
        text="hi",
        normalized_text="HI",
        button_payload=payload,
        timestamp=at,
        context_message_id=context,
    )


def times(message: Message) -> tuple[datetime | None, datetime | None]:
    message.refresh_from_db()
    return message.replied_at, message.clicked_at


def test_a_reply_marks_the_most_recent_message_sent_within_72_hours(subscriber):
    older = sent(subscriber, T0)
    latest = sent(subscriber, T0 + timedelta(hours=5))
    sent(subscriber, T0 + timedelta(hours=7), status=MessageStatus.QUEUED, wamid=None)  # not sent yet
    sent(subscriber, T0 + timedelta(hours=6), status=MessageStatus.FAILED)  # never arrived
    replied = T0 + timedelta(hours=8)
    assert record_engagement(inbound(subscriber, replied)) == 1
    assert times(latest) == (replied, None)
    assert times(older) == (None, None)


def test_only_the_first_reply_counts(subscriber):
    message = sent(subscriber, T0)
    record_engagement(inbound(subscriber, T0 + timedelta(minutes=3)))
    assert record_engagement(inbound(subscriber, T0 + timedelta(minutes=9))) == 0
    assert times(message)[0] == T0 + timedelta(minutes=3)


@pytest.mark.parametrize(
    ("after", "counts"),
    [
        (timedelta(hours=72), True),
        (timedelta(hours=72, seconds=1), False),
        (timedelta(seconds=-30), True),  # Meta's whole-second stamp just before our sent_at
        (timedelta(hours=-1), False),  # written before the send: no answer to it
    ],
)
def test_the_reply_window(subscriber, after, counts):
    message = sent(subscriber, T0)
    record_engagement(inbound(subscriber, T0 + after))
    assert (times(message)[0] is not None) is counts


def test_a_reply_from_someone_else_or_a_system_notice_marks_nothing(subscriber):
    message = sent(subscriber, T0)
    other = SubscriberFactory(project=subscriber.project)
    assert record_engagement(inbound(other, T0 + timedelta(hours=1))) == 0
    assert record_engagement(inbound(subscriber, T0 + timedelta(hours=1), type="system")) == 0
    assert times(message) == (None, None)


def test_a_button_press_marks_the_message_it_answers_as_clicked(subscriber):
    campaign_message = sent(subscriber, T0, wamid="wamid.CAMPAIGN")
    later = sent(subscriber, T0 + timedelta(hours=1))
    pressed = T0 + timedelta(hours=2)
    event = inbound(subscriber, pressed, type="button", context="wamid.CAMPAIGN", payload="STOP_PROMOS")
    assert record_engagement(event) == 1
    assert times(campaign_message) == (None, pressed)
    assert times(later) == (None, None)  # a click is not a reply
    assert (
        record_engagement(
            inbound(
                subscriber,
                pressed + timedelta(minutes=1),
                type="button",
                context="wamid.CAMPAIGN",
                payload="X",
            )
        )
        == 0
    )
    assert times(campaign_message)[1] == pressed


def test_a_button_payload_carrying_our_message_id_is_enough(subscriber):
    message = sent(subscriber, T0)
    event = inbound(subscriber, T0 + timedelta(hours=1), type="interactive", payload=f"m:{message.public_id}")
    assert record_engagement(event) == 1
    assert times(message)[1] == T0 + timedelta(hours=1)


def test_a_press_naming_another_persons_message_marks_nothing(subscriber):
    theirs = sent(SubscriberFactory(project=subscriber.project), T0, wamid="wamid.THEIRS")
    event = inbound(subscriber, T0 + timedelta(hours=1), type="button", context="wamid.THEIRS", payload="YES")
    assert record_engagement(event) == 0
    assert record_engagement(inbound(subscriber, T0, type="button", payload=f"m:{theirs.public_id}")) == 0
    assert times(theirs) == (None, None)


def test_one_statement_per_inbound(subscriber, django_assert_num_queries):
    sent(subscriber, T0, wamid="wamid.ONE")
    with django_assert_num_queries(1):
        record_engagement(inbound(subscriber, T0 + timedelta(hours=1)))
    with django_assert_num_queries(1):
        record_engagement(
            inbound(subscriber, T0 + timedelta(hours=1), type="button", context="wamid.ONE", payload="A")
        )
    with django_assert_num_queries(0):
        record_engagement(inbound(subscriber, T0, type="button", payload="NOT_OURS"))


# --- through the webhook ---------------------------------------------------------------------------


@pytest.fixture
def webhook_account(db):
    from tests.factories import ProjectFactory
    from tests.whatsapp.conftest import APP_SECRET
    from whatsapp.models import WhatsAppAccount

    return WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id=p.WABA_ID,
        phone_number_id=p.PHONE_NUMBER_ID,
        display_phone_number=p.DISPLAY,
        access_token="EAAG-test-token",
        app_secret=APP_SECRET,
    )


def now_payload(message: dict) -> dict:
    payload = p.inbound(message, wa_id="4915112345678")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(int(time.time()))
    return payload


def test_replies_and_clicks_arrive_through_the_webhook(client, webhook_account, settings):
    settings.WEBHOOK_GROUP_COMMIT = False
    subscriber = SubscriberFactory(project=webhook_account.project, phone="+4915112345678")
    campaign = Campaign.objects.create(
        project=webhook_account.project, name="Spring", account=webhook_account
    )
    now = datetime.now(UTC)
    promo = sent(subscriber, now - timedelta(hours=2), wamid="wamid.PROMO", campaign=campaign)
    deliver(
        client,
        webhook_account,
        now_payload(
            {
                "type": "button",
                "button": {"payload": "MORE_INFO", "text": "Tell me more"},
                "context": {"from": p.DISPLAY, "id": "wamid.PROMO"},
            }
        ),
    )
    promo.refresh_from_db()
    assert promo.clicked_at is not None and promo.replied_at is None
    deliver(client, webhook_account, now_payload({"type": "text", "text": {"body": "Is it vegan?"}}))
    promo.refresh_from_db()
    assert promo.replied_at is not None
