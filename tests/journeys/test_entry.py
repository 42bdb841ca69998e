"""The one entry path: re-entry rules and deduplication hold for every kind of entry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from journeys import counters
from journeys.definition import DefinitionError, parse, parse_duration
from journeys.entry import Arrival, enter, enter_audience
from journeys.models import Journey, JourneyRun, JourneyStatus, JourneyVersion, RunState
from subscribers.models import Subscriber
from tests.factories import ProjectFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


def _journey(project, reentry: str = "after_exit", **settings) -> Journey:
    definition = {
        "name": "J",
        "entry": {"type": "api"},
        "settings": {"reentry": reentry, **settings},
        "steps": [{"id": "bye", "type": "exit"}],
    }
    journey = Journey.objects.create(
        project=project, name="J", definition=definition, status=JourneyStatus.ACTIVE, version=1
    )
    JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=definition)
    return journey


def test_after_exit_lets_a_subscriber_in_once_while_a_run_is_live(project):
    journey = _journey(project)
    sub = SubscriberFactory(project=project)
    now = timezone.now()
    first = enter(journey, [Arrival(sub.pk, "event:1"), Arrival(sub.pk, "event:2")], now=now)
    assert len(first) == 1 and first[0].state == RunState.READY and first[0].step_id == "bye"
    assert enter(journey, [Arrival(sub.pk, "event:3")], now=now + timedelta(seconds=1)) == []
    JourneyRun.objects.filter(pk=first[0].pk).update(state=RunState.DONE, exclusive=None)
    assert len(enter(journey, [Arrival(sub.pk, "event:4")], now=now + timedelta(seconds=2))) == 1
    assert counters.read(journey.pk)[("", "entered")] == 2


def test_never_means_never_and_the_same_entry_key_starts_nothing(project):
    journey = _journey(project, reentry="never")
    sub, other = SubscriberFactory(project=project), SubscriberFactory(project=project)
    now = timezone.now()
    assert len(enter(journey, [Arrival(sub.pk, "event:1")], now=now)) == 1
    JourneyRun.objects.update(state=RunState.DONE, exclusive="1")
    assert enter(journey, [Arrival(sub.pk, "event:2")], now=now + timedelta(seconds=1)) == []
    assert enter(journey, [Arrival(other.pk, "event:1")], now=now + timedelta(seconds=2)) == []


def test_any_time_keeps_the_minimum_gap(project):
    journey = _journey(project, reentry="any_time", reentry_gap="PT1H")
    sub = SubscriberFactory(project=project)
    now = timezone.now()
    assert len(enter(journey, [Arrival(sub.pk, "a")], now=now)) == 1
    assert enter(journey, [Arrival(sub.pk, "b")], now=now + timedelta(minutes=30)) == []
    assert len(enter(journey, [Arrival(sub.pk, "c")], now=now + timedelta(minutes=61))) == 1


def test_parse_names_step_and_field():
    with pytest.raises(DefinitionError) as caught:
        parse(
            {
                "name": "x",
                "entry": {"type": "api"},
                "steps": [{"id": "a", "type": "nope"}, {"id": "b", "type": "exit"}],
            }
        )
    assert caught.value.problems[0].as_dict() == {
        "step": "a",
        "field": "type",
        "message": "Unknown step type 'nope'.",
    }
    assert parse_duration("PT1H") == timedelta(hours=1)
    assert parse_duration("P1DT2H") == timedelta(days=1, hours=2)
    assert parse_duration("1 hour") is None


# ---- the set-based rules: entry cap, audiences, dry runs --------------------------------------


def test_entry_cap_counts_entries_within_the_period(project):
    journey = _journey(project, reentry="any_time", entry_cap={"count": 2, "period": "P1D"})
    sub = SubscriberFactory(project=project)
    now = timezone.now()
    assert len(enter(journey, [Arrival(sub.pk, "a")], now=now)) == 1
    assert len(enter(journey, [Arrival(sub.pk, "b")], now=now + timedelta(hours=1))) == 1
    assert enter(journey, [Arrival(sub.pk, "c")], now=now + timedelta(hours=2)) == []
    # The first entry has left the period: one of two is used.
    assert len(enter(journey, [Arrival(sub.pk, "d")], now=now + timedelta(hours=25))) == 1
    assert counters.read(journey.pk)[("", "entered")] == 3


def test_entry_cap_holds_for_an_audience_too(project):
    journey = _journey(project, reentry="any_time", entry_cap={"count": 1})
    capped, fresh = SubscriberFactory(project=project), SubscriberFactory(project=project)
    now = timezone.now()
    enter(journey, [Arrival(capped.pk, "event:1")], now=now)
    ids = Subscriber.objects.filter(pk__in=[capped.pk, fresh.pk]).values("id")
    assert enter_audience(journey, ids, entry_key_prefix="segment:f1:", now=now) == 1
    assert set(JourneyRun.objects.filter(journey=journey).values_list("subscriber_id", "entry_key")) == {
        (capped.pk, "event:1"),
        (fresh.pk, f"segment:f1:{fresh.pk}"),
    }


def test_enter_audience_is_one_idempotent_statement_with_context_and_wake(project):
    journey = _journey(project)
    subs = SubscriberFactory.create_batch(3, project=project)
    SubscriberFactory(project=ProjectFactory())  # another project's subscriber is not in the query
    now = timezone.now()
    later = now + timedelta(hours=2)
    ids = Subscriber.objects.for_project(project).values("id")
    with CaptureQueriesContext(connection) as queries:
        entered = enter_audience(
            journey,
            ids,
            entry_key_prefix="api:r1:",
            now=now,
            context={"values": {"code": "X1"}},
            wake_at_sql=("%s", [connection.ops.adapt_datetimefield_value(later)]),
        )
    assert entered == 3
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 2  # the runs, and the counter
    runs = list(JourneyRun.objects.filter(journey=journey).order_by("subscriber_id"))
    assert [r.subscriber_id for r in runs] == sorted(s.pk for s in subs)
    assert all(r.context == {"values": {"code": "X1"}} and r.wake_at == later for r in runs)
    assert all(r.entry_key == f"api:r1:{r.subscriber_id}" and r.exclusive == "1" for r in runs)
    assert all(r.state == RunState.READY and r.step_id == "bye" and r.version == 1 for r in runs)
    assert len({r.public_id for r in runs}) == 3
    # Run again (a retried request): nobody twice, nothing counted.
    assert enter_audience(journey, ids, entry_key_prefix="api:r1:", now=now) == 0
    assert counters.read(journey.pk)[("", "entered")] == 3


def test_after_exit_keeps_live_runs_out_of_an_audience_and_lets_finished_ones_in(project):
    journey = _journey(project)
    live, finished, new = SubscriberFactory.create_batch(3, project=project)
    now = timezone.now()
    first = enter(journey, [Arrival(live.pk, "event:1"), Arrival(finished.pk, "event:2")], now=now)
    JourneyRun.objects.filter(pk__in=[r.pk for r in first if r.subscriber_id == finished.pk]).update(
        state=RunState.DONE, exclusive=None
    )
    ids = Subscriber.objects.for_project(project).values("id")
    assert enter_audience(journey, ids, entry_key_prefix="segment:f:", now=now) == 2
    assert set(
        JourneyRun.objects.filter(journey=journey, entry_key__startswith="segment:").values_list(
            "subscriber_id", flat=True
        )
    ) == {finished.pk, new.pk}


def test_dry_runs_are_not_held_to_the_rules_nor_counted(project):
    journey = _journey(project, reentry="never")
    sub = SubscriberFactory(project=project)
    now = timezone.now()
    assert len(enter(journey, [Arrival(sub.pk, "event:1")], now=now)) == 1
    dry = enter(journey, [Arrival(sub.pk, "dry:1")], now=now, dry_run=True)
    assert len(dry) == 1 and dry[0].dry_run and dry[0].exclusive is None
    assert enter(journey, [Arrival(sub.pk, "dry:1")], now=now, dry_run=True) == []  # same key
    assert counters.read(journey.pk)[("", "entered")] == 1


def test_a_draft_enters_dry_runs_with_its_own_definition(project):
    definition = {"name": "D", "entry": {"type": "api"}, "steps": [{"id": "only", "type": "exit"}]}
    journey = Journey.objects.create(project=project, name="D", definition=definition)
    sub = SubscriberFactory(project=project)
    assert enter(journey, [Arrival(sub.pk, "dry:1")], now=timezone.now()) == []  # no version
    runs = enter(
        journey, [Arrival(sub.pk, "dry:1")], now=timezone.now(), dry_run=True, definition=parse(definition)
    )
    assert [(r.step_id, r.version, r.dry_run) for r in runs] == [("only", 0, True)]


def test_thousands_of_arrivals_enter_in_chunks_each_once(project, monkeypatch):
    from journeys import entry as entry_module

    monkeypatch.setattr(entry_module, "CHUNK", 7)
    journey = _journey(project, reentry="any_time")
    subs = SubscriberFactory.create_batch(20, project=project)
    arrivals = [Arrival(s.pk, f"event:{s.pk}:{i}", {"event": {"n": i}}) for i in range(2) for s in subs]
    runs = enter(journey, arrivals, now=timezone.now())
    assert len(runs) == 20  # each subscriber once, with the first arrival
    assert {r.context["event"]["n"] for r in runs} == {0}
    assert counters.read(journey.pk)[("", "entered")] == 20


def test_an_event_context_with_dates_and_ids_is_stored_as_json(project):
    journey = _journey(project)
    sub = SubscriberFactory(project=project)
    now = timezone.now()
    event = {
        "event": {"name": "OrderPlaced", "occurred_at": now, "id": sub.public_id, "attributes": {"n": 1}}
    }
    [run] = enter(journey, [Arrival(sub.pk, "event:9", event)], now=now)
    run.refresh_from_db()
    assert run.context["event"]["occurred_at"].startswith(now.strftime("%Y-%m-%dT%H:%M:%S"))
    assert run.context["event"]["id"] == str(sub.public_id) and run.context["event"]["attributes"] == {"n": 1}


def _race(first, second) -> None:
    """Run ``first`` in a transaction that stays open until ``second`` (another connection) has
    started, then commit it; PostgreSQL only."""
    import threading
    import time

    from django.db import connections, transaction

    started = threading.Event()

    def hold():
        try:
            with transaction.atomic():
                first()
                started.set()
                time.sleep(1.5)  # second() is running against the open transaction meanwhile
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert started.wait(20)
        second()
    finally:
        thread.join()


@pytest.mark.django_db(transaction=True)
def test_two_entries_racing_for_one_subscriber_start_one_run():
    if connection.vendor != "postgresql":
        pytest.skip("two writers at once need PostgreSQL")
    journey = _journey(ProjectFactory())
    sub = SubscriberFactory(project=journey.project)
    now = timezone.now()
    results = []
    _race(
        lambda: results.append(enter(journey, [Arrival(sub.pk, "event:1")], now=now)),
        lambda: results.append(enter(journey, [Arrival(sub.pk, "event:2")], now=now)),
    )
    assert sorted(len(r) for r in results) == [0, 1]
    assert JourneyRun.objects.filter(journey=journey).count() == 1
    assert counters.read(journey.pk)[("", "entered")] == 1


@pytest.mark.django_db(transaction=True)
def test_two_entries_racing_under_a_cap_do_not_both_slip_under_it():
    if connection.vendor != "postgresql":
        pytest.skip("two writers at once need PostgreSQL")
    journey = _journey(ProjectFactory(), reentry="any_time", entry_cap={"count": 1})
    sub = SubscriberFactory(project=journey.project)
    now = timezone.now()
    _race(
        lambda: enter(journey, [Arrival(sub.pk, "event:1")], now=now),
        lambda: enter(journey, [Arrival(sub.pk, "event:2")], now=now),
    )
    assert JourneyRun.objects.filter(journey=journey).count() == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner")
def test_an_audience_entry_never_probes_the_runs_per_subscriber(project):
    """With the runs table analyzed empty, PostgreSQL chose a nested loop that scanned the runs
    table once per subscriber, reading the statement's own new rows each time: quadratic, hours for
    a million. The audience entry plans with hash joins only."""
    journey = _journey(project)
    for _ in range(3):
        SubscriberFactory(project=project)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE journeys_journeyrun")
    plans: list[str] = []

    def explain(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "journeys_journeyrun"'):
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN " + sql, params)
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
        return execute(sql, params, many, context)

    ids = Subscriber.objects.filter(project=project).values("id")
    with connection.execute_wrapper(explain):
        assert enter_audience(journey, ids, entry_key_prefix="segment:plan:", now=timezone.now()) == 3
    assert plans and "Anti Join" in plans[0] and "Nested Loop" not in plans[0], plans
    # The setting was for that statement: later ones in the transaction plan as usual.
    with connection.cursor() as cursor:
        cursor.execute("SHOW enable_nestloop")
        assert cursor.fetchone()[0] == "on"
