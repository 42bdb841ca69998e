"""The feed consumer "journeys": entries, wakes, message counters and conversion goals, per batch."""

from __future__ import annotations

import types
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Message, MessageStatus
from journeys import consumer, counters
from journeys.models import JourneyRun, JourneyRunStep, JourneyStatus, RunState
from subscribers import feed
from subscribers.models import Event
from subscribers.services import NewEvent, record_events
from tests.factories import ProjectFactory, SubscriberFactory
from tests.journeys.helpers import make_journey, make_run

pytestmark = pytest.mark.django_db

PROMO_ENTRY = {
    "type": "event",
    "event": "WhatsAppReceived",
    "conditions": [{"attribute": "text", "op": "keyword", "value": "promo"}],
}
STEPS = [{"id": "a", "type": "exit"}]


class EngineSpy:
    """Records what the consumer asks of journeys.engine, and lets the real engine do it."""

    def __init__(self, real):
        # The real functions, taken before the fixture puts the spy's methods in their place.
        self.real = types.SimpleNamespace(
            **{name: getattr(real, name) for name in ("wake_for_events", "exit_runs", "kick")}
        )
        self.woken: list[list[int]] = []
        self.exited: list[tuple[list[int], str]] = []
        self.kicks = 0

    def wake_for_events(self, events):
        self.woken.append([e.pk for e in events])
        return self.real.wake_for_events(events)

    def exit_runs(self, *, journey=None, runs=None, reason, now=None):
        self.exited.append(([r.pk for r in runs], reason))
        return self.real.exit_runs(journey=journey, runs=runs, reason=reason, now=now)

    def kick(self):
        self.kicks += 1


@pytest.fixture
def engine(monkeypatch):
    from journeys import engine as real

    spy = EngineSpy(real)
    for name in ("wake_for_events", "exit_runs", "kick"):
        monkeypatch.setattr(consumer.engine, name, getattr(spy, name))
    return spy


def record(project, *items):
    results = record_events(project=project, events=[NewEvent(*item) for item in items])
    return [r.event for r in results]


def pump():
    return feed.process_batch(consumer.CONSUMER)


def test_the_consumer_is_registered_from_the_app():
    assert consumer.CONSUMER in {c.name for c in feed.consumers()}


# Through the real feed, committed: on PostgreSQL the feed hands out only events of transactions
# that ended, and a test's own transaction never ends.
@pytest.mark.django_db(transaction=True)
def test_a_keyword_enters_once_and_only_its_own_projects_active_journeys(project, engine):
    feed.ensure_cursor(consumer.CONSUMER)
    journey = make_journey(project, STEPS, entry=PROMO_ENTRY)
    draft = make_journey(project, STEPS, entry=PROMO_ENTRY)
    draft.status = JourneyStatus.DRAFT
    draft.save()
    elsewhere = make_journey(ProjectFactory(), STEPS, entry=PROMO_ENTRY)
    anna, ben = SubscriberFactory(project=project), SubscriberFactory(project=project)
    promo, hello, again = record(
        project,
        (anna.pk, "WhatsAppReceived", {"text": "Promo!"}),
        (ben.pk, "WhatsAppReceived", {"text": "hallo"}),
        (anna.pk, "WhatsAppReceived", {"text": " PROMO"}),
    )
    assert pump() == 3
    run = JourneyRun.objects.get()
    assert (run.journey_id, run.subscriber_id, run.entry_key) == (journey.pk, anna.pk, f"event:{promo.pk}")
    assert run.context["event"]["attributes"] == {"text": "Promo!"}
    assert run.context["event"]["id"] == promo.pk and run.context["event"]["name"] == "WhatsAppReceived"
    assert counters.read(journey.pk) == {("", "entered"): 1}
    assert not JourneyRun.objects.filter(journey__in=[draft, elsewhere]).exists()
    assert engine.woken == [[promo.pk, hello.pk, again.pk]] and engine.kicks == 1
    # The run is still live: a second PROMO in a later batch starts nothing either.
    record(project, (anna.pk, "WhatsAppReceived", {"text": "promo"}))
    pump()
    assert JourneyRun.objects.count() == 1


def _sent_visit(
    project, journey, sub, step_id, wamid, *, now, status=MessageStatus.SENT, read=False, run=None
):
    run = run or make_run(journey, sub, now=now)
    message = Message.objects.create(
        project=project,
        subscriber=sub,
        wamid=wamid,
        status=MessageStatus.READ if read else status,
        sent_at=now,
        read_at=now if read else None,
    )
    JourneyRunStep.objects.create(
        project=project,
        run=run,
        step_id=step_id,
        step_type="whatsapp_template",
        entered_at=now,
        message=message,
    )
    return run


