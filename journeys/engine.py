"""The journey engine: the one writer of a run's position (ADR 0007, "Engine rules").

``tick`` claims due runs and advances them, ``wake_for_events`` advances runs waiting for events
the feed delivered, ``exit_runs`` ends runs (stop, drop, goal). The dry run (``dryrun.py``) drives
the same ``_Batch`` on its own clock.

Claim and lease. ``tick`` claims up to ``limit`` due runs in one ``UPDATE ... RETURNING`` that
sets ``lease_until`` (PostgreSQL: ``FOR UPDATE SKIP LOCKED`` inside, so two workers never claim
the same run; SQLite: the database lock serialises the statement) and commits it. The advance is a
second transaction that locks the claimed rows *with this lease* and writes them back with the
lease cleared. A worker killed between the two, or in the middle of the advance, leaves rows
whose lease is in the future and whose work rolled back: they are claimed again once the lease has
passed, and advanced from where their last commit left them, so no visit is made twice.

Savepoints. Each run is advanced inside its own savepoint, so a step that raises undoes only that
run (``attempts`` +1, backoff, reason ``error`` after ``MAX_ATTEMPTS``). Steps that write nothing
(``pure`` step types, most flow steps) need no savepoint and their visit rows are written for the
whole batch at once; a batch of runs that only wait costs a handful of statements. If the batch
transaction itself fails (a database error inside a pure step aborts it on PostgreSQL), its runs
are advanced again one by one, each with savepoints around every step, so one poisoned run cannot
hold the others back.
"""

from __future__ import annotations

import copy
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import counters, timezones
from .definition import Definition, parse
from .models import Journey, JourneyRun, JourneyRunStep, JourneyStatus, RunState
from .steps import Exit, Go, StepBatch, Visit, Wait
from .steps import get as step_type
from .versions import definition_of

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
MAX_MOVES = 50  # steps one claim may walk; more: the run stays ready for the next tick
MAX_ATTEMPTS = 5
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(minutes=30))
BATCH = 500

RUN = JourneyRun._meta.db_table
JOURNEY = Journey._meta.db_table
RUN_FIELDS = [
    "version",
    "state",
    "step_id",
    "wake_at",
    "waiting_events",
    "lease_until",
    "context",
    "exclusive",
    "exited_at",
    "exit_reason",
    "attempts",
    "last_error",
    "updated_at",
]
VISIT_FIELDS = ["finished_at", "outlet", "detail", "message"]


@dataclass(frozen=True)
class Wake:
    """Why a run is looked at: its timer passed (the tick), or an event came (the feed, a dry run)."""

    timer: bool = False
    event: dict[str, Any] | None = None


def event_payload(event: Any) -> dict[str, Any]:
    """``visit.event`` for a ``subscribers.models.Event`` row."""
    return {
        "id": event.pk,
        "name": event.name,
        "attributes": event.attributes or {},
        "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
    }


