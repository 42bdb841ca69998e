"""Segment entries: when they fire (once, at a time, at a local time, recurring) and who enters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from journeys import counters, segment_entry
from journeys.definition import Entry
from journeys.models import Journey, JourneyRun, JourneyStatus, JourneyVersion, RunState
from journeys.segment_entry import EARLIEST, fire_due, next_firing, schedule
from subscribers.models import Segment
from subscribers.services import record_event
from tests.factories import ProjectFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
GERMANS = {"type": "field", "field": "country", "op": "eq", "value": "DE"}
ASIAN_ORDERS = {
    "type": "event",
    "event": "OrderPlaced",
    "op": "gte",
    "count": 1,
    "window": None,
    "where": [{"attribute": "cuisine", "op": "eq", "value": "asian"}],
}


def seg(**schedule) -> Entry:
    return Entry("segment", {"type": "segment", "rule": GERMANS, "schedule": schedule})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ---- next_firing ---------------------------------------------------------------------------------


def test_once_now_fires_at_activation_and_never_again():
    activated = at("2026-12-07T10:00:00+00:00")
    assert next_firing(seg(), activated) == activated
    assert next_firing(seg(), activated, last=activated) is None


def test_once_at_a_moment_in_the_journeys_zone_unless_it_has_an_offset():
    after = at("2026-12-01T00:00:00+00:00")
    assert next_firing(seg(at="2026-12-24T09:00"), after, zone=BERLIN) == at("2026-12-24T08:00:00+00:00")
    assert next_firing(seg(at="2026-12-24T09:00:00+05:00"), after, zone=BERLIN) == at(
        "2026-12-24T04:00:00+00:00"
    )
    # Already fired (e.g. paused and resumed after it): not again.
    fired = at("2026-12-24T08:00:00+00:00")
    assert next_firing(seg(at="2026-12-24T09:00"), after, last=fired, zone=BERLIN) is None


def test_once_at_a_local_time_fires_when_the_earliest_zone_reaches_it():
    after = at("2026-12-07T10:00:00+00:00")
    firing = next_firing(seg(local_time="09:00", at="2026-12-24"), after)
    assert firing == datetime(2026, 12, 24, 9, 0, tzinfo=EARLIEST) == at("2026-12-23T19:00:00+00:00")
    # No day: the next day on which 09:00 is still ahead everywhere (10:00 UTC is 00:00 at UTC+14,
    # so that is the 8th: 19:00 UTC on the 7th, before 09:00 on the 8th anywhere west of UTC+14).
    assert next_firing(seg(local_time="09:00"), after) == at("2026-12-07T19:00:00+00:00")
    assert next_firing(seg(local_time="9 o'clock"), after) is None


def test_recurring_keeps_its_cadence_and_skips_what_was_missed():
    entry = seg(every="P2W", time="09:00", at="2026-12-07")
    activated = at("2026-12-01T12:00:00+00:00")
    first = next_firing(entry, activated, zone=BERLIN)
    assert first == at("2026-12-07T08:00:00+00:00")
    assert next_firing(entry, first, last=first, zone=BERLIN) == at("2026-12-21T08:00:00+00:00")
    # Paused for five weeks: the next firing is the first of the cadence still ahead.
    resumed = at("2027-01-13T12:00:00+00:00")
    assert next_firing(entry, resumed, last=first, zone=BERLIN) == at("2027-01-18T08:00:00+00:00")
    # Daily without a start: the next 09:00, then every day (summer time moves the UTC hour).
    daily = seg(every="P1D", time="09:00")
    assert next_firing(daily, at("2027-03-27T09:30:00+01:00"), zone=BERLIN) == at("2027-03-28T07:00:00+00:00")


def test_a_schedule_that_cannot_be_read_never_fires():
    after = at("2026-12-07T10:00:00+00:00")
    assert next_firing(seg(every="PT6H", time="09:00"), after) is None  # whole days only
    assert next_firing(seg(every="often"), after) is None
    assert next_firing(seg(at="tomorrow"), after) is None
    assert next_firing(Entry("api", {"type": "api"}), after) is None


# ---- firing --------------------------------------------------------------------------------------


def _journey(project, *entries, reentry="after_exit", **settings) -> Journey:
    definition = {
        "name": "Sushi",
        "entries": list(entries),
        "settings": {"reentry": reentry, **settings},
        "steps": [{"id": "promo", "type": "exit"}],
    }
    now = timezone.now()
    journey = Journey.objects.create(
        project=project,
        name="Sushi",
        definition=definition,
        status=JourneyStatus.ACTIVE,
        version=1,
        activated_at=now,
    )
    JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=definition)
    schedule(journey, now=now)
    return journey


def _entered(journey) -> set[int]:
    return set(JourneyRun.objects.filter(journey=journey).values_list("subscriber_id", flat=True))


def test_sushi_example_subscribers_with_an_asian_order_enter_and_the_others_do_not(project):
    asian, italian, _nothing = SubscriberFactory.create_batch(3, project=project)
    record_event(project=project, subscriber=asian, name="OrderPlaced", attributes={"cuisine": "asian"})
    record_event(project=project, subscriber=italian, name="OrderPlaced", attributes={"cuisine": "italian"})
    segment = Segment.objects.create(project=project, name="Asian food", rule=ASIAN_ORDERS)
    journey = _journey(project, {"type": "segment", "segment": str(segment.public_id)})
    assert journey.next_entry_at == journey.activated_at  # once, now
    assert fire_due(now=timezone.now()) == 1
    assert _entered(journey) == {asian.pk}
    run = JourneyRun.objects.get(journey=journey)
    assert run.state == RunState.READY and run.step_id == "promo"
    journey.refresh_from_db()
    firing = journey.last_entry_at.astimezone(UTC)
    assert run.entry_key == f"segment:{firing:%Y%m%dT%H%M%SZ}:{asian.pk}"
    assert journey.last_entry_at is not None and journey.next_entry_at is None
    assert counters.read(journey.pk)[("", "entered")] == 1
    assert fire_due(now=timezone.now() + timedelta(days=1)) == 0  # once means once


def test_a_firing_run_again_after_a_crash_enters_nobody_twice(project):
    germans = SubscriberFactory.create_batch(3, project=project, country="DE")
    SubscriberFactory(project=project, country="AT")
    SubscriberFactory(project=ProjectFactory(), country="DE")  # another project
    journey = _journey(project, {"type": "segment", "rule": GERMANS}, reentry="any_time")
    firing = journey.next_entry_at
    assert fire_due(now=firing) == 3
    # The same firing claimed again (its commit was lost, or two workers): same entry keys.
    Journey.objects.filter(pk=journey.pk).update(next_entry_at=firing, last_entry_at=None)
    assert fire_due(now=firing) == 0
    assert _entered(journey) == {s.pk for s in germans}
    assert JourneyRun.objects.filter(journey=journey).count() == 3


def test_a_subscriber_in_two_segment_entries_of_one_firing_enters_once(project):
    both = SubscriberFactory(project=project, country="DE", language="de")
    journey = _journey(
        project,
        {"type": "segment", "rule": GERMANS},
        {"type": "segment", "rule": {"type": "field", "field": "language", "op": "eq", "value": "de"}},
        reentry="any_time",
    )
    assert fire_due(now=journey.next_entry_at) == 1
    assert _entered(journey) == {both.pk}


def test_recurring_entry_reenters_those_who_finished_and_holds_those_still_in(project):
    still_in, finished = SubscriberFactory.create_batch(2, project=project, country="DE")
    entry = {"type": "segment", "rule": GERMANS, "schedule": {"every": "P1D", "time": "09:00"}}
    journey = _journey(project, entry, fallback_time_zone="Europe/Berlin")
    first = journey.next_entry_at
    assert first.astimezone(BERLIN).hour == 9
    assert fire_due(now=first - timedelta(seconds=1)) == 0  # not yet
    assert fire_due(now=first) == 2
    journey.refresh_from_db()
    assert journey.last_entry_at == first and journey.next_entry_at == first + timedelta(days=1)
    JourneyRun.objects.filter(journey=journey, subscriber=finished).update(
        state=RunState.DONE, exclusive=None
    )
    assert fire_due(now=journey.next_entry_at) == 1
    assert JourneyRun.objects.filter(journey=journey, subscriber=finished).count() == 2
    assert JourneyRun.objects.filter(journey=journey, subscriber=still_in).count() == 1


def test_local_time_runs_wait_for_the_hour_in_each_subscribers_zone(project):
    berlin = SubscriberFactory(project=project, country="DE", time_zone="Europe/Berlin")
    new_york = SubscriberFactory(project=project, country="DE", time_zone="America/New_York")
    no_zone = SubscriberFactory(project=project, country="DE", time_zone="")
    bad_zone = SubscriberFactory(project=project, country="DE", time_zone="Mars/Olympus")
    entry = {"type": "segment", "rule": GERMANS, "schedule": {"local_time": "09:00", "at": "2027-01-15"}}
    journey = _journey(project, entry, fallback_time_zone="Asia/Tokyo")
    assert journey.next_entry_at == at("2027-01-14T19:00:00+00:00")
    assert fire_due(now=journey.next_entry_at) == 4
    wake = dict(JourneyRun.objects.filter(journey=journey).values_list("subscriber_id", "wake_at"))
    assert wake[berlin.pk] == at("2027-01-15T08:00:00+00:00")
    assert wake[new_york.pk] == at("2027-01-15T14:00:00+00:00")
    assert wake[no_zone.pk] == wake[bad_zone.pk] == at("2027-01-15T00:00:00+00:00")  # Tokyo
    assert all(w >= journey.next_entry_at for w in wake.values())


def test_paused_journeys_do_not_fire_and_a_deleted_segment_enters_nobody(project):
    SubscriberFactory(project=project, country="DE")
    segment = Segment.objects.create(project=project, name="Germans", rule=GERMANS)
    paused = _journey(project, {"type": "segment", "segment": str(segment.public_id)})
    Journey.objects.filter(pk=paused.pk).update(status=JourneyStatus.PAUSED)
    gone = _journey(project, {"type": "segment", "segment": str(segment.public_id)})
    segment.delete()
    assert fire_due(now=timezone.now()) == 0
    assert not JourneyRun.objects.exists()
    gone.refresh_from_db()
    paused.refresh_from_db()
    assert gone.last_entry_at is not None and gone.next_entry_at is None  # the firing passed
    assert paused.last_entry_at is None and paused.next_entry_at is not None


def test_one_broken_journey_does_not_hold_up_the_others(project, monkeypatch):
    SubscriberFactory(project=project, country="DE")
    broken = _journey(project, {"type": "segment", "rule": GERMANS})
    fine = _journey(project, {"type": "segment", "rule": GERMANS})
    real = segment_entry.enter_audience

    def flaky(journey, *args, **kwargs):
        if journey.pk == broken.pk:
            raise RuntimeError("database hiccup")
        return real(journey, *args, **kwargs)

    monkeypatch.setattr(segment_entry, "enter_audience", flaky)
    assert fire_due(now=timezone.now()) == 1
    broken.refresh_from_db()
    assert _entered(fine) and not _entered(broken)
    assert broken.next_entry_at is not None and broken.last_entry_at is None  # still due: retried


def test_schedule_clears_the_next_firing_of_a_journey_that_is_not_active(project):
    journey = _journey(project, {"type": "segment", "rule": GERMANS})
    assert journey.next_entry_at is not None
    journey.status = JourneyStatus.PAUSED
    assert schedule(journey) is None
    journey.refresh_from_db()
    assert journey.next_entry_at is None


def test_activating_schedules_the_firing_and_resuming_does_not_fire_a_once_entry_again(project):
    from controlpanel.services import Actor
    from journeys import services

    SubscriberFactory(project=project, country="DE")
    actor = Actor(label="test")
    data = {
        "name": "Germans",
        "entry": {"type": "segment", "rule": GERMANS},
        "steps": [{"id": "bye", "type": "exit"}],
    }
    journey = services.create_journey(project=project, data=data, actor=actor)
    assert journey.next_entry_at is None
    journey = services.activate(journey=journey, actor=actor)
    assert journey.next_entry_at == journey.activated_at
    assert fire_due(now=timezone.now()) == 1
    journey = services.pause(journey=journey, actor=actor)
    journey = services.resume(journey=journey, actor=actor)
    journey.refresh_from_db()
    assert journey.next_entry_at is None and fire_due(now=timezone.now()) == 0


@pytest.mark.django_db(transaction=True)
def test_a_journey_another_worker_is_firing_is_skipped_not_waited_for():
    from django.db import connection, connections, transaction

    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED needs PostgreSQL (SQLite serialises writers)")
    import threading

    project = ProjectFactory()
    SubscriberFactory(project=project, country="DE")
    busy = _journey(project, {"type": "segment", "rule": GERMANS})
    free = _journey(project, {"type": "segment", "rule": GERMANS})
    locked, release = threading.Event(), threading.Event()

    def other_worker():
        try:
            with transaction.atomic():
                Journey.objects.select_for_update().get(pk=busy.pk)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(10)
        assert fire_due(now=timezone.now()) == 1  # at once, without waiting for the lock
        assert _entered(free) and not _entered(busy)
    finally:
        release.set()
        thread.join()
    assert fire_due(now=timezone.now()) == 1
    assert _entered(busy)
