"""A send the provider refuses at once (Meta's error answer to the POST, an email or push refused by
its transport) counts ``failed`` on the journey step that sent it, like a failure reported later
by a status webhook; campaign rows failing the same way keep their counters right."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from django.utils import timezone

from campaigns import channel_sending, channels, sending
from campaigns import counters as campaign_counters
from campaigns.channels import Delivery
from campaigns.models import Channel, Message, MessageStatus
from journeys import consumer, counters, engine
from journeys.models import JourneyRun, RunState
from mail.models import EmailTemplate
from push.models import PushTemplate
from subscribers.models import ConsentState, Device, Event
from tests.factories import SubscriberFactory
from tests.fakegraph import error_answer, ok_answer
from tests.journeys.helpers import make_account, make_journey, make_run, make_template

pytestmark = pytest.mark.django_db

OFFER = {
    "id": "offer",
    "type": "whatsapp_template",
    "template": {"name": "offer", "language": "de"},
    "next": "after",
}
AFTER = {"id": "after", "type": "exit"}


@pytest.fixture
def account(project, graph):
    made = make_account(project)
    make_template(made, name="offer", category="UTILITY", components=[{"type": "BODY", "text": "2 für 1."}])
    return made


def feed_events(name: str) -> list[Event]:
    """The events of ``name`` as the feed hands them to the journeys consumer."""
    return list(Event.objects.filter(name=name).order_by("pk"))


@pytest.mark.parametrize("code", [131026, 132001])
def test_a_whatsapp_send_meta_refuses_at_post_counts_failed_on_its_step(project, account, graph, code):
    now = timezone.now()
    anna = SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_IN)
    journey = make_journey(project, [OFFER, AFTER])
    run = make_run(journey, anna, now=now)
    assert engine.tick(now=now) == 1
    # The run does not wait on the send: it went on and left.
    assert JourneyRun.objects.get(pk=run.pk).state == RunState.DONE
    message = Message.objects.get(idempotency_key=f"journey:{run.public_id}:offer")

    graph.answer = error_answer(code)
    assert sending.send_batch([message.pk]) == {"failed": 1}
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED and message.error_code == code and not message.wamid

    [failed] = feed_events("WhatsAppFailed")
    assert failed.subscriber_id == anna.pk
    assert failed.attributes["message"] == str(message.public_id)
    assert failed.attributes["error_code"] == code
    consumer.handle([failed])
    consumer.handle([failed])  # the feed handing it again counts nothing more
    stats = counters.read(journey.pk)
    assert stats[("offer", "sent")] == 1
    assert stats[("offer", "failed")] == 1
    assert ("offer", "delivered") not in stats


def test_a_run_waiting_for_a_button_of_a_message_meta_refused_moves_on_at_once(project, account, graph):
    """Sender, feed consumer and engine together: the failure wakes the run waiting for a reply to
    the message that never went out, and it takes the no-button path now, not after a day."""
    menu = make_template(
        account,
        name="menu",
        category="UTILITY",
        components=[
            {"type": "BODY", "text": "Wie können wir helfen?"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Support"}]},
        ],
    )
    now = timezone.now()
    anna = SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_IN)
    step = {"id": "menu", "type": "whatsapp_template", "template": {"name": menu.name, "language": "de"},
            "buttons": {"Support": "after"}, "next": "after"}  # fmt: skip
    journey = make_journey(project, [step, AFTER])
    run = make_run(journey, anna, now=now)
    engine.tick(now=now)
    run.refresh_from_db()
    assert run.state == RunState.WAITING and run.step_id == "menu"
    message = Message.objects.get(idempotency_key=f"journey:{run.public_id}:menu")

    graph.answer = error_answer(131026)
    sending.send_batch([message.pk])
    consumer.handle(feed_events("WhatsAppFailed"))
    engine.tick(now=timezone.now())
    run.refresh_from_db()
    assert run.state == RunState.DONE
    assert run.step_id == "after"


def test_a_whatsapp_failure_at_post_and_a_later_status_failure_count_alike(project, account, graph):
    """The POST-time failure of one run and a webhook failure of another: one ``failed`` each."""
    from campaigns.services import apply_statuses
    from whatsapp.signals import StatusUpdate

    now = timezone.now()
    anna, ben = (SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_IN) for _ in range(2))
    journey = make_journey(project, [OFFER, AFTER])
    runs = [make_run(journey, who, now=now) for who in (anna, ben)]
    engine.tick(now=now)
    refused, accepted = (Message.objects.get(idempotency_key=f"journey:{r.public_id}:offer") for r in runs)

    graph.answer = error_answer(131026)
    sending.send_batch([refused.pk])
    graph.answer = ok_answer
    sending.send_batch([accepted.pk])
    accepted.refresh_from_db()
    apply_statuses(
        [
            StatusUpdate(
                project_id=project.pk,
                account_id=account.pk,
                wamid=accepted.wamid,
                status="failed",
                timestamp=timezone.now(),
                errors=({"code": 131026, "title": "Message undeliverable"},),
            )
        ]
    )
    consumer.handle(feed_events("WhatsAppFailed"))
    assert counters.read(journey.pk)[("offer", "failed")] == 2


def test_a_campaign_row_refused_at_post_keeps_its_counters_and_counts_on_no_journey(
    project, account, graph, monkeypatch
):
    from tests.campaigns.outbox import fill, make_campaign, patch_render
    from tests.campaigns.test_counters import assert_counted

    patch_render(monkeypatch)
    account.throughput_mps = 1000
    account.save()
    campaign = make_campaign(account)
    rows = fill(campaign, 3)
    journey = make_journey(project, [OFFER, AFTER])

    graph.answer = error_answer(131026)
    assert sending.send_batch([m.pk for m in rows]) == {"failed": 3}
    assert_counted(campaign)
    assert campaign_counters.recount([campaign.pk]) == 0  # nothing to correct
    events = feed_events("WhatsAppFailed")
    assert sorted(e.attributes["message"] for e in events) == sorted(str(m.public_id) for m in rows)
    consumer.handle(events)
    assert counters.read(journey.pk) == {}


def test_rows_a_status_webhook_settled_first_record_no_second_failure(project, account, graph):
    """The write-back records the failures of rows it changed only (here: none changed)."""
    now = timezone.now()
    anna = SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_IN)
    journey = make_journey(project, [OFFER, AFTER])
    run = make_run(journey, anna, now=now)
    engine.tick(now=now)
    message = Message.objects.get(idempotency_key=f"journey:{run.public_id}:offer")

    real_write_back = sending._write_back

    def settled_meanwhile(batch):
        Message.objects.filter(pk=message.pk).update(status=MessageStatus.DELIVERED)
        real_write_back(batch)

    graph.answer = error_answer(131026)
    original = sending._write_back
    sending._write_back = settled_meanwhile
    try:
        sending.send_batch([message.pk])
    finally:
        sending._write_back = original
    assert not feed_events("WhatsAppFailed")


# --- email and push ------------------------------------------------------------------------------


class Refusing:
    """A transport that refuses every message for good (an SMTP 550, FCM's INVALID_ARGUMENT)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def send(self, project, messages: Sequence[Message]) -> list[Delivery]:
        return [Delivery(ok=False, error_code=self.code, error="Refused.") for _ in messages]


@pytest.mark.parametrize(
    ("kind", "channel", "event"),
    [("send_email", Channel.EMAIL, "EmailFailed"), ("send_push", Channel.PUSH, "PushFailed")],
)
def test_an_email_or_push_refused_at_send_counts_failed_on_its_step(
    project, monkeypatch, kind, channel, event
):
    EmailTemplate.objects.create(project=project, name="reminder", subject="Hello", text="Come back.")
    PushTemplate.objects.create(project=project, name="reminder", title="Hello", body="Come back.")
    anna = SubscriberFactory(project=project, email="anna@example.com", email_consent=ConsentState.OPTED_IN)
    Device.objects.create(project=project, subscriber=anna, token="tok-anna", platform="android")
    monkeypatch.setitem(channels._transports, channel, Refusing("550"))
    now = timezone.now()
    journey = make_journey(project, [{"id": "send", "type": kind, "template": "reminder", "next": None}])
    run = make_run(journey, anna, now=now)
    engine.tick(now=now)
    message = Message.objects.get(idempotency_key=f"journey:{run.public_id}:send")

    assert channel_sending.send_batch([message.pk]) == {"failed": 1}
    [failed] = feed_events(event)
    assert failed.attributes["message"] == str(message.public_id)
    assert (failed.attributes["journey"], failed.attributes["step"]) == (str(journey.public_id), "send")
    consumer.handle([failed])
    consumer.handle([failed])
    stats = counters.read(journey.pk)
    assert (stats[("send", "sent")], stats[("send", "failed")]) == (1, 1)
