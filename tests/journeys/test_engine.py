"""The engine: claims, leases, visits, counters, errors, silent hours, events, exits (ADR 0007)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from journeys import counters, engine, steps
from journeys.entry import Arrival, enter
from journeys.models import Journey, JourneyRun, JourneyRunStep, JourneyStatus, JourneyVersion, RunState
from journeys.steps import Go
from subscribers.models import Event
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def make_journey(
    project, steps_: list[dict[str, Any]], *, status=JourneyStatus.ACTIVE, **settings
) -> Journey:
    definition = {
        "name": "J",
        "entry": {"type": "api"},
        "settings": {"reentry": "after_exit", **settings},
        "steps": steps_,
    }
    journey = Journey.objects.create(
        project=project, name="J", definition=definition, status=status, version=1
    )
    JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=definition)
    return journey


def start(journey: Journey, subscribers, now=T0, context=None) -> list[JourneyRun]:
    return enter(
        journey,
        [Arrival(s.pk, f"t:{s.pk}:{now.isoformat()}", context or {}) for s in subscribers],
        now=now,
    )


WAIT_THEN_EXIT = [
    {"id": "wait", "type": "wait", "duration": "PT1H", "next": "bye"},
    {"id": "bye", "type": "exit"},
]


class Boom:
    """A step that writes (not pure) and fails for subscribers named "boom"."""

    type = "test_boom"
    label = "Boom"
    channel = ""

    def check(self, data, ctx):
        return []

    def outlets(self, data):
        return steps.next_only(data)

    def run(self, visit):
        visit.record.detail = {"wrote": True}
        visit.record.save()
        if visit.subscriber.name == "boom":
            raise RuntimeError("boom")
        return Go("next")


class Send:
    """A pure step on a channel (silent hours apply), sending nothing."""

    type = "test_send"
    label = "Send"
    channel = "whatsapp"
    pure = True

    def check(self, data, ctx):
        return []

    def outlets(self, data):
        return steps.next_only(data)

    def run(self, visit):
        visit.count("sent")
        return Go("next")


@pytest.fixture
def test_steps():
    steps.register(Boom())
    steps.register(Send())
    yield
    steps._registry.pop("test_boom")
    steps._registry.pop("test_send")


def test_a_run_waits_then_leaves_and_every_step_is_visited_once(project):
    journey = make_journey(project, WAIT_THEN_EXIT)
    sub = SubscriberFactory(project=project)
    (run,) = start(journey, [sub])
    assert engine.tick(now=T0) == 1
    run.refresh_from_db()
    assert (run.state, run.step_id, run.wake_at, run.lease_until) == (
        RunState.WAITING,
        "wait",
        T0 + timedelta(hours=1),
        None,
    )
    assert engine.tick(now=T0 + timedelta(minutes=59)) == 0
    assert engine.tick(now=T0 + timedelta(hours=1)) == 1
    run.refresh_from_db()
    assert (run.state, run.exit_reason, run.exited_at, run.exclusive) == (
        RunState.DONE,
        "exit_step",
        T0 + timedelta(hours=1),
        None,
    )
    visits = list(
        JourneyRunStep.objects.filter(run=run).order_by("entered_at").values_list("step_id", "outlet")
    )
    assert visits == [("wait", "next"), ("bye", "")]
    assert counters.read(journey.pk) == {
        ("", "entered"): 1,
        ("wait", "entered"): 1,
        ("wait", "passed:next"): 1,
        ("bye", "entered"): 1,
        ("", "exited:exit_step"): 1,
    }
    assert engine.tick(now=T0 + timedelta(days=1)) == 0


def test_end_of_a_branch_completes_and_after_exit_lets_them_in_again(project):
    journey = make_journey(project, [{"id": "wait", "type": "wait", "duration": "PT1M", "next": None}])
    sub = SubscriberFactory(project=project)
    (run,) = start(journey, [sub])
    engine.tick(now=T0)
    engine.tick(now=T0 + timedelta(minutes=1))
    run.refresh_from_db()
    assert (run.state, run.exit_reason) == (RunState.DONE, "completed")
    assert len(start(journey, [sub], now=T0 + timedelta(minutes=2))) == 1


def test_paused_journeys_hold_and_dry_runs_are_never_claimed(project):
    journey = make_journey(project, WAIT_THEN_EXIT)
    subs = SubscriberFactory.create_batch(2, project=project)
    start(journey, subs[:1])
    JourneyRun.objects.create(
        project=project,
        journey=journey,
        version=1,
        subscriber=subs[1],
        step_id="wait",
        wake_at=T0,
        entry_key="dry",
        dry_run=True,
        entered_at=T0,
    )
    Journey.objects.filter(pk=journey.pk).update(status=JourneyStatus.PAUSED)
    assert engine.tick(now=T0) == 0
    Journey.objects.filter(pk=journey.pk).update(status=JourneyStatus.ACTIVE)
    assert engine.tick(now=T0) == 1
    assert JourneyRun.objects.get(dry_run=True).state == RunState.READY


def test_a_claimed_run_is_not_claimed_again_until_its_lease_passes(project):
    journey = make_journey(project, WAIT_THEN_EXIT)
    (run,) = start(journey, [SubscriberFactory(project=project)])
    # A worker claimed it and died before its advance committed.
    assert engine._claim(T0, T0 + engine.LEASE, 10) == [run.pk]
    assert engine.tick(now=T0 + timedelta(seconds=30)) == 0
    assert engine.tick(now=T0 + engine.LEASE) == 1
    run.refresh_from_db()
    assert run.state == RunState.WAITING and run.lease_until is None
    assert JourneyRunStep.objects.filter(run=run).count() == 1


def test_a_claim_that_lost_its_lease_writes_nothing(project):
    journey = make_journey(project, WAIT_THEN_EXIT)
    (run,) = start(journey, [SubscriberFactory(project=project)])
    engine._claim(T0, T0 + engine.LEASE, 10)
    JourneyRun.objects.filter(pk=run.pk).update(lease_until=T0 + timedelta(minutes=5))  # claimed again
    engine.advance_claimed([run.pk], lease=T0 + engine.LEASE, now=T0)
    run.refresh_from_db()
    assert run.state == RunState.READY and not JourneyRunStep.objects.filter(run=run).exists()


def test_a_failing_run_does_not_undo_the_others_and_ends_after_five_attempts(project, test_steps):
    journey = make_journey(
        project,
        [{"id": "boom", "type": "test_boom", "next": "wait"}, *WAIT_THEN_EXIT],
    )
    good = SubscriberFactory(project=project, name="good")
    bad = SubscriberFactory(project=project, name="boom")
    good_run, bad_run = start(journey, [good, bad])
    assert engine.tick(now=T0) == 2
    good_run.refresh_from_db()
    bad_run.refresh_from_db()
    assert good_run.state == RunState.WAITING
    assert JourneyRunStep.objects.get(run=good_run, step_id="boom").detail == {"wrote": True}
    # The failed run's writes rolled back with its savepoint; it is retried with backoff.
    assert not JourneyRunStep.objects.filter(run=bad_run).exists()
    assert (bad_run.state, bad_run.attempts, bad_run.step_id) == (RunState.READY, 1, "boom")
    assert bad_run.last_error == "RuntimeError: boom"
    assert bad_run.wake_at == T0 + engine.BACKOFF[0]
    now = T0
    for _ in range(4):
        now = bad_run.wake_at
        assert engine.tick(now=now) == 1
        bad_run.refresh_from_db()
    assert (bad_run.state, bad_run.exit_reason, bad_run.attempts) == (RunState.DONE, "error", 5)
    assert bad_run.exclusive is None
    stats = counters.read(journey.pk)
    assert stats[("", "exited:error")] == 1
    assert stats[("boom", "entered")] == 1  # the good run's visit only


def test_tick_costs_the_same_statements_for_ten_or_forty_runs(project):
    journey = make_journey(project, WAIT_THEN_EXIT)

    def statements(n: int, at: datetime) -> int:
        start(journey, SubscriberFactory.create_batch(n, project=project), now=at)
        with CaptureQueriesContext(connection) as ctx:
            assert engine.tick(now=at) == n
        return len(ctx.captured_queries)

    assert statements(10, T0) == statements(40, T0 + timedelta(minutes=1))


def test_silent_hours_hold_a_channel_step_until_they_end_in_the_subscribers_zone(project, test_steps):
    journey = make_journey(
        project,
        [{"id": "send", "type": "test_send", "next": None}],
        silent_hours={"start": "21:00", "end": "08:00"},
        fallback_time_zone="America/New_York",
    )
    berlin = SubscriberFactory(project=project, time_zone="Europe/Berlin")
    nowhere = SubscriberFactory(project=project, time_zone="")  # the fallback zone: New York
    at = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 23:30 in Berlin, 17:30 in New York
    berlin_run, ny_run = start(journey, [berlin, nowhere], now=at)
    engine.tick(now=at)
    berlin_run.refresh_from_db()
    ny_run.refresh_from_db()
    assert (ny_run.state, ny_run.exit_reason) == (RunState.DONE, "completed")
    assert berlin_run.state == RunState.WAITING
    assert berlin_run.wake_at == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
    assert not JourneyRunStep.objects.filter(run=berlin_run).exists()  # held, not entered
    engine.tick(now=berlin_run.wake_at)
    berlin_run.refresh_from_db()
    assert berlin_run.state == RunState.DONE
    assert counters.read(journey.pk)[("send", "sent")] == 2


def _event(sub, name: str, at=T0, **attributes) -> Event:
    return Event.objects.create(
        project_id=sub.project_id, subscriber=sub, name=name, occurred_at=at, attributes=attributes
    )


def test_events_wake_waiting_runs_in_order_per_subscriber(project):
    journey = make_journey(
        project,
        [
            {
                "id": "first",
                "type": "wait_event",
                "events": [{"event": "A", "next": "second"}],
                "timeout": "P1D",
            },
            {
                "id": "second",
                "type": "wait_event",
                "events": [{"event": "B", "next": None}],
                "timeout": "P1D",
            },
        ],
    )
    sub, other = SubscriberFactory(project=project), SubscriberFactory(project=project)
    run, other_run = start(journey, [sub, other])
    engine.tick(now=T0)
    run.refresh_from_db()
    assert run.waiting_events == ["A"]
    # B before A for the other subscriber: B is not awaited yet, A then moves it to "second".
    woken = engine.wake_for_events(
        [_event(sub, "A"), _event(other, "B"), _event(other, "A"), _event(sub, "B")]
    )
    assert woken == 3
    run.refresh_from_db()
    other_run.refresh_from_db()
    assert (run.state, run.exit_reason) == (RunState.DONE, "completed")
    assert (other_run.state, other_run.step_id, other_run.waiting_events) == (
        RunState.WAITING,
        "second",
        ["B"],
    )
    first = JourneyRunStep.objects.get(run=run, step_id="first")
    assert first.outlet == "event1" and first.detail["event"]["name"] == "A"


def test_wake_for_events_skips_paused_journeys_and_unawaited_events(project):
    journey = make_journey(
        project,
        [{"id": "w", "type": "wait_event", "events": [{"event": "A", "next": None}], "timeout": "P1D"}],
    )
    sub = SubscriberFactory(project=project)
    (run,) = start(journey, [sub])
    engine.tick(now=T0)
    assert engine.wake_for_events([_event(sub, "Other")]) == 0
    Journey.objects.filter(pk=journey.pk).update(status=JourneyStatus.PAUSED)
    assert engine.wake_for_events([_event(sub, "A")]) == 0
    run.refresh_from_db()
    assert run.state == RunState.WAITING


def test_wake_for_events_finds_the_runs_of_a_batch_in_one_query(project):
    journey = make_journey(
        project,
        [{"id": "w", "type": "wait_event", "events": [{"event": "A", "next": None}], "timeout": "P1D"}],
    )
    subs = SubscriberFactory.create_batch(5, project=project)
    start(journey, subs)
    engine.tick(now=T0)
    events = [_event(s, "Nope") for s in subs]
    with CaptureQueriesContext(connection) as ctx:
        assert engine.wake_for_events(events) == 0
    assert len(ctx.captured_queries) == 1


def test_exit_runs_ends_live_runs_once_with_counters(project):
    journey = make_journey(project, WAIT_THEN_EXIT)
    subs = SubscriberFactory.create_batch(3, project=project)
    runs = start(journey, subs)
    engine.tick(now=T0)
    assert engine.exit_runs(runs=JourneyRun.objects.filter(pk=runs[0].pk), reason="dropped", now=T0) == 1
    assert engine.exit_runs(journey=journey, reason="stopped", now=T0) == 2
    assert engine.exit_runs(journey=journey, reason="stopped", now=T0) == 0
    assert set(JourneyRun.objects.values_list("state", "exclusive")) == {(RunState.DONE, None)}
    assert not JourneyRunStep.objects.filter(finished_at__isnull=True).exists()
    stats = counters.read(journey.pk)
    assert (stats[("", "exited:dropped")], stats[("", "exited:stopped")]) == (1, 2)
    assert engine.tick(now=T0 + timedelta(hours=2)) == 0


def test_runs_walk_the_version_they_are_on(project):
    journey = make_journey(project, WAIT_THEN_EXIT)
    (run,) = start(journey, [SubscriberFactory(project=project)])
    engine.tick(now=T0)
    v2 = {**journey.definition, "steps": [{"id": "wait", "type": "wait", "duration": "PT1H", "next": None}]}
    JourneyVersion.objects.create(project=project, journey=journey, number=2, definition=v2)
    Journey.objects.filter(pk=journey.pk).update(version=2)
    engine.tick(now=T0 + timedelta(hours=1))
    run.refresh_from_db()
    assert run.exit_reason == "exit_step"  # v1's exit step, not v2's end of branch
    JourneyRun.objects.filter(pk=run.pk).update(
        version=2, state=RunState.WAITING, step_id="wait", exclusive="1", wake_at=T0 + timedelta(hours=1)
    )
    JourneyRunStep.objects.filter(run=run, step_id="wait").update(finished_at=None)
    engine.tick(now=T0 + timedelta(hours=1))
    run.refresh_from_db()
    assert run.exit_reason == "completed"


def test_a_step_missing_from_the_version_ends_the_run(project):
    journey = make_journey(project, WAIT_THEN_EXIT)
    (run,) = start(journey, [SubscriberFactory(project=project)])
    JourneyRun.objects.filter(pk=run.pk).update(step_id="gone")
    engine.tick(now=T0)
    run.refresh_from_db()
    assert (run.state, run.exit_reason) == (RunState.DONE, "step_missing")


def test_kick_enqueues_after_commit(project, monkeypatch, django_capture_on_commit_callbacks):
    from journeys import actors

    sent = []
    monkeypatch.setattr(actors.advance_journeys, "send", lambda: sent.append(1))
    with django_capture_on_commit_callbacks(execute=True):
        engine.kick()
        assert sent == []
    assert sent == [1]


def test_the_actor_drains_until_nothing_is_due(project, monkeypatch):
    from journeys import actors

    journey = make_journey(project, WAIT_THEN_EXIT)
    start(journey, SubscriberFactory.create_batch(5, project=project), now=timezone.now())
    assert actors.drain(limit=2) == 5
    assert actors.drain(limit=2) == 0
    assert JourneyRun.objects.filter(state=RunState.WAITING).count() == 5


class Poison:
    """A pure step whose query fails for subscribers named "poison" (on PostgreSQL that aborts the
    whole batch transaction, which the engine then advances run by run)."""

    type = "test_poison"
    label = "Poison"
    channel = ""
    pure = True

    def check(self, data, ctx):
        return []

    def outlets(self, data):
        return steps.next_only(data)

    def run(self, visit):
        if visit.subscriber.name == "poison":
            with connection.cursor() as cursor:
                cursor.execute("SELECT * FROM no_such_table_here")
        return Go("next")


def test_a_database_error_in_one_run_does_not_hold_the_batch_back(project):
    steps.register(Poison())
    try:
        journey = make_journey(project, [{"id": "p", "type": "test_poison", "next": None}])
        subs = [SubscriberFactory(project=project, name=name) for name in ("a", "poison", "b")]
        runs = start(journey, subs)
        assert engine.tick(now=T0) == 3
        states = {r.subscriber_id: r for r in JourneyRun.objects.filter(pk__in=[r.pk for r in runs])}
        assert [states[s.pk].state for s in subs] == [RunState.DONE, RunState.READY, RunState.DONE]
        poisoned = states[subs[1].pk]
        assert poisoned.attempts == 1 and poisoned.lease_until is None and poisoned.last_error
        assert counters.read(journey.pk)[("p", "passed:next")] == 2
    finally:
        steps._registry.pop("test_poison")


def test_ending_a_run_of_a_never_journey_keeps_the_subscriber_out(project):
    journey = make_journey(project, WAIT_THEN_EXIT, reentry="never")
    sub = SubscriberFactory(project=project)
    (run,) = start(journey, [sub])
    engine.tick(now=T0)
    engine.exit_runs(journey=journey, reason="stopped", now=T0)
    run.refresh_from_db()
    assert (run.state, run.exclusive) == (RunState.DONE, "1")
    assert start(journey, [sub], now=T0 + timedelta(days=1)) == []