def test_statuses_and_clicks_count_once_per_message_on_the_step_that_sent_it(project, engine):
    now = timezone.now()
    journey = make_journey(project, [{"id": "menu", "type": "exit"}, {"id": "other", "type": "exit"}])
    anna, ben = SubscriberFactory(project=project), SubscriberFactory(project=project)
    _sent_visit(project, journey, anna, "menu", "wamid.A", now=now)
    _sent_visit(project, journey, ben, "other", "wamid.B", now=now)
    events = record(
        project,
        (anna.pk, "WhatsAppDelivered", {"message_id": "wamid.A"}),
        (anna.pk, "WhatsAppRead", {"message_id": "wamid.A"}),
        (anna.pk, "WhatsAppReceived", {"button_text": "Ja", "context_message_id": "wamid.A"}),
        (anna.pk, "WhatsAppReceived", {"button_text": "Nein", "context_message_id": "wamid.A"}),
        (
            anna.pk,
            "WhatsAppReceived",
            {"text": "danke", "context_message_id": "wamid.A"},
        ),  # a reply, no click
        (ben.pk, "WhatsAppRead", {"message_id": "wamid.B"}),  # read without a delivered status
        (ben.pk, "WhatsAppFailed", {"message_id": "wamid.unknown"}),
    )
    consumer.handle(events)
    consumer.handle(events[:2])  # a replayed batch changes nothing
    assert counters.read(journey.pk) == {
        ("menu", "delivered"): 1,
        ("menu", "read"): 1,
        ("menu", "clicked"): 1,
        ("other", "delivered"): 1,
        ("other", "read"): 1,
    }
    assert JourneyRunStep.objects.get(step_id="menu").detail["counted"] == ["delivered", "read", "clicked"]


def test_a_status_of_another_projects_message_counts_nothing(project, engine):
    now = timezone.now()
    journey = make_journey(project, [{"id": "menu", "type": "exit"}])
    _sent_visit(project, journey, SubscriberFactory(project=project), "menu", "wamid.A", now=now)
    other = ProjectFactory()
    stranger = SubscriberFactory(project=other)
    consumer.handle(record(other, (stranger.pk, "WhatsAppRead", {"message_id": "wamid.A"})))
    assert counters.read(journey.pk) == {}


GOAL = {"event": "OrderPlaced", "conditions": [{"attribute": "cuisine", "op": "eq", "value": "asian"}]}
TWO_SENDS = [
    {"id": "offer", "type": "wait", "duration": "PT1H", "next": "reminder"},
    {"id": "reminder", "type": "exit"},
]


def test_a_goal_converts_once_attributed_to_the_last_read_step_and_exits(project, engine):
    now = timezone.now()
    journey = make_journey(project, TWO_SENDS, goal={**GOAL, "window": "P7D", "exit": True})
    sub = SubscriberFactory(project=project)
    run = _sent_visit(project, journey, sub, "offer", "wamid.1", now=now - timedelta(hours=2), read=True)
    _sent_visit(project, journey, sub, "reminder", "wamid.2", now=now - timedelta(hours=1), run=run)
    wrong, right, twice = record(
        project,
        (sub.pk, "OrderPlaced", {"cuisine": "italian"}, now),
        (sub.pk, "OrderPlaced", {"cuisine": "asian"}, now),
        (sub.pk, "OrderPlaced", {"cuisine": "asian"}, now + timedelta(minutes=1)),
    )
    consumer.handle([wrong, right, twice])
    run.refresh_from_db()
    assert run.converted_at == right.occurred_at and run.converted_step == "offer"
    assert counters.read(journey.pk) == {
        ("", "converted"): 1,
        ("offer", "converted"): 1,
        ("", "exited:goal"): 1,
    }
    assert engine.exited == [([run.pk], "goal")]
    consumer.handle(record(project, (sub.pk, "OrderPlaced", {"cuisine": "asian"}, now + timedelta(hours=1))))
    assert counters.read(journey.pk)[("", "converted")] == 1


def test_without_a_read_message_the_last_sent_step_gets_the_conversion(project, engine):
    now = timezone.now()
    journey = make_journey(project, TWO_SENDS, goal={**GOAL, "window": "P7D"})
    sub = SubscriberFactory(project=project)
    run = _sent_visit(project, journey, sub, "offer", "wamid.1", now=now - timedelta(hours=2))
    _sent_visit(project, journey, sub, "reminder", "wamid.2", now=now - timedelta(hours=1), run=run)
    JourneyRun.objects.filter(pk=run.pk).update(
        state=RunState.DONE
    )  # finished runs convert within the window
    consumer.handle(record(project, (sub.pk, "OrderPlaced", {"cuisine": "asian"}, now)))
    run.refresh_from_db()
    assert run.converted_step == "reminder"
    assert counters.read(journey.pk) == {("", "converted"): 1, ("reminder", "converted"): 1}
    assert engine.exited == []  # no exit without goal.exit


