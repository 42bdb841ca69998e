"""Flow steps walked by the real engine: wait kinds, wait for event, splits, reachability, tags."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from campaigns.models import Message
from journeys import counters, engine
from journeys.definition import DefinitionError, parse
from journeys.models import JourneyRun, JourneyRunStep, RunState
from journeys.steps.flow import bucket
from subscribers.models import ConsentState, Segment
from subscribers.services import set_tags, tags_of
from tests.factories import SubscriberFactory
from tests.journeys.test_engine import T0, _event, make_journey, start

pytestmark = pytest.mark.django_db


def _walk(journey, sub, now=T0, context=None) -> JourneyRun:
    (run,) = start(journey, [sub], now=now, context=context)
    engine.tick(now=now)
    run.refresh_from_db()
    return run


def _wait(**spec):
    return [{"id": "w", "type": "wait", "next": None, **spec}]


def test_wait_until_time_is_the_next_such_time_in_the_subscribers_zone(project):
    journey = make_journey(project, _wait(until_time="09:00"))
    tokyo = SubscriberFactory(project=project, time_zone="Asia/Tokyo")  # T0 is 21:00 there
    run = _walk(journey, tokyo)
    assert run.wake_at == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # 09:00 the next day in Tokyo
    early = SubscriberFactory(project=project, time_zone="America/Los_Angeles")  # 04:00 there
    assert _walk(journey, early).wake_at == datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


def test_wait_until_time_across_a_dst_change(project):
    journey = make_journey(project, _wait(until_time="09:00"))
    berlin = SubscriberFactory(project=project, time_zone="Europe/Berlin")
    # Saturday 28 March 2026 12:00 UTC; clocks go forward on Sunday: 09:00 CEST is 07:00 UTC.
    at = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert _walk(journey, berlin, now=at).wake_at == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


def test_wait_until_a_date_in_the_past_goes_on_at_once(project):
    journey = make_journey(project, _wait(until_date="2026-01-01T00:00:00Z"))
    run = _walk(journey, SubscriberFactory(project=project))
    assert (run.state, run.exit_reason) == (RunState.DONE, "completed")
    future = make_journey(project, _wait(until_date="2026-04-01T10:00:00"))  # local: the subscriber's zone
    run = _walk(future, SubscriberFactory(project=project, time_zone="Europe/Berlin"))
    assert run.wake_at == datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


def test_wait_until_an_event_attribute_with_a_negative_offset(project):
    journey = make_journey(
        project, _wait(until_attribute={"source": "event", "name": "appointment", "offset": "-P1D"})
    )
    context = {"event": {"name": "Booked", "attributes": {"appointment": "2026-03-05T10:00:00+00:00"}}}
    run = _walk(journey, SubscriberFactory(project=project), context=context)
    assert run.wake_at == datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    missing = _walk(journey, SubscriberFactory(project=project), context={})
    assert missing.state == RunState.DONE
    assert "went on at once" in JourneyRunStep.objects.get(run=missing).detail["note"]


def test_wait_until_a_date_tag_with_an_offset(project):
    journey = make_journey(
        project, _wait(until_attribute={"source": "tag", "name": "Renewal", "offset": "PT9H"})
    )
    sub = SubscriberFactory(project=project, time_zone="Europe/Berlin")
    set_tags(project=project, subscriber=sub, tags={"renewal": "2026-03-10"})
    run = _walk(journey, sub)
    assert run.wake_at == datetime(2026, 3, 10, 8, 0, tzinfo=UTC)  # midnight Berlin + 9 h


def test_wait_event_branches_by_event_conditions_and_times_out(project):
    journey = make_journey(
        project,
        [
            {
                "id": "w",
                "type": "wait_event",
                "events": [
                    {
                        "event": "Clicked",
                        "conditions": [{"attribute": "button", "op": "eq", "value": "Yes"}],
                        "next": "a",
                    },
                    {"event": "Clicked", "next": "b"},
                ],
                "timeout": "PT2H",
                "timeout_next": "c",
            },
            {"id": "a", "type": "exit"},
            {"id": "b", "type": "exit"},
            {"id": "c", "type": "exit"},
        ],
    )
    yes, other, silent = SubscriberFactory.create_batch(3, project=project)
    runs = {s.pk: _walk(journey, s) for s in (yes, other, silent)}
    assert runs[yes.pk].wake_at == T0 + timedelta(hours=2) and runs[yes.pk].waiting_events == ["Clicked"]
    engine.wake_for_events([_event(yes, "Clicked", button="Yes"), _event(other, "Clicked", button="No")])
    engine.tick(now=T0 + timedelta(hours=2))
    paths = dict(JourneyRunStep.objects.filter(step_id="w").values_list("run__subscriber_id", "outlet"))
    assert paths == {yes.pk: "event1", other.pk: "event2", silent.pk: "timeout"}
    assert counters.read(journey.pk)[("w", "passed:timeout")] == 1


def test_wait_event_of_step_only_takes_events_about_that_steps_message(project):
    journey = make_journey(
        project,
        [
            {
                "id": "w",
                "type": "wait_event",
                "events": [{"event": "WhatsAppRead", "of_step": "w", "next": None}],
                "timeout": "P1D",
            },
        ],
    )
    sub = SubscriberFactory(project=project)
    now = timezone.now()
    run = _walk(journey, sub, now=now)
    # The step "sent" this message (a send step records it on its visit).
    message = Message.objects.create(project=project, subscriber=sub, wamid="wamid.ours")
    JourneyRunStep.objects.filter(run=run, step_id="w").update(message=message)
    engine.wake_for_events([_event(sub, "WhatsAppRead", now, message_id="wamid.other")])
    run.refresh_from_db()
    assert run.state == RunState.WAITING and run.wake_at == now + timedelta(days=1)  # the same timeout
    engine.wake_for_events([_event(sub, "WhatsAppRead", now, message_id="wamid.ours")])
    run.refresh_from_db()
    assert (run.state, run.exit_reason) == (RunState.DONE, "completed")


def test_segment_split_by_rule_and_by_segment(project):
    set_tags(project=project, subscriber=(vip := SubscriberFactory(project=project)), tags={"tier": "gold"})
    set_tags(project=project, subscriber=(plain := SubscriberFactory(project=project)), tags={"tier": "tin"})
    rule = {"type": "tag", "tag": "tier", "op": "eq", "value": "gold"}
    segment = Segment.objects.create(project=project, name="Gold", rule=rule)
    for where in ({"rule": rule}, {"segment": str(segment.public_id)}):
        journey = make_journey(
            project, [{"id": "s", "type": "segment_split", "yes": None, "no": None, **where}]
        )
        outlets = {sub.pk: JourneyRunStep.objects.get(run=_walk(journey, sub)).outlet for sub in (vip, plain)}
        assert outlets == {vip.pk: "yes", plain.pk: "no"}


def test_reachability_needs_a_number_and_no_opt_out(project):
    journey = make_journey(
        project, [{"id": "r", "type": "reachability", "channel": "whatsapp", "yes": None, "no": None}]
    )
    cases = {
        SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_IN): "yes",
        SubscriberFactory(project=project, whatsapp_consent=ConsentState.UNKNOWN): "yes",
        SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_OUT): "no",
        SubscriberFactory(project=project, phone=None, bsuid="US.123"): "no",
    }
    for sub, expected in cases.items():
        assert JourneyRunStep.objects.get(run=_walk(journey, sub)).outlet == expected


def test_ab_split_is_sticky_and_follows_the_percents(project):
    variants = [{"name": "A", "percent": 20, "next": None}, {"name": "B", "percent": 80, "next": None}]
    journey = make_journey(
        project, [{"id": "ab", "type": "ab_split", "variants": variants}], reentry="any_time"
    )
    sub = SubscriberFactory(project=project)
    first = JourneyRunStep.objects.get(run=_walk(journey, sub)).outlet
    again = _walk(journey, sub, now=T0 + timedelta(minutes=1))
    assert JourneyRunStep.objects.get(run=again).outlet == first
    assert first == ("A" if bucket(journey.public_id, sub.pk) < 20 else "B")
    shares = Counter("A" if bucket(journey.public_id, n) < 20 else "B" for n in range(5000))
    assert 900 < shares["A"] < 1100


def test_update_tags_from_the_entry_event_through_set_tags(project):
    journey = make_journey(
        project,
        [
            {
                "id": "t",
                "type": "update_tags",
                "set": {
                    "cuisine": {"event_attribute": "cuisine"},
                    "source": "journey",
                    "coupon": {"event_attribute": "x"},
                },
                "remove": ["old"],
                "next": None,
            }
        ],
    )
    sub = SubscriberFactory(project=project)
    set_tags(project=project, subscriber=sub, tags={"old": "yes"})
    run = _walk(journey, sub, context={"event": {"name": "OrderPlaced", "attributes": {"cuisine": "asian"}}})
    tags = tags_of(sub)
    assert (tags["cuisine"], tags["source"], tags.get("old")) == ("asian", "journey", None)
    detail = JourneyRunStep.objects.get(run=run).detail
    assert detail["missing"] == ["coupon"] and detail["changed"] is True


def test_step_checks_name_the_step_and_field():
    data = {
        "name": "x",
        "entry": {"type": "api"},
        "steps": [
            {"id": "w", "type": "wait", "duration": "PT1H", "until_time": "09:00"},
            {"id": "t", "type": "wait", "until_time": "25:00"},
            {"id": "e", "type": "wait_event", "events": [], "timeout": "soon"},
            {
                "id": "ab",
                "type": "ab_split",
                "variants": [{"name": "A", "percent": 50}, {"name": "B", "percent": 40}],
            },
            {"id": "r", "type": "reachability", "channel": "pigeon"},
            {"id": "s", "type": "segment_split"},
            {"id": "u", "type": "update_tags", "set": {"ok": {"oops": 1}}},
        ],
    }
    with pytest.raises(DefinitionError) as caught:
        parse(data)
    fields = {(p.step, p.field) for p in caught.value.problems}
    assert {
        ("w", "duration"),
        ("t", "until_time"),
        ("e", "events"),
        ("e", "timeout"),
        ("ab", "variants"),
        ("r", "channel"),
        ("s", "segment"),
        ("u", "set.ok"),
    } <= fields


def test_an_event_that_happened_after_the_timeout_takes_the_timeout(project):
    journey = make_journey(
        project,
        [{"id": "w", "type": "wait_event", "events": [{"event": "A", "next": None}], "timeout": "PT1H"}],
    )
    sub = SubscriberFactory(project=project)
    run = _walk(journey, sub)
    engine.wake_for_events([_event(sub, "A", T0 + timedelta(hours=2))])
    run.refresh_from_db()
    assert JourneyRunStep.objects.get(run=run).outlet == "timeout"


def test_local_time_rules():
    from datetime import time

    from journeys import timezones

    berlin = timezones.zone("Europe/Berlin")
    assert timezones.zone("Not/AZone", "Asia/Tokyo").key == "Asia/Tokyo"
    assert timezones.zone("", "nonsense").key == "UTC"
    # Silent 21:00-08:00 spans midnight; 20:59 Berlin is outside, 23:00 inside until 08:00.
    assert timezones.silent_until(datetime(2026, 1, 5, 19, 59, tzinfo=UTC), time(21), time(8), berlin) is None
    assert timezones.silent_until(
        datetime(2026, 1, 5, 22, 0, tzinfo=UTC), time(21), time(8), berlin
    ) == datetime(2026, 1, 6, 7, 0, tzinfo=UTC)
    assert (
        timezones.silent_until(datetime(2026, 1, 5, 10, 30, tzinfo=UTC), time(12), time(14), berlin) is None
    )
    assert timezones.silent_until(
        datetime(2026, 1, 5, 11, 30, tzinfo=UTC), time(12), time(14), berlin
    ) == datetime(2026, 1, 5, 13, 0, tzinfo=UTC)
    # 02:30 does not exist in Berlin on 29 March 2026: it is taken as 03:30 CEST (01:30 UTC).
    assert timezones.at_local(datetime(2026, 3, 29).date(), time(2, 30), berlin) == datetime(
        2026, 3, 29, 1, 30, tzinfo=UTC
    )
    assert timezones.parse_instant("2026-05-01", berlin) == datetime(2026, 4, 30, 22, 0, tzinfo=UTC)
    assert timezones.parse_instant("2026-05-01T10:00:00Z", berlin) == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert timezones.parse_instant("soon", berlin) is None
