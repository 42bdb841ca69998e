"""Omnichannel: chained reachability, silent hours per channel, the documented fallback flow."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from campaigns import channel_events
from campaigns.models import Channel, Message
from journeys import consumer, engine
from journeys.definition import DefinitionError, parse
from journeys.models import JourneyRunStep, RunState
from journeys.steps import Go
from journeys.steps import get as step_type
from mail.models import EmailTemplate
from push.models import PushTemplate
from subscribers.models import ConsentState, Device
from tests.factories import SubscriberFactory
from tests.journeys.helpers import make_journey, make_run, visit

pytestmark = pytest.mark.django_db

CHAIN = {
    "id": "reach",
    "type": "reachability",
    "channels": ["push", "email", "whatsapp"],
    "push": "p",
    "email": "e",
    "whatsapp": "w",
    "none": "n",
}
EXITS = [{"id": name, "type": "exit"} for name in ("p", "e", "w", "n")]


def _subscriber(project, *, device=False, **fields):
    # Known by a business-scoped user id unless a phone is given: no number, no WhatsApp.
    sub = SubscriberFactory(
        project=project, **{"email": "", "phone": None, "bsuid": f"US.{uuid.uuid4()}", **fields}
    )
    if device:
        Device.objects.create(project=project, subscriber=sub, token=f"t-{sub.pk}", platform="web")
    return sub


@pytest.mark.parametrize(
    ("who", "outlet"),
    [
        ({"device": True, "email": "a@example.com", "phone": "4915111111111"}, "push"),
        ({"device": True, "push_consent": ConsentState.OPTED_OUT, "email": "a@example.com"}, "email"),
        (
            {
                "email": "a@example.com",
                "email_undeliverable_at": datetime(2026, 1, 1, tzinfo=UTC),
                "phone": "4915111",
            },
            "whatsapp",
        ),
        ({"email": "a@example.com", "email_consent": ConsentState.OPTED_OUT}, "none"),
        ({}, "none"),
    ],
)
def test_chained_reachability_leaves_by_the_first_reachable_channel(project, who, outlet):
    now = timezone.now()
    journey = make_journey(project, [CHAIN, *EXITS])
    v = visit(make_run(journey, _subscriber(project, **who), now=now), "reach", now=now)
    assert step_type("reachability").run(v) == Go(outlet)


def test_the_order_decides_and_the_single_channel_form_still_works(project):
    now = timezone.now()
    sub = _subscriber(project, device=True, email="a@example.com")
    journey = make_journey(
        project,
        [
            {
                "id": "reach",
                "type": "reachability",
                "channels": ["email", "push"],
                "email": "single",
                "push": "p",
            },
            {"id": "single", "type": "reachability", "channel": "email", "yes": "p", "no": "n"},
            *EXITS[::3],
        ],
    )
    run = make_run(journey, sub, now=now)
    assert step_type("reachability").run(visit(run, "reach", now=now)) == Go("email")
    assert step_type("reachability").run(visit(run, "single", now=now)) == Go("yes")
    assert step_type("reachability").outlets(CHAIN) == {
        "push": "p",
        "email": "e",
        "whatsapp": "w",
        "none": "n",
    }


def _problems(steps, **settings):
    with pytest.raises(DefinitionError) as err:
        parse({"name": "J", "entry": {"type": "api"}, "settings": settings, "steps": steps})
    return {(p.step, p.field): p.message for p in err.value.problems}


def test_a_bad_reachability_or_silent_hours_channel_is_named_with_its_step_and_field():
    problems = _problems(
        [
            {**CHAIN, "channels": ["push", "fax", "push"]},
            {"id": "both", "type": "reachability", "channel": "email", "channels": ["email"], "none": "n"},
            {"id": "empty", "type": "reachability", "channels": [], "none": "n"},
            *EXITS,
        ],
        silent_hours={"start": "21:00", "end": "08:00", "channels": ["email", "sms"]},
    )
    assert {key: message for key, message in problems.items() if key[1] != "id"} == {
        ("reach", "channels[1]"): "One of email, push, whatsapp.",
        ("reach", "channels[2]"): "push is listed twice.",
        ("both", "channel"): "Give either one channel (yes/no) or a list of channels.",
        ("empty", "channels"): "List the channels to try in order (email, push, whatsapp).",
        (None, "settings.silent_hours.channels[1]"): "One of whatsapp, email, push.",
    }


def test_an_outlet_of_the_chain_must_name_an_existing_step():
    problems = _problems([{**CHAIN, "email": "nowhere"}, *EXITS])
    assert problems == {("reach", "outlets.email"): "There is no step 'nowhere'."}


def test_silent_hours_hold_only_the_channels_they_name(project):
    EmailTemplate.objects.create(
        project=project, name="mail", subject="Hi", html="<p>Hi</p>", marketing=False
    )
    PushTemplate.objects.create(project=project, name="push", title="Hi", body="there", marketing=False)
    journey = make_journey(
        project,
        [
            {"id": "push", "type": "send_push", "template": "push", "next": "mail"},
            {"id": "mail", "type": "send_email", "template": "mail"},
        ],
        silent_hours={"start": "21:00", "end": "08:00", "channels": ["email"]},
        fallback_time_zone="UTC",
    )
    sub = _subscriber(project, device=True, email="a@example.com")
    night = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    run = make_run(journey, sub, now=night)
    engine.tick(now=night)
    run.refresh_from_db()
    # The push went at night; the email waits for 08:00 without having been entered.
    assert list(Message.objects.values_list("channel", flat=True)) == [Channel.PUSH]
    assert (run.state, run.step_id, run.wake_at) == (
        RunState.WAITING,
        "mail",
        datetime(2026, 3, 3, 8, 0, tzinfo=UTC),
    )
    assert not JourneyRunStep.objects.filter(run=run, step_id="mail").exists()
    engine.tick(now=run.wake_at)
    assert sorted(Message.objects.values_list("channel", flat=True)) == [Channel.EMAIL, Channel.PUSH]


def test_without_channels_silent_hours_hold_every_send_step(project):
    PushTemplate.objects.create(project=project, name="push", title="Hi", body="there", marketing=False)
    journey = make_journey(
        project,
        [{"id": "push", "type": "send_push", "template": "push"}],
        silent_hours={"start": "21:00", "end": "08:00"},
    )
    night = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    run = make_run(journey, _subscriber(project, device=True), now=night)
    engine.tick(now=night)
    run.refresh_from_db()
    assert run.state == RunState.WAITING and not Message.objects.exists()


def _opened(step_id: str, event: str, *, of_step: str, timeout: str, otherwise: str) -> dict:
    """Wait for the open of ``of_step``'s message (the run leaves), else go on to ``otherwise``."""
    events = [{"event": event, "of_step": of_step, "next": None}]
    return {
        "id": step_id,
        "type": "wait_event",
        "events": events,
        "timeout": timeout,
        "timeout_next": otherwise,
    }


