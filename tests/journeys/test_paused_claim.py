"""The engine's claim never reads the due runs of paused journeys, and a resume makes them due again."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlpanel.services import Actor
from journeys import engine, services
from journeys.models import Journey, JourneyRun, JourneyStatus, RunState
from subscribers.models import Subscriber
from tests.journeys.helpers import make_journey

pytestmark = pytest.mark.django_db

WAIT_THEN_EXIT = [{"id": "wait", "type": "wait", "duration": "PT1H", "next": None}]
T0 = timezone.now().replace(microsecond=0)
_phones = itertools.count(1)


def due_runs(journey: Journey, n: int, *, wake_at) -> list[JourneyRun]:
    subscribers = Subscriber.objects.bulk_create(
        Subscriber(project=journey.project, phone=f"+49151{next(_phones):08d}") for _ in range(n)
    )
    return JourneyRun.objects.bulk_create(
        JourneyRun(
            project=journey.project,
            journey=journey,
            version=1,
            subscriber=subscriber,
            step_id="wait",
            wake_at=wake_at,
            entry_key=f"test:{subscriber.pk}",
            entered_at=wake_at,
        )
        for subscriber in subscribers
    )


def paused(journey: Journey) -> Journey:
    return services.pause(journey=journey, actor=Actor(label="test"))


def _run_table_rows(plan: dict) -> int:
    """Rows the plan read from the runs table (index or heap): returned plus filtered out, all loops."""
    total = 0
    if plan.get("Relation Name") == JourneyRun._meta.db_table or plan.get("Index Name", "").startswith(
        "journey_run_due"
    ):
        loops = plan.get("Actual Loops", 1)
        removed = plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Join Filter", 0)
        total += plan.get("Actual Rows", 0) * loops + removed
    for child in plan.get("Plans", []):
        total += _run_table_rows(child)
    return total


def _claim_sql() -> str:
    with CaptureQueriesContext(connection) as queries:
        assert engine._claim(T0, T0 + engine.LEASE, 500)
    JourneyRun.objects.update(lease_until=None)
    [claim] = [q["sql"] for q in queries.captured_queries if "lease_until" in q["sql"]]
    return claim


def _postgresql_rows_read(claim: str) -> tuple[int, dict]:
    """The claim analysed and rolled back: the rows it read of the runs table, and the plan."""
    with transaction.atomic():
        sid = transaction.savepoint_create()
        with connection.cursor() as cursor:
            # As planned for a big table: on a few thousand rows a sequential scan of the whole
            # table would be cheapest for the lookups by id, whatever the claim's shape.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {claim}")
            raw = cursor.fetchone()[0]
        transaction.savepoint_rollback(sid)
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return _run_table_rows(plan), plan


def _sqlite_plan(claim: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {claim}")
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


def test_the_claim_reads_no_run_of_a_paused_journey_and_a_resume_makes_them_due_again(project):
    held = make_journey(project, WAIT_THEN_EXIT)
    going = make_journey(project, WAIT_THEN_EXIT)
    # The paused journey's runs are due first: a claim in wake order over all due runs meets them
    # before the others.
    held_runs = 2000 if connection.vendor == "postgresql" else 30
    due_runs(held, held_runs, wake_at=T0 - timedelta(hours=1))
    due_runs(going, 5, wake_at=T0)
    held = paused(held)

    claim = _claim_sql()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {JourneyRun._meta.db_table}")
        read, plan = _postgresql_rows_read(claim)
        # The 5 due runs of the active journey, read by the candidate scan and again when locked
        # and updated; none of the paused journey's 2,000.
        assert read <= 20, json.dumps(plan, indent=1)
    else:
        plan = _sqlite_plan(claim)
        # Searched journey by journey (the active ones), not walked in wake order over all due runs.
        assert "journey_run_due_by_journey (journey_id=?" in plan, plan

    # Across the active journeys in wake order: another journey's earlier runs come first.
    other = make_journey(project, WAIT_THEN_EXIT)
    earlier = {r.pk for r in due_runs(other, 3, wake_at=T0 - timedelta(minutes=2))}
    assert earlier < set(engine._claim(T0, T0 + engine.LEASE, 4))
    JourneyRun.objects.update(lease_until=None)

    assert engine.tick(now=T0, limit=10) == 8
    assert not JourneyRun.objects.filter(journey=held, lease_until__isnull=False).exists()
    assert set(JourneyRun.objects.filter(journey=held).values_list("state", flat=True)) == {RunState.READY}
    assert engine.tick(now=T0, limit=10) == 0

    services.resume(journey=held, actor=Actor(label="test"))
    assert engine.tick(now=T0, limit=10) == 10
    assert engine.tick(now=T0, limit=5000) == held_runs - 10
    assert set(JourneyRun.objects.filter(journey=held).values_list("state", flat=True)) == {RunState.WAITING}
    assert Journey.objects.get(pk=held.pk).status == JourneyStatus.ACTIVE