# --- the tick ------------------------------------------------------------------------------------


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _dt(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


# Due runs a PostgreSQL claim looks at, per batch it leases: the first ``CLAIM_WINDOW * limit`` due
# runs of the active journeys in wake order, of which it leases the first ``limit`` not locked by
# a concurrent claim. More than one batch, so that workers claiming at the same moment do not
# all come away empty from the same few rows.
CLAIM_WINDOW = 4


def _claim(now: datetime, lease: datetime, limit: int) -> list[int]:
    """Lease up to ``limit`` due runs of active journeys (not dry runs); their ids.

    Runs of paused journeys are never read: the due index (``journey_run_due_by_journey``) leads with the
    journey, and the claim reads it per active journey (a LATERAL subquery with a LIMIT on
    PostgreSQL, ``journey_id IN (active)`` on SQLite). Keyed on ``wake_at`` alone, as it was,
    every tick walked past all the due runs of paused journeys first, a million of them
    after a pause of a big journey. Nothing is written on pause or resume: a resumed
    journey's runs are due at once, and a crash can leave nothing half-held.
    """
    if connection.vendor != "postgresql":
        return _claim_sqlite(now, lease, limit)
    # Materialized CTEs, not ``id IN (SELECT ... LIMIT ... SKIP LOCKED)``: PostgreSQL may rescan
    # such a subquery for the outer UPDATE and lease more than the limit (campaigns/sending.py).
    # ``due`` reads at most CLAIM_WINDOW * limit index entries per active journey, unlocked;
    # ``picked`` locks the first ``limit`` of them in wake order, skipping rows a concurrent
    # claim holds, and checks them again as locked (a claim that committed meanwhile leased them).
    due = (
        "r.state IN ('ready', 'waiting') AND r.wake_at <= %s "
        "AND (r.lease_until IS NULL OR r.lease_until <= %s)"
    )
    sql = (
        f"WITH due AS MATERIALIZED (SELECT c.id, c.wake_at FROM {_q(JOURNEY)} j "  # noqa: S608 - names from code
        f"CROSS JOIN LATERAL (SELECT r.id, r.wake_at FROM {_q(RUN)} r WHERE r.journey_id = j.id AND {due} "
        "AND r.dry_run = false ORDER BY r.wake_at LIMIT %s) c "
        "WHERE j.status = %s ORDER BY c.wake_at LIMIT %s), "
        # ``= ANY(ARRAY(...))`` (here and in the UPDATE): looked up by primary key whatever the
        # planner estimates for the CTE (a join let it hash the whole due index on a small table;
        # the outbox's lease met a nested loop of every due row against its CTE).
        f"picked AS MATERIALIZED (SELECT r.id FROM {_q(RUN)} r WHERE r.id = ANY(ARRAY(SELECT id FROM due)) "
        f"AND {due} ORDER BY r.wake_at LIMIT %s FOR UPDATE SKIP LOCKED) "
        f"UPDATE {_q(RUN)} SET lease_until = %s WHERE id = ANY(ARRAY(SELECT id FROM picked)) RETURNING id"
    )
    window = limit * CLAIM_WINDOW
    params = [_dt(now), _dt(now), window, JourneyStatus.ACTIVE, window, _dt(now), _dt(now), limit, _dt(lease)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return sorted(row[0] for row in cursor.fetchall())


def _claim_sqlite(now: datetime, lease: datetime, limit: int) -> list[int]:
    """The claim on SQLite (the embedded mode: one writer, no row locks): the due runs of the active
    journeys, read from the due index journey by journey, in wake order."""
    sql = (
        f"WITH picked AS MATERIALIZED (SELECT r.id FROM {_q(RUN)} r "  # noqa: S608 - names from code
        f"WHERE r.journey_id IN (SELECT j.id FROM {_q(JOURNEY)} j WHERE j.status = %s) "
        "AND r.state IN ('ready', 'waiting') AND r.wake_at <= %s AND r.dry_run = %s "
        "AND (r.lease_until IS NULL OR r.lease_until <= %s) ORDER BY r.wake_at LIMIT %s) "
        f"UPDATE {_q(RUN)} SET lease_until = %s WHERE id IN (SELECT id FROM picked) RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [JourneyStatus.ACTIVE, _dt(now), False, _dt(now), limit, _dt(lease)])
        return sorted(row[0] for row in cursor.fetchall())


def tick(*, now: datetime | None = None, limit: int = BATCH) -> int:
    """Claim up to ``limit`` due runs and advance them; how many were claimed.

    Safe to run in any number of workers at once (claims never overlap) and to run twice.
    """
    now = now or timezone.now()
    # A lease value of its own (microseconds at random): the advance takes only the rows that
    # still carry it, so a claim that outlived its lease cannot write over a later claim.
    lease = now + LEASE + timedelta(microseconds=random.randrange(1, 999_999))  # noqa: S311
    with transaction.atomic():
        ids = _claim(now, lease, limit)
    if ids:
        advance_claimed(ids, lease=lease, now=now)
    return len(ids)


def advance_claimed(ids: Sequence[int], *, lease: datetime, now: datetime) -> None:
    """Advance the runs ``ids`` claimed with ``lease`` (one transaction; one by one if it fails)."""
    try:
        with transaction.atomic():
            _advance_leased(ids, lease=lease, now=now, isolate=False)
        return
    except Exception:
        if len(ids) == 1:
            _record_failure(ids[0], lease, now)
            return
        logger.exception("journeys: a batch of %d runs failed; advancing them one by one", len(ids))
    for run_id in ids:
        try:
            with transaction.atomic():
                _advance_leased([run_id], lease=lease, now=now, isolate=True)
        except Exception:
            logger.exception("journeys: run %s could not be advanced", run_id)
            _record_failure(run_id, lease, now)


def _advance_leased(ids: Sequence[int], *, lease: datetime, now: datetime, isolate: bool) -> None:
    runs = list(
        JourneyRun.objects.select_for_update(of=("self",))
        .filter(pk__in=ids, lease_until=lease)
        .order_by("pk")
    )
    batch = _Batch(now=now, isolate=isolate)
    batch.load(runs)
    for run in runs:
        journey = batch.journeys[run.journey_id]
        due = (
            run.state in (RunState.READY, RunState.WAITING) and run.wake_at is not None and run.wake_at <= now
        )
        if journey.status != JourneyStatus.ACTIVE or not due:
            # Paused since the claim, or moved meanwhile (an event woke it): just give it back.
            run.lease_until = None
            batch.touched[run.pk] = run
            continue
        batch.advance(run, Wake(timer=True))
    batch.flush()


def _record_failure(run_id: int, lease: datetime, now: datetime) -> None:
    """The run's transaction failed as a whole: count an attempt so a poisoned run ends."""
    try:
        with transaction.atomic():
            run = JourneyRun.objects.select_for_update().filter(pk=run_id, lease_until=lease).first()
            if run is None:
                return
            run.attempts += 1
            run.last_error = "The run's transaction failed (see the worker's log)."
            run.lease_until = None
            if run.attempts >= MAX_ATTEMPTS:
                run.save(update_fields=["attempts", "last_error", "lease_until", "updated_at"])
                exit_runs(runs=JourneyRun.objects.filter(pk=run_id), reason="error", now=now)
            else:
                run.wake_at = now + BACKOFF[min(run.attempts, len(BACKOFF)) - 1]
                run.save(update_fields=["attempts", "last_error", "lease_until", "wake_at", "updated_at"])
    except Exception:
        logger.exception("journeys: could not record the failure of run %s", run_id)


# --- advancing runs ------------------------------------------------------------------------------


class _Batch:
    """The runs of one transaction: loads what they need at once, advances each, writes back once."""

    def __init__(self, *, now: datetime, isolate: bool = False):
        self.now = now
        self.isolate = isolate
        self.journeys: dict[int, Journey] = {}
        self.subscribers: dict[int, Any] = {}
        self.visits: dict[tuple[int, str], JourneyRunStep] = {}
        self.touched: dict[int, JourneyRun] = {}
        self.new_visits: dict[int, JourneyRunStep] = {}  # id(obj) -> unsaved visit of a pure step
        self.changed_visits: dict[int, JourneyRunStep] = {}  # id(obj) -> saved visit changed
        self.stats: Counter[tuple[int, int, str, str]] = Counter()
        self._definitions: dict[int, Definition] = {}
        # Lookups steps share across the batch's runs (segment membership, tag dates).
        self.shared = StepBatch(frozenset())

    def load(self, runs: Iterable[JourneyRun]) -> None:
        from subscribers.models import Subscriber

        runs = list(runs)
        journey_ids = {r.journey_id for r in runs} - set(self.journeys)
        if journey_ids:
            self.journeys.update(Journey.objects.select_related("project").in_bulk(journey_ids))
        subscriber_ids = {r.subscriber_id for r in runs} - set(self.subscribers)
        if subscriber_ids:
            self.subscribers.update(Subscriber.objects.in_bulk(subscriber_ids))
        self.shared = StepBatch(frozenset(self.subscribers))
        if runs:
            for visit in JourneyRunStep.objects.filter(run_id__in=[r.pk for r in runs]):
                self.visits[(visit.run_id, visit.step_id)] = visit

    def definition(self, run: JourneyRun, journey: Journey) -> Definition:
        found = self._definitions.get(run.pk)
        if found is None:
            draft = run.context.get("definition") if run.dry_run and isinstance(run.context, dict) else None
            found = parse(draft) if isinstance(draft, dict) else definition_of(journey, run.version)
            self._definitions[run.pk] = found
        return found

    def advance(self, run: JourneyRun, wake: Wake) -> None:
        """Walk ``run`` from its step as far as it goes now (in memory; ``flush`` writes it)."""
        journey = self.journeys[run.journey_id]
        # Restored when the run fails; only the JSON values can be changed in place by a step.
        snapshot = {name: getattr(run, name) for name in RUN_FIELDS}
        snapshot["context"] = copy.deepcopy(run.context) if run.context else run.context
        snapshot["waiting_events"] = list(run.waiting_events or [])
        stats: Counter[tuple[int, int, str, str]] = Counter()
        new: list[JourneyRunStep] = []
        changed: list[JourneyRunStep] = []
        created: list[tuple[int, str]] = []
        savepoint: list[str] = []

        def protect() -> None:
            if not savepoint:
                savepoint.append(transaction.savepoint_create())

        try:
            self._walk(run, journey, wake, stats, new, changed, created, protect)
        except Exception as exc:
            if savepoint:
                transaction.savepoint_rollback(savepoint[0])
            for key in created:
                self.visits.pop(key, None)
            for name, value in snapshot.items():
                setattr(run, name, value)
            self._failed(run, journey, exc)
        else:
            if savepoint:
                transaction.savepoint_commit(savepoint[0])
            self.stats.update(stats)
            for visit in new:
                self.new_visits[id(visit)] = visit
            for visit in changed:
                if visit.pk is not None:
                    self.changed_visits[id(visit)] = visit
            run.attempts = 0
            run.last_error = ""
        run.lease_until = None
        self.touched[run.pk] = run

    def _walk(
        self,
        run: JourneyRun,
        journey: Journey,
        wake: Wake,
        stats: Counter[tuple[int, int, str, str]],
        new: list[JourneyRunStep],
        changed: list[JourneyRunStep],
        created: list[tuple[int, str]],
        protect: Callable[[], None],
    ) -> None:
        """The advance loop (ADR 0007): at each step get or make its visit, run it, follow Go."""
        definition = self.definition(run, journey)
        subscriber = self.subscribers[run.subscriber_id]
        dry = run.dry_run

        def count(step_id: str, key: str) -> None:
            if not dry:
                stats[(run.project_id, run.journey_id, step_id, key)] += 1

        for _ in range(MAX_MOVES):
            step = definition.steps.get(run.step_id)
            kind = step_type(step.type) if step is not None else None
            if step is None or kind is None:
                # A version without this step (or a step type no longer installed): nowhere to go.
                self._done(run, definition, "step_missing", count)
                return
            pure = bool(getattr(kind, "pure", False)) and not self.isolate
            record = self.visits.get((run.pk, step.id))
            first = record is None or record.finished_at is not None
            if record is None:
                if kind.channel:
                    held = _silent_until(definition, journey, subscriber, self.now, kind.channel)
                    if held is not None:
                        # Not entered inside silent hours: looked at again when they end.
                        run.state, run.wake_at, run.waiting_events = RunState.WAITING, held, []
                        return
                record = JourneyRunStep(
                    project_id=run.project_id,
                    run_id=run.pk,
                    step_id=step.id,
                    step_type=step.type,
                    entered_at=self.now,
                )
                if pure:
                    new.append(record)
                else:
                    protect()
                    record.save(force_insert=True)
                self.visits[(run.pk, step.id)] = record
                created.append((run.pk, step.id))
                count(step.id, "entered")
            elif first:
                # Arriving again at a step visited before (a version move): the row is reused.
                record.finished_at, record.outlet = None, ""
            if not pure:
                protect()
            visit = Visit(
                journey=journey,
                definition=definition,
                run=run,
                step=step,
                subscriber=subscriber,
                record=record,
                now=self.now,
                first=first,
                timer=not first and wake.timer,
                event=None if first else wake.event,
                dry_run=dry,
                batch=self.shared,
            )
            try:
                outcome = kind.run(visit)
            finally:
                if not getattr(kind, "pure", False):
                    # It may have written what a shared lookup read (update_tags: the tags a
                    # segment split or a tag-date wait reads next): read it again.
                    self.shared.forget()
            for (step_id, key), n in visit.stats.items():
                if not dry:
                    stats[(run.project_id, run.journey_id, step_id, key)] += n
            if isinstance(outcome, Go) and outcome.outlet not in step.outlets:
                raise ValueError(f"Step {step.id!r} has no outlet {outcome.outlet!r}.")
            if not isinstance(outcome, Go | Wait | Exit):
                raise TypeError(f"Step {step.id!r} returned {outcome!r}, not Go, Wait or Exit.")
            if not isinstance(outcome, Wait):
                record.finished_at = self.now
                record.outlet = outcome.outlet if isinstance(outcome, Go) else ""
            if record.pk is None:
                pass  # a pure step's new visit: written by flush, as it is now
            elif pure:
                changed.append(record)
            else:
                record.save()
            if isinstance(outcome, Wait):
                run.state = RunState.WAITING
                run.wake_at = outcome.until
                run.waiting_events = list(outcome.events)
                return
            if isinstance(outcome, Exit):
                self._done(run, definition, outcome.reason or "exit_step", count)
                return
            count(step.id, f"passed:{outcome.outlet}")
            target = step.outlets[outcome.outlet]
            if target is None:
                self._done(run, definition, "completed", count)
                return
            run.step_id = target
            run.state, run.wake_at, run.waiting_events = RunState.READY, self.now, []
            wake = Wake()
        # MAX_MOVES steps without a wait: the next tick goes on from here.
        run.state, run.wake_at, run.waiting_events = RunState.READY, self.now, []

    def _done(
        self, run: JourneyRun, definition: Definition, reason: str, count: Callable[[str, str], None]
    ) -> None:
        run.state = RunState.DONE
        run.exited_at = self.now
        run.exit_reason = reason[:40]
        run.wake_at = None
        run.waiting_events = []
        if definition.settings.reentry == "after_exit":
            run.exclusive = None  # the subscriber may enter again
        count("", f"exited:{reason}")

    def _failed(self, run: JourneyRun, journey: Journey, exc: Exception) -> None:
        run.attempts += 1
        run.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        logger.warning(
            "journeys: run %s at step %s failed (attempt %d): %s",
            run.public_id,
            run.step_id,
            run.attempts,
            type(exc).__name__,
            exc_info=True,
        )
        if run.attempts >= MAX_ATTEMPTS:
            try:
                definition = self.definition(run, journey)
            except Exception:  # the version itself cannot be read: end the run all the same
                definition = parse({"name": "-", "entry": {"type": "api"}, "steps": []})
            errors: Counter[tuple[int, int, str, str]] = Counter()

            def count(step_id: str, key: str) -> None:
                if not run.dry_run:
                    errors[(run.project_id, run.journey_id, step_id, key)] += 1

            self._done(run, definition, "error", count)
            self.stats.update(errors)
        else:
            run.wake_at = self.now + BACKOFF[min(run.attempts, len(BACKOFF)) - 1]

    def flush(self) -> None:
        """Write back every run, visit and counter of the batch (a few statements)."""
        now = timezone.now()
        if self.new_visits:
            JourneyRunStep.objects.bulk_create(list(self.new_visits.values()), batch_size=1000)
        if self.changed_visits:
            bulk_set(JourneyRunStep, list(self.changed_visits.values()), VISIT_FIELDS)
        if self.touched:
            for run in self.touched.values():
                run.updated_at = now
            bulk_set(JourneyRun, list(self.touched.values()), RUN_FIELDS)
        if self.stats:
            counters.bump_many(self.stats)
        self.new_visits.clear()
        self.changed_visits.clear()
        self.touched.clear()
        self.stats.clear()


def bulk_set(model: type[Any], objs: Sequence[Any], fields: Sequence[str], *, chunk: int = 500) -> None:
    """Write ``fields`` of ``objs`` back, a few statements for any number of rows.

    Django's ``bulk_update`` builds a ``CASE WHEN id = ...`` per field and row: for 500 runs and 13
    fields that cost ~10 CPU-seconds a batch (profiled), the whole engine's budget many times
    over. PostgreSQL: one ``UPDATE ... FROM unnest(<one array per column>)`` (a parameter per
    column, not per value: psycopg's parsing of a statement with thousands of placeholders was
    the next cost). SQLite (3.33+): ``UPDATE ... FROM (VALUES ...)`` per chunk.
    """
    if not objs:
        return
    meta = model._meta
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    names = ", ".join(_q(field.column) for field in columns)
    sets = ", ".join(f"{_q(field.column)} = v.{_q(field.column)}" for field in columns[1:])
    table = _q(meta.db_table)
    where = f"{table}.{_q(meta.pk.column)} = v.{_q(meta.pk.column)}"
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in columns)
        params = [
            [field.get_db_prep_save(getattr(obj, field.attname), connection) for obj in objs]
            for field in columns
        ]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {sets} FROM unnest({arrays}) AS v({names}) WHERE {where}",  # noqa: S608
                params,
            )
        return
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    for start in range(0, len(objs), chunk):
        part = objs[start : start + chunk]
        params = [
            field.get_db_prep_save(getattr(obj, field.attname), connection)
            for obj in part
            for field in columns
        ]
        sql = (
            f"WITH v({names}) AS (VALUES {', '.join([row] * len(part))}) "  # noqa: S608 - names from code
            f"UPDATE {table} SET {sets} FROM v WHERE {where}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def _silent_until(
    definition: Definition, journey: Journey, subscriber: Any, now: datetime, channel: str
) -> datetime | None:
    """When the silent hours that hold a send step of ``channel`` now end; None: it may go.
    A subscriber without a zone is in the journey's fallback zone, else the project's, as waits
    and segment entries take it (timezones.subscriber_zone)."""
    settings = definition.settings
    if settings.silent_hours is None:
        return None
    if settings.silent_channels is not None and channel not in settings.silent_channels:
        return None
    start, end = (timezones.parse_hhmm(bound) for bound in settings.silent_hours)
    if start is None or end is None:
        return None
    tz = timezones.subscriber_zone(subscriber.time_zone, definition, journey.project)
    return timezones.silent_until(now, start, end, tz)


# --- events --------------------------------------------------------------------------------------


def wake_for_events(events: Sequence[Any]) -> int:
    """Advance the runs waiting for these events (a feed batch, in feed order); how many moves.

    Called by the feed consumer inside its transaction, so the moves commit with its position:
    exactly once. One query finds the waiting runs of the batch's subscribers (locked: a tick
    advancing one of them finishes first); each subscriber's events reach their runs in order.
    Runs of paused journeys are not woken (they hold; their timers still run out when resumed).
    """
    by_subscriber: dict[int, list[Any]] = {}
    for event in events:
        if event.subscriber_id is not None:
            by_subscriber.setdefault(event.subscriber_id, []).append(event)
    if not by_subscriber:
        return 0
    names = {event.name for event in events}
    candidates = (
        JourneyRun.objects.select_for_update(of=("self",))
        .filter(
            subscriber_id__in=list(by_subscriber),
            state=RunState.WAITING,
            dry_run=False,
            journey__status=JourneyStatus.ACTIVE,
        )
        .order_by("pk")
    )
    runs = [run for run in candidates if names.intersection(run.waiting_events or [])]
    if not runs:
        return 0
    runs_of: dict[int, list[JourneyRun]] = {}
    for run in runs:
        runs_of.setdefault(run.subscriber_id, []).append(run)
    batch = _Batch(now=timezone.now())
    batch.load(runs)
    moved = 0
    for event in events:
        for run in runs_of.get(event.subscriber_id, ()):
            if run.state == RunState.WAITING and event.name in (run.waiting_events or []):
                batch.now = timezone.now()
                batch.advance(run, Wake(event=event_payload(event)))
                moved += 1
    batch.flush()
    return moved


# --- ending runs ---------------------------------------------------------------------------------


def exit_runs(
    *,
    journey: Journey | None = None,
    runs: QuerySet[JourneyRun] | Sequence[JourneyRun] | None = None,
    reason: str,
    now: datetime | None = None,
) -> int:
    """End live runs (``journey``'s, or those of ``runs``, or both filters): state done, reason
    ``reason``; counters ``exited:<reason>`` (dry runs not counted); their open visits are closed.

    Set-based in chunks of ids (locked on PostgreSQL), so stopping a journey of a million runs is a
    few hundred statements, not a million. Idempotent: a run already done is left as it is.
    """
    if journey is None and runs is None:
        raise ValueError("exit_runs needs a journey or runs")
    now = now or timezone.now()
    if runs is not None and not isinstance(runs, QuerySet):
        runs = JourneyRun.objects.filter(pk__in=[run.pk for run in runs])  # the consumer's run objects
    scope = runs if runs is not None else JourneyRun.objects.all()
    if journey is not None:
        scope = scope.filter(journey_id=journey.pk)
    scope = JourneyRun.objects.filter(pk__in=scope.values("pk")).live()
    ended = 0
    last = 0
    reentry: dict[tuple[int, int], str] = {}
    while True:
        with transaction.atomic():
            rows = list(
                scope.filter(pk__gt=last)
                .select_for_update(of=("self",))
                .order_by("pk")
                .values_list("pk", "project_id", "journey_id", "version", "dry_run")[:5000]
            )
            if not rows:
                break
            last = rows[-1][0]
            stats: Counter[tuple[int, int, str, str]] = Counter()
            clear, keep = [], []
            for pk, project_id, journey_id, version, dry in rows:
                if (journey_id, version) not in reentry:
                    reentry[(journey_id, version)] = _reentry(journey_id, version)
                (clear if reentry[(journey_id, version)] == "after_exit" else keep).append(pk)
                if not dry:
                    stats[(project_id, journey_id, "", f"exited:{reason}")] += 1
            common = {
                "state": RunState.DONE,
                "exited_at": now,
                "exit_reason": reason[:40],
                "wake_at": None,
                "waiting_events": [],
                "lease_until": None,
                "updated_at": now,
            }
            live = JourneyRun.objects.exclude(state=RunState.DONE)
            if clear:
                ended += live.filter(pk__in=clear).update(exclusive=None, **common)
            if keep:
                ended += live.filter(pk__in=keep).update(**common)
            JourneyRunStep.objects.filter(run_id__in=[r[0] for r in rows], finished_at__isnull=True).update(
                finished_at=now
            )
            counters.bump_many(stats)
    return ended


def _reentry(journey_id: int, version: int) -> str:
    journey = Journey.objects.only("pk", "public_id").get(pk=journey_id)
    try:
        return definition_of(journey, version).settings.reentry
    except Exception:  # a draft-only dry run (version 0) has no frozen version
        return "after_exit"


# --- latency -------------------------------------------------------------------------------------


def kick() -> None:
    """Ask for a tick after the current transaction commits (latency only: the scheduler's tick
    every second is the durable path, so a lost kick costs at most a second)."""

    def send() -> None:
        from .actors import advance_journeys

        try:
            advance_journeys.send()
        except Exception:
            logger.warning("journeys: could not enqueue a tick", exc_info=True)

    transaction.on_commit(send)