def test_outside_the_window_and_dry_runs_do_not_convert(project, engine):
    now = timezone.now()
    journey = make_journey(project, TWO_SENDS, goal={**GOAL, "window": "P1D"})
    old, dry = SubscriberFactory(project=project), SubscriberFactory(project=project)
    make_run(journey, old, now=now - timedelta(days=2))
    make_run(journey, dry, now=now, dry_run=True)
    consumer.handle(
        record(
            project,
            (old.pk, "OrderPlaced", {"cuisine": "asian"}, now),
            (dry.pk, "OrderPlaced", {"cuisine": "asian"}, now),
        )
    )
    assert not JourneyRun.objects.filter(converted_at__isnull=False).exists()
    assert counters.read(journey.pk) == {}


def test_the_goal_window_starts_at_the_entry_event_not_when_a_lagging_consumer_entered(project, engine):
    now = timezone.now()
    make_journey(
        project, STEPS, entry={"type": "event", "event": "WhatsAppReceived"}, goal={**GOAL, "window": "PT1H"}
    )
    sub = SubscriberFactory(project=project)
    entry_event, goal_event = record(
        project,
        (sub.pk, "WhatsAppReceived", {"text": "hi"}, now - timedelta(minutes=5)),
        (sub.pk, "OrderPlaced", {"cuisine": "asian"}, now - timedelta(minutes=4)),
    )
    consumer.handle([entry_event])  # the consumer enters a minute or more after the message
    consumer.handle([goal_event])
    run = JourneyRun.objects.get()
    assert run.entered_at > goal_event.occurred_at and run.converted_at == goal_event.occurred_at


def test_a_batch_of_500_events_costs_a_handful_of_queries(project, engine, django_assert_max_num_queries):
    now = timezone.now()
    journey = make_journey(project, STEPS, entry=PROMO_ENTRY, goal={**GOAL, "window": "P7D"})
    subs = [SubscriberFactory(project=project) for _ in range(25)]
    for i, sub in enumerate(subs[:10]):
        _sent_visit(project, journey, sub, "a", f"wamid.{i}", now=now - timedelta(minutes=1))
    items = []
    for i in range(500):
        sub = subs[i % 25]
        kind = i % 4
        if kind == 0:
            items.append((sub.pk, "WhatsAppReceived", {"text": "promo" if i % 8 == 0 else "hallo"}))
        elif kind == 1:
            items.append((sub.pk, "WhatsAppRead", {"message_id": f"wamid.{(i // 4) % 10}"}))
        elif kind == 2:
            items.append((sub.pk, "OrderPlaced", {"cuisine": "asian"}, now))
        else:
            items.append((sub.pk, "PageViewed", {"url": "/"}))
    events = record(project, *items)
    events = list(Event.objects.filter(pk__in=[e.pk for e in events]).order_by("pk"))
    # 13 today: journeys, version, the entry path (4), statuses (3), goals (4); the engine adds its own.
    with django_assert_max_num_queries(15):  # 1 of them the engine's wake lookup
        consumer.handle(events)
    assert JourneyRun.objects.filter(converted_at__isnull=False).count() == 10
    assert counters.read(journey.pk)[("a", "read")] == 10


@pytest.mark.django_db(transaction=True)
def test_an_inbound_promo_enters_and_its_reply_goes_inside_the_window_it_opened(project, engine):
    """Inbound processing -> the feed -> an entry -> the reply step: the window is open for the reply."""
    from django.db import transaction

    from journeys.steps import Go
    from journeys.steps import get as step_type
    from tests.journeys.helpers import make_account, visit
    from whatsapp.processing import handle_inbound

    account = make_account(project)
    feed.ensure_cursor(consumer.CONSUMER)
    reply = {"id": "reply", "type": "whatsapp_text", "text": "Danke! Dein Code: SUSHI20"}
    make_journey(project, [reply], entry=PROMO_ENTRY)
    inbound = {
        "from": "4915112345678",
        "id": "wamid.IN1",
        "timestamp": str(int(timezone.now().timestamp())),
        "type": "text",
        "text": {"body": "Promo!"},
    }
    with transaction.atomic():
        handle_inbound(account, inbound, [{"wa_id": "4915112345678", "profile": {"name": "Eva"}}], [])
    assert pump() >= 1
    run = JourneyRun.objects.get()
    assert run.context["event"]["attributes"]["text"] == "Promo!"
    with transaction.atomic():
        outcome = step_type("whatsapp_text").run(visit(run, "reply", now=timezone.now()))
    assert outcome == Go("next")
    message = Message.objects.get(subscriber_id=run.subscriber_id)
    assert (
        message.body == "Danke! Dein Code: SUSHI20"
        and message.idempotency_key == f"journey:{run.public_id}:reply"
    )
