"""Email and push steps: one row per run and step, refusals, counters from events, of_step waits."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import channel_events, channel_policy
from campaigns.models import Channel, Message, SendingPolicy
from campaigns.sendpolicy import CAPPED
from journeys import consumer, counters, dryrun, engine
from journeys.definition import DefinitionError, parse
from journeys.models import JourneyRunStep
from journeys.stats import journey_stats
from journeys.steps import Go, Wait
from journeys.steps import get as step_type
from mail.models import EmailTemplate
from push.models import PushTemplate
from subscribers.models import ConsentState, Device, Event
from tests.factories import SubscriberFactory
from tests.journeys.helpers import make_journey, make_run, visit

pytestmark = pytest.mark.django_db

ENTRY_EVENT = {"id": 7, "name": "CartAbandoned", "attributes": {"item": "sushi box"}}


@pytest.fixture
def email_template(project):
    return EmailTemplate.objects.create(
        project=project,
        name="cart_reminder",
        subject="{{ subscriber.name }}, your {{ event.item }} is waiting",
        text="Come back for your {{ event.item }}.",
    )


@pytest.fixture
def push_template(project):
    return PushTemplate.objects.create(
        project=project,
        name="cart_push",
        title="Still hungry, {{ subscriber.name }}?",
        body="{{ event.item }}",
    )


def _reachable(project, **kw):
    sub = SubscriberFactory(
        project=project, name="Anna", email="anna@example.com", email_consent=ConsentState.OPTED_IN, **kw
    )
    Device.objects.create(project=project, subscriber=sub, token=f"tok-{sub.pk}", platform="android")
    return sub


CHANNELS = {
    # step type -> (template fixture, channel, what the row's content says)
    "send_email": ("email_template", Channel.EMAIL, ("subject", "Anna, your sushi box is waiting")),
    "send_push": ("push_template", Channel.PUSH, ("title", "Still hungry, Anna?")),
}


@pytest.mark.parametrize("kind", CHANNELS)
def test_a_channel_step_queues_one_row_per_run_and_step_under_retries(project, request, kind):
    fixture, channel, (part, rendered) = CHANNELS[kind]
    template = request.getfixturevalue(fixture)
    now = timezone.now()
    sub = _reachable(project)
    journey = make_journey(project, [{"id": "send", "type": kind, "template": template.name, "next": None}])
    run = make_run(journey, sub, now=now, context={"event": ENTRY_EVENT})
    v = visit(run, "send", now=now)
    assert step_type(kind).run(v) == Go("next")
    message = Message.objects.get()
    assert (message.channel, message.status) == (channel, "queued")
    assert message.idempotency_key == f"journey:{run.public_id}:send"
    assert message.content[part] == rendered
    assert message.content["origin"] == {"journey": str(journey.public_id), "step": "send"}
    assert v.record.message_id == message.pk and v.stats == {("send", "sent"): 1}

    again = visit(run, "send", now=now)  # a retry after the send committed
    assert step_type(kind).run(again) == Go("next") and again.stats == {}
    again.record.detail = {}  # a visit row that lost its detail adopts the row the key finds
    again.record.save()
    third = visit(run, "send", now=now)
    assert step_type(kind).run(third) == Go("next")
    assert Message.objects.count() == 1 and third.record.message_id == message.pk
    assert third.stats == {} and third.record.detail["outcome"] == "sent"


def test_the_template_is_found_by_public_id_too(project, email_template):
    now = timezone.now()
    journey = make_journey(
        project, [{"id": "mail", "type": "send_email", "template": str(email_template.public_id)}]
    )
    v = visit(make_run(journey, _reachable(project), now=now), "mail", now=now)
    step_type("send_email").run(v)
    assert v.record.detail["template"] == "cart_reminder" and v.record.detail["outcome"] == "sent"


@pytest.mark.parametrize(
    ("kind", "subscriber", "reason"),
    [
        ("send_email", {"email": ""}, channel_policy.NO_EMAIL),
        ("send_email", {"email_consent": ConsentState.OPTED_OUT}, channel_policy.EMAIL_OPTED_OUT),
        ("send_email", {"email_consent": ConsentState.UNKNOWN}, channel_policy.EMAIL_NO_OPT_IN),
        ("send_email", {"email_undeliverable_at": timezone.now()}, channel_policy.EMAIL_UNDELIVERABLE),
        ("send_push", {"push_consent": ConsentState.OPTED_OUT}, channel_policy.PUSH_OPTED_OUT),
        ("send_push", {"devices": 0}, channel_policy.NO_DEVICE),
    ],
)
def test_a_refusal_is_skipped_with_its_reason_and_the_run_goes_on(project, request, kind, subscriber, reason):
    template = request.getfixturevalue(CHANNELS[kind][0])
    now = timezone.now()
    fields = {
        "name": "Anna",
        "email": "anna@example.com",
        "email_consent": ConsentState.OPTED_IN,
        **subscriber,
    }
    devices = fields.pop("devices", 1)
    sub = SubscriberFactory(project=project, **fields)
    for i in range(devices):
        Device.objects.create(project=project, subscriber=sub, token=f"t{i}", platform="ios")
    journey = make_journey(
        project, [{"id": "s", "type": kind, "template": template.name, "next": "end"}, END]
    )
    v = visit(make_run(journey, sub, now=now, context={"event": ENTRY_EVENT}), "s", now=now)
    assert step_type(kind).run(v) == Go("next")
    assert not Message.objects.exists()
    assert v.record.detail == {"template": template.name, "outcome": "skipped", "reason": reason}
    assert v.stats == {("s", "skipped"): 1}


END = {"id": "end", "type": "exit"}


def test_a_removed_device_does_not_reach_push(project, push_template):
    now = timezone.now()
    sub = _reachable(project)
    Device.objects.filter(subscriber=sub).update(removed_at=now)
    journey = make_journey(project, [{"id": "s", "type": "send_push", "template": "cart_push"}])
    v = visit(make_run(journey, sub, now=now), "s", now=now)
    step_type("send_push").run(v)
    assert v.record.detail["reason"] == channel_policy.NO_DEVICE


def test_a_deleted_template_and_a_render_failure_are_skips(project, email_template):
    now = timezone.now()
    sub = _reachable(project)
    journey = make_journey(
        project,
        [
            {"id": "gone", "type": "send_email", "template": "no_such_template", "next": "empty"},
            {"id": "empty", "type": "send_email", "template": "cart_reminder"},
        ],
    )
    run = make_run(journey, sub, now=now)  # no entry event: the subject still renders
    v = visit(run, "gone", now=now)
    step_type("send_email").run(v)
    assert v.record.detail == {
        "outcome": "skipped",
        "reason": "The email template 'no_such_template' does not exist in this project.",
    }
    EmailTemplate.objects.update(subject="{{ event.item }}")
    v = visit(run, "empty", now=now)
    step_type("send_email").run(v)
    assert v.record.detail["reason"] == "The subject is empty for this subscriber."
    assert not Message.objects.exists()


def test_marketing_email_respects_the_one_frequency_cap_across_channels(project, email_template):
    now = timezone.now()
    sub = _reachable(project)
    SendingPolicy.objects.create(project=project, cap_messages=1, cap_days=7)
    Message.objects.create(  # a WhatsApp campaign message this week
        project=project, subscriber=sub, marketing=True, status="delivered", sent_at=now - timedelta(days=1)
    )
    journey = make_journey(project, [{"id": "s", "type": "send_email", "template": "cart_reminder"}])
    v = visit(make_run(journey, sub, now=now), "s", now=now)
    step_type("send_email").run(v)
    assert v.record.detail["reason"] == CAPPED and Message.objects.count() == 1


def test_a_dry_run_records_what_it_would_send_and_writes_no_message(project, email_template, push_template):
    sub = _reachable(project)
    unreachable = SubscriberFactory(project=project, email="")
    journey = make_journey(
        project,
        [
            {"id": "push", "type": "send_push", "template": "cart_push", "next": "mail"},
            {"id": "mail", "type": "send_email", "template": "cart_reminder"},
        ],
    )
    run = dryrun.start(
        journey=journey, subscriber=sub, event={"name": "CartAbandoned", "attributes": {"item": "ramen"}}
    )
    details = {v.step_id: v.detail for v in dryrun.timeline(run)}
    assert details["push"] == {
        "template": "cart_push",
        "outcome": "would_send",
        "title": "Still hungry, Anna?",
        "body": "ramen",
        "link": "",
    }
    assert details["mail"]["outcome"] == "would_send"
    assert details["mail"]["subject"] == "Anna, your ramen is waiting"
    other = dryrun.start(journey=journey, subscriber=unreachable)
    details = {v.step_id: v.detail for v in dryrun.timeline(other)}
    assert details["push"]["reason"] == channel_policy.NO_DEVICE
    assert details["mail"]["reason"] == channel_policy.NO_EMAIL
    assert not Message.objects.exists()
    assert counters.read(journey.pk) == {}


# --- check ---------------------------------------------------------------------------------------


def _problems(project, steps, *, strict=False, **settings):
    definition = {"name": "J", "entry": {"type": "api"}, "settings": settings, "steps": steps}
    with pytest.raises(DefinitionError) as err:
        parse(definition, project=project, strict=strict)
    return {(p.step, p.field): p.message for p in err.value.problems}


def test_check_names_the_step_and_field_of_a_missing_or_broken_template(
    project, email_template, push_template
):
    problems = _problems(
        project,
        [
            {"id": "a", "type": "send_email", "next": "b"},
            {"id": "b", "type": "send_push", "template": "nope", "next": "c"},
            {"id": "c", "type": "send_email", "template": "cart_reminder"},
        ],
    )
    assert problems == {
        ("a", "template"): "Choose an email template.",
        ("b", "template"): "There is no push template 'nope' in this project.",
    }
    EmailTemplate.objects.update(subject="{% if %}")
    strict = _problems(project, [{"id": "c", "type": "send_email", "template": "cart_reminder"}], strict=True)
    assert list(strict) == [("c", "template")]
    assert strict[("c", "template")].startswith(
        "cart_reminder does not render: The subject is not valid Liquid"
    )
    # A draft is not rendered: it may be saved while the template is being fixed.
    parse(
        {
            "name": "J",
            "entry": {"type": "api"},
            "steps": [{"id": "c", "type": "send_email", "template": "cart_reminder"}],
        },
        project=project,
    )


# --- counters from events ------------------------------------------------------------------------


def _messages(counts):
    return {key: n for key, n in counts.items() if key[1] in ("sent", "delivered", "opened", "clicked")}


def _sent(project, kind, template, sub, step="send"):
    now = timezone.now()
    journey = make_journey(project, [{"id": step, "type": kind, "template": template.name}])
    run = make_run(journey, sub, now=now)
    engine.tick(now=now)  # the engine counts what the step did
    return journey, run, Message.objects.get(idempotency_key=f"journey:{run.public_id}:{step}")


def test_email_events_count_on_the_step_once_per_message_and_key(project, email_template):
    journey, _, message = _sent(project, "send_email", email_template, _reachable(project))
    opened = channel_events.record(message, channel_events.OPENED)
    clicked = channel_events.record(
        message, channel_events.CLICKED, attributes={"url": "https://a.example"}, dedup="a"
    )
    second_click = channel_events.record(
        message, channel_events.CLICKED, attributes={"url": "https://b.example"}, dedup="b"
    )
    consumer.handle([opened, clicked])
    consumer.handle([opened, second_click])  # replayed and a second click of another link
    assert _messages(counters.read(journey.pk)) == {
        ("send", "sent"): 1,
        ("send", "delivered"): 1,
        ("send", "opened"): 1,
        ("send", "clicked"): 1,
    }
    bounced = channel_events.record(message, channel_events.BOUNCED, attributes={"bounce": "hard"})
    consumer.handle([bounced, bounced])
    counts = counters.read(journey.pk)
    assert (counts[("send", "bounced")], counts[("send", "failed")]) == (1, 1)


def test_push_opened_counts_on_the_push_step_and_other_messages_count_nothing(project, push_template):
    sub = _reachable(project)
    journey, _, message = _sent(project, "send_push", push_template, sub)
    stranger = Message.objects.create(project=project, subscriber=sub, channel=Channel.PUSH, content={})
    consumer.handle([channel_events.record(stranger, channel_events.OPENED)])
    assert ("send", "opened") not in counters.read(journey.pk)
    consumer.handle([channel_events.record(message, channel_events.OPENED)])
    consumer.handle([channel_events.record(message, channel_events.OPENED)])  # the same event again
    assert counters.read(journey.pk)[("send", "opened")] == 1
    assert JourneyRunStep.objects.get(step_id="send").detail["counted"] == ["delivered", "opened"]


def test_an_event_naming_no_message_of_ours_counts_nothing(project, email_template):
    sub = _reachable(project)
    journey, _, _ = _sent(project, "send_email", email_template, sub)
    before = counters.read(journey.pk)
    hostile = [
        Event.objects.create(
            project=project,
            subscriber=sub,
            name="EmailOpened",
            attributes=attributes,
            occurred_at=timezone.now(),
        )
        for attributes in ({"message": "not-a-uuid"}, {"message": str(uuid.uuid4())}, {"message": ""}, {})
    ]
    consumer.handle(hostile)
    assert counters.read(journey.pk) == before


def test_the_stats_show_the_channels_counters(project, email_template, push_template):
    sub = _reachable(project)
    journey, _, message = _sent(project, "send_email", email_template, sub)
    consumer.handle([channel_events.record(message, channel_events.OPENED)])
    stats = journey_stats(journey)
    (email,) = stats["channels"]
    assert (email["channel"], email["label"], email["sent"], email["opened"]) == ("email", "Email", 1, 1)
    assert email["open_rate"] == 100.0
    (step,) = stats["steps"]
    assert (step["channel"], step["opened"], step["bounced"]) == ("email", 1, 0)
    assert [(c["label"], c["n"]) for c in step["counters"]] == [
        ("sent", 1),
        ("opened", 1),
        ("clicked", 0),
        ("bounced", 0),
    ]


# --- wait_event of_step --------------------------------------------------------------------------


def test_wait_event_of_step_matches_only_this_runs_message(project, email_template):
    now = timezone.now()
    sub = _reachable(project)
    journey = make_journey(
        project,
        [
            {"id": "mail", "type": "send_email", "template": "cart_reminder", "next": "wait"},
            {
                "id": "wait",
                "type": "wait_event",
                "events": [{"event": "EmailOpened", "of_step": "mail", "next": "end"}],
                "timeout": "P1D",
                "timeout_next": None,
            },
            END,
        ],
    )
    run = make_run(journey, sub, now=now)
    step_type("send_email").run(visit(run, "mail", now=now))
    message = Message.objects.get()

    def woken(**attributes):
        event = {"id": 1, "name": "EmailOpened", "attributes": attributes, "occurred_at": now.isoformat()}
        return step_type("wait_event").run(visit(run, "wait", now=now, event=event))

    waiting = Wait(now + timedelta(days=1), ("EmailOpened",))
    assert (
        woken(message="5f0c3bd4-51bb-4c53-9a5c-1f1b1e0ad1b3", journey=str(journey.public_id), step="mail")
        == waiting
    )
    assert woken(journey=str(journey.public_id), step="other") == waiting
    assert woken(message=str(message.public_id)) == Go("event1")
    assert woken(journey=str(journey.public_id), step="mail") == Go("event1")


def test_wait_event_of_a_step_that_sent_nothing_never_matches(project, email_template):
    now = timezone.now()
    sub = SubscriberFactory(project=project, email="")
    journey = make_journey(
        project,
        [
            {"id": "mail", "type": "send_email", "template": "cart_reminder", "next": "wait"},
            {
                "id": "wait",
                "type": "wait_event",
                "events": [{"event": "EmailOpened", "of_step": "mail"}],
                "timeout": "PT1H",
            },
        ],
    )
    run = make_run(journey, sub, now=now)
    step_type("send_email").run(visit(run, "mail", now=now))
    event = {
        "id": 1,
        "name": "EmailOpened",
        "attributes": {"journey": str(journey.public_id), "step": "mail"},
    }
    assert isinstance(step_type("wait_event").run(visit(run, "wait", now=now, event=event)), Wait)
