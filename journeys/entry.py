"""Entering a journey: the one place runs are created (event, segment and API entries, dry runs).

Every entry is one ``INSERT ... SELECT ... WHERE <entry rules> ON CONFLICT DO NOTHING``, built by
``_insert_runs`` from a source of arrivals: a ``VALUES`` list (``enter``: events, API lists, dry
runs) or a query of subscriber ids (``enter_audience``: a segment of a million). The entry rules
are written once, as SQL (``entry_rules``), so an event entry and a segment entry cannot disagree
and a million arrivals cost one statement, not a query each:

- re-entry ``never``: no earlier (real) run of the subscriber in this journey;
- ``after_exit``: no live run (state other than done);
- ``any_time`` with ``reentry_gap``: no run entered within the gap;
- ``entry_cap {count, period}``: fewer than ``count`` runs entered within the period (ever: no period).

Deduplication is in the database: one run per (journey, entry_key), and for ``never`` /
``after_exit`` one run per (journey, subscriber, exclusive="1"), so two entries racing for one
subscriber start one run. A gap or a cap is a count, which no unique index can hold: while one
applies, entries into the journey take a transaction-level advisory lock on PostgreSQL (SQLite
serialises writers anyway), so two entries at once cannot both slip under the cap.

Dry runs (``dry_run=True``) are simulations of the path: they are deduplicated by entry key but
not held to the re-entry rule or the cap (a test subscriber who went through the journey for real
can still watch it), never hold ``exclusive`` and are never counted.

The ``("", "entered")`` counter moves in the same transaction as the insert.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import QuerySet

from controlpanel.sql import insert_select_columns, new_uuid_sql
from subscribers.models import Subscriber

from . import counters
from .definition import Definition, Settings
from .models import Journey, JourneyRun, RunState
from .versions import definition_of

# Arrivals per VALUES statement: 5 parameters each, well under SQLite's 32,766.
CHUNK = 2_000
ENTRY_KEY_MAX = 200
# First key of the advisory lock that serialises capped entries (the second is the journey id).
_LOCK_SPACE = 7_001


@dataclass(frozen=True)
class Arrival:
    subscriber_id: int
    entry_key: str  # "event:<id>", "segment:<firing>:<subscriber>", "api:<request>:<subscriber>"
    context: dict[str, Any] = field(default_factory=dict)  # {"event": {...}} / {"values": {...}}


def enter(
    journey: Journey,
    arrivals: Sequence[Arrival],
    *,
    now: datetime,
    dry_run: bool = False,
    definition: Definition | None = None,
) -> list[JourneyRun]:
    """Start a run for each arrival allowed in; returns the runs started (ready at ``now``).

    Idempotent: an arrival whose entry_key already started a run starts nothing. A subscriber
    who arrives twice in one call enters once (the first arrival). ``definition``: a dry run of a
    draft (the journey's version is 0 then); otherwise the journey's current version is walked.
    """
    definition = definition or _current(journey)
    if not arrivals or definition is None or definition.first is None:
        return []
    unique: dict[int, Arrival] = {}
    for arrival in arrivals:
        unique.setdefault(arrival.subscriber_id, arrival)
    ids: list[int] = []
    with transaction.atomic():
        _lock_if_counted(journey, definition.settings, dry_run)
        batch = list(unique.values())
        for start in range(0, len(batch), CHUNK):
            source, params = _values_source(batch[start : start + CHUNK], now)
            ids += _insert_runs(journey, definition, source, params, now=now, dry_run=dry_run, returning=True)
        if ids and not dry_run:
            counters.bump(journey.project_id, journey.pk, {("", "entered"): len(ids)})
    return list(JourneyRun.objects.filter(pk__in=ids).order_by("pk")) if ids else []


def enter_audience(
    journey: Journey,
    subscriber_ids_query: QuerySet,
    *,
    entry_key_prefix: str,
    now: datetime,
    wake_at_sql: tuple[str, Sequence[Any]] | str | None = None,
    context: dict[str, Any] | None = None,
) -> int:
    """Enter every subscriber of ``subscriber_ids_query`` (a query of one column of subscriber ids
    of the journey's project, e.g. ``compiler.audience(project, rule).values("id")``: the caller
    scopes it, as both callers do by starting from ``for_project``) in one statement; returns how
    many entered. The entry key is ``entry_key_prefix`` + the subscriber id, so running it again (a
    firing re-run after a crash, an API request retried) enters nobody twice.

    ``wake_at_sql``: when each run should first be looked at, an SQL expression (with its
    parameters) over ``s``, the subscriber row (``s.time_zone``); default ``now``. ``context``:
    the same JSON for every run (``{"values": {...}}`` of an API start).
    """
    definition = _current(journey)
    if definition is None or definition.first is None:
        return 0
    try:
        ids_sql, ids_params = subscriber_ids_query.order_by().query.sql_with_params()
    except EmptyResultSet:  # pk__in=[] or .none() (an API start naming only unknown subscribers)
        return 0
    if isinstance(wake_at_sql, str):
        wake_at_sql = (wake_at_sql, [])
    if wake_at_sql is None:
        # A CTE names the query's one column whatever it is called (SQLite cannot alias a
        # subquery's columns); PostgreSQL inlines it.
        with_sql, from_sql = f"WITH s(id) AS ({ids_sql}) ", "s"
        wake_sql, wake_params = _timestamp("%s"), [_datetime(now)]
    else:
        # The wake-up time reads the subscriber row (its time zone).
        with_sql = ""
        from_sql = f"{q(Subscriber._meta.db_table)} s WHERE s.project_id = %s AND s.id IN ({ids_sql})"
        wake_sql, wake_params = _timestamp(wake_at_sql[0]), list(wake_at_sql[1])
    context_sql, context_params = _json(context or {})
    source = (
        f"{with_sql}SELECT s.id AS subscriber_id, %s || CAST(s.id AS TEXT) AS entry_key,"  # noqa: S608
        f" {context_sql} AS context, {wake_sql} AS wake_at FROM {from_sql}"
    )
    if with_sql:
        params = [*ids_params, entry_key_prefix, *context_params, *wake_params]
    else:
        params = [entry_key_prefix, *context_params, *wake_params, journey.project_id, *ids_params]
    with transaction.atomic():
        _lock_if_counted(journey, definition.settings, False)
        with _no_nested_loops():
            entered = _insert_runs(
                journey, definition, source, params, now=now, dry_run=False, returning=False
            )
        if entered:
            counters.bump(journey.project_id, journey.pk, {("", "entered"): entered})
    return entered


def entry_rules(journey: Journey, settings: Settings, now: datetime) -> tuple[str, list[Any]]:
    """The re-entry rule and the entry cap as one SQL condition over ``a.subscriber_id``.

    The only definition of who may enter: ``enter`` and ``enter_audience`` both put it in the
    WHERE of their INSERT. Set-based: anti-joins and one grouped pass over the journey's runs, so a
    million arrivals cost no more than the index probes they need.
    """
    runs = q(JourneyRun._meta.db_table)
    mine = (
        f"SELECT 1 FROM {runs} r WHERE r.journey_id = %s"  # noqa: S608
        " AND r.subscriber_id = a.subscriber_id AND r.dry_run = %s"
    )
    conditions: list[str] = []
    params: list[Any] = []
    if settings.reentry == "never":
        conditions.append(f"NOT EXISTS ({mine})")
        params += [journey.pk, False]
    elif settings.reentry == "after_exit":
        conditions.append(f"NOT EXISTS ({mine} AND r.state <> %s)")
        params += [journey.pk, False, RunState.DONE.value]
    elif settings.reentry_gap is not None:
        conditions.append(f"NOT EXISTS ({mine} AND r.entered_at > %s)")
        params += [journey.pk, False, _datetime(now - settings.reentry_gap)]
    if settings.entry_cap:
        window, window_params = "", []
        if settings.entry_cap_period is not None:
            window, window_params = " AND c.entered_at > %s", [_datetime(now - settings.entry_cap_period)]
        conditions.append(
            f"a.subscriber_id NOT IN (SELECT c.subscriber_id FROM {runs} c"  # noqa: S608
            f" WHERE c.journey_id = %s AND c.dry_run = %s{window}"
            " GROUP BY c.subscriber_id HAVING COUNT(*) >= %s)"
        )
        params += [journey.pk, False, *window_params, settings.entry_cap]
    return (" AND ".join(conditions) or "1 = 1"), params


# ---- the one INSERT ----------------------------------------------------------------------------


def _insert_runs(
    journey: Journey,
    definition: Definition,
    source_sql: str,
    source_params: list[Any],
    *,
    now: datetime,
    dry_run: bool,
    returning: bool,
) -> Any:
    """``INSERT INTO journeyrun SELECT ... FROM (<source>) a WHERE <rules> ON CONFLICT DO NOTHING``.

    The source yields ``subscriber_id``, ``entry_key``, ``context`` and ``wake_at``. Returns the new
    run ids (``returning``) or how many were inserted.
    """
    exclusive = None if dry_run or definition.settings.reentry == "any_time" else "1"
    explicit: dict[str, tuple[str, list[Any]]] = {
        "project_id": ("%s", [journey.project_id]),
        "public_id": (new_uuid_sql(), []),
        "journey_id": ("%s", [journey.pk]),
        "version": ("%s", [journey.version]),
        "subscriber_id": ("a.subscriber_id", []),
        "state": ("%s", [RunState.READY.value]),
        "step_id": ("%s", [definition.first]),
        "wake_at": ("a.wake_at", []),
        "context": ("a.context", []),
        "entry_key": (f"SUBSTR(a.entry_key, 1, {ENTRY_KEY_MAX})", []),
        "exclusive": ("%s", [exclusive]),
        "dry_run": ("%s", [dry_run]),
        "entered_at": ("%s", [_datetime(now)]),
        "updated_at": ("%s", [_datetime(now)]),
    }
    columns, expressions, params = insert_select_columns(JourneyRun, explicit)
    rules_sql, rules_params = ("1 = 1", []) if dry_run else entry_rules(journey, definition.settings, now)
    # "WHERE": SQLite needs one before ON CONFLICT in INSERT ... SELECT (parsing ambiguity).
    sql = (
        f"INSERT INTO {q(JourneyRun._meta.db_table)} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(expressions)} FROM ({source_sql}) a WHERE {rules_sql} ON CONFLICT DO NOTHING"
    )
    all_params = [*params, *source_params, *rules_params]
    with connection.cursor() as cursor:
        if returning:
            cursor.execute(sql + " RETURNING id", all_params)
            return [row[0] for row in cursor.fetchall()]
        cursor.execute(sql, all_params)
        return max(cursor.rowcount, 0)


@contextmanager
def _no_nested_loops() -> Iterator[None]:
    """An audience entry joins a whole segment against the journey's runs: hash joins only.

    With the runs table analyzed as (nearly) empty, PostgreSQL probes it with a sequential scan per
    subscriber, and each scan also reads the rows this very statement has written so far (invisible
    to it, but in the heap): a million subscribers took hours instead of 14 s (docs/benchmarks.md).
    Set for this statement only, inside the entry's transaction.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_nestloop = off")
    yield  # an error rolls the transaction (or its savepoint) back, and the setting with it
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_nestloop = DEFAULT")


def _values_source(arrivals: Sequence[Arrival], now: datetime) -> tuple[str, list[Any]]:
    row = f"({_cast('%s', 'bigint')}, %s, {_json_sql()}, {_timestamp('%s')})"
    params: list[Any] = []
    for arrival in arrivals:
        params += [
            arrival.subscriber_id,
            arrival.entry_key[:ENTRY_KEY_MAX],
            json.dumps(arrival.context or {}, cls=DjangoJSONEncoder),
            _datetime(now),
        ]
    # VALUES names its columns column1.. on both PostgreSQL and SQLite.
    source = (
        "SELECT v.column1 AS subscriber_id, v.column2 AS entry_key, v.column3 AS context,"  # noqa: S608
        f" v.column4 AS wake_at FROM (VALUES {', '.join([row] * len(arrivals))}) v"
    )
    return source, params


def _current(journey: Journey) -> Definition | None:
    return definition_of(journey, journey.version) if journey.version else None


def _lock_if_counted(journey: Journey, settings: Settings, dry_run: bool) -> None:
    if dry_run or connection.vendor != "postgresql":
        return
    if settings.entry_cap or (settings.reentry == "any_time" and settings.reentry_gap is not None):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_SPACE, journey.pk])


# ---- vendor details ----------------------------------------------------------------------------


def q(name: str) -> str:
    return connection.ops.quote_name(name)


def _datetime(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _cast(sql: str, type_: str) -> str:
    return f"CAST({sql} AS {type_})" if connection.vendor == "postgresql" else sql


def _timestamp(sql: str) -> str:
    """A timestamp typed for PostgreSQL (a bare parameter in a subquery is text there)."""
    return _cast(sql, "timestamptz")


def _json_sql() -> str:
    return _cast("%s", "jsonb")


def _json(value: Any) -> tuple[str, list[Any]]:
    return _json_sql(), [json.dumps(value, cls=DjangoJSONEncoder)]