def test_the_omnichannel_flow_falls_back_from_push_to_email_to_whatsapp(project):
    """Push, wait 1 h for PushOpened; unopened: email, wait 1 d for EmailOpened; the email opened:
    the run leaves without the WhatsApp message."""
    PushTemplate.objects.create(project=project, name="push", title="Hi", body="there")
    EmailTemplate.objects.create(
        project=project, name="mail", subject="Hi", html="<p>Hi {{ unsubscribe_url }}</p>"
    )
    steps = [
        {**CHAIN, "push": "push", "email": "mail", "whatsapp": "whatsapp", "none": None},
        {"id": "push", "type": "send_push", "template": "push", "next": "wait_push"},
        _opened("wait_push", "PushOpened", of_step="push", timeout="PT1H", otherwise="mail"),
        {"id": "mail", "type": "send_email", "template": "mail", "next": "wait_mail"},
        _opened("wait_mail", "EmailOpened", of_step="mail", timeout="P1D", otherwise="whatsapp"),
        {"id": "whatsapp", "type": "exit"},
    ]
    journey = make_journey(project, steps)
    sub = _subscriber(project, device=True, email="a@example.com", email_consent=ConsentState.OPTED_IN)
    t0 = timezone.now()
    run = make_run(journey, sub, now=t0)
    engine.tick(now=t0)
    engine.tick(now=t0 + timedelta(hours=1, seconds=1))  # push not opened: email
    email = Message.objects.get(channel=Channel.EMAIL)
    event = channel_events.record(email, channel_events.OPENED)
    consumer.handle([event])
    run.refresh_from_db()
    assert (run.state, run.exit_reason) == (RunState.DONE, "completed")
    visited = set(JourneyRunStep.objects.filter(run=run).values_list("step_id", flat=True))
    assert visited == {"reach", "push", "wait_push", "mail", "wait_mail"}
