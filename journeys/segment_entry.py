"""Segment entries: the members of a segment (or a rule) enter a journey once or on a schedule.

The entry (docs/journeys.md) is ``{"type": "segment", "segment": "<public id>" | "rule": {...},
"schedule": {...}}``; the schedule is one of:

==========================================================  =========================================
``{}`` (or no schedule)                                     once, when the journey is activated
``{"at": "2026-12-24T09:00:00+01:00"}``                     once, at that moment (no offset: the
                                                            journey's zone)
``{"local_time": "09:00", "at"?: "2026-12-24"}``            once, at 09:00 on that day (default: the
                                                            next day it is still ahead everywhere) in
                                                            each subscriber's zone
``{"every": "P1D" | "P2W", "time": "09:00", "at"?: day}``   every N days or weeks at 09:00 in the
                                                            journey's zone, from ``at`` (default: the
                                                            next 09:00)
``{"every": "P1W", "local_time": "09:00", "at"?: day}``     the same, at 09:00 in each subscriber's zone
==========================================================  =========================================

The journey's zone is ``settings.fallback_time_zone`` when the definition sets it, else the
project's. A subscriber without a (known) zone uses it too.

How it runs: ``Journey.next_entry_at`` is the next firing of any of the journey's segment
entries; ``schedule(journey)`` sets it when the journey is activated or resumed, and the scheduler
tick (``fire_due``, every 5 s) claims the journeys whose time has come with ``FOR UPDATE SKIP
LOCKED`` and enters the members of each entry due with one ``INSERT ... SELECT``
(``entry.enter_audience``). The entry key is ``segment:<firing>:<subscriber id>`` (the firing in
UTC, ISO 8601 basic format: ``20261224T080000Z``): a firing re-run after a crash (its transaction
rolled back, or the same firing claimed again) enters nobody twice, and a subscriber in two
segment entries of one firing enters once. Firings missed while the journey
was paused or the workers were down are not caught up: the next one is the first still ahead.

Per-subscriber local times: a ``local_time`` firing happens when that time comes in the earliest
zone on Earth (UTC+14), and each run starts with ``wake_at`` at that time in its subscriber's zone
(the engine leaves it until then). PostgreSQL computes it in the INSERT (``AT TIME ZONE``, an
unknown zone name falling back through a hashed look-up in ``pg_timezone_names``); SQLite has no
time zones, so there the few distinct zones of the audience are converted in Python (zoneinfo) and
applied with a ``CASE``, as campaigns do.

Who enters: the segment's members as the segment compiler finds them at the firing, i.e. the
project's subscribers that exist (an erased subscriber is deleted, so never enters). Consent is
not checked here: the send steps check it (and skip with a reason) when a message would go out,
so a journey may hold subscribers who are only reached by a tag update or a webhook.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from datetime import timezone as dt_timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from subscribers.errors import InvalidInput
from subscribers.models import Segment, Subscriber
from subscribers.segments import compiler
from subscribers.segments.text import RuleSyntaxError, parse_rule

from . import timezones
from .definition import Definition, Entry, parse_duration
from .entry import enter_audience
from .models import Journey, JourneyStatus
from .versions import definition_of

logger = logging.getLogger(__name__)

# The earliest local time on Earth: a local-time firing happens when its hour starts there.
EARLIEST = dt_timezone(timedelta(hours=14))
# Journeys fired per call at most; the next tick (5 s) takes the rest.
MAX_JOURNEYS = 50


# ---- when ---------------------------------------------------------------------------------------


def next_firing(
    entry: Entry, after: datetime, *, last: datetime | None = None, zone: tzinfo = UTC
) -> datetime | None:
    """The entry's next firing at or after ``after``; None when it fires no more.

    ``last`` is the journey's last firing (None: it never fired): a once entry fires only if it
    has not fired yet, and a recurring one keeps its cadence from ``last`` (every N days after it).
    ``after`` is when the journey was activated (to find a first firing) or "now" (to find the
    next one). ``zone`` is the journey's zone. A schedule that cannot be read never fires (the
    definition's validation names the problem before activation).
    """
    if entry.type != "segment":
        return None
    schedule = entry.data.get("schedule") or {}
    if not isinstance(schedule, dict):
        return None
    local = _time(schedule.get("local_time"))
    if schedule.get("local_time") is not None and local is None:
        return None
    if schedule.get("every") is not None:
        return _recurring(schedule, after, last, zone, local)
    if local is not None:
        day = _day(schedule.get("at"), zone)
        if schedule.get("at") is not None and day is None:
            return None
        if day is None:
            if last is not None:
                return None
            return _first_at_or_after(after, local, EARLIEST)
        at = datetime.combine(day, local, tzinfo=EARLIEST)
        return at if last is None or last < at else None
    if schedule.get("at") is not None:
        at = _moment(schedule["at"], zone)
        if at is None:
            return None
        return at if last is None or last < at else None
    return after if last is None else None  # once, at activation


def _recurring(
    schedule: dict[str, Any], after: datetime, last: datetime | None, zone: tzinfo, local: time | None
) -> datetime | None:
    every = parse_duration(schedule.get("every"))
    if every is None or every.days < 1 or every.seconds:
        return None  # whole days or weeks only
    at_time = local if local is not None else _time(schedule.get("time") or "00:00")
    if at_time is None:
        return None
    where = EARLIEST if local is not None else zone
    step = every.days
    if last is not None:
        day = last.astimezone(where).date() + timedelta(days=step)
    elif schedule.get("at") is not None:
        day = _day(schedule["at"], zone)
        if day is None:
            return None
    else:
        return _first_at_or_after(after, at_time, where)
    # Keep the cadence, skipping what was missed (a pause, workers down): the first one ahead.
    behind = (after.astimezone(where).date() - day).days
    if behind > 0:
        day += timedelta(days=(behind // step) * step)
    while (firing := datetime.combine(day, at_time, tzinfo=where)) < after:
        day += timedelta(days=step)
    return firing


def _first_at_or_after(after: datetime, at_time: time, where: tzinfo) -> datetime:
    day = after.astimezone(where).date()
    firing = datetime.combine(day, at_time, tzinfo=where)
    return firing if firing >= after else datetime.combine(day + timedelta(days=1), at_time, tzinfo=where)


def journey_zone(journey: Journey, definition: Definition) -> tzinfo:
    """``settings.fallback_time_zone`` when the definition sets it, else the project's zone: the
    zone of a subscriber without one (``timezones.fallback_name``, as waits read it)."""
    return _zone(timezones.fallback_name(definition, journey.project), UTC)


def _next(journey: Journey, definition: Definition, after: datetime) -> datetime | None:
    zone = journey_zone(journey, definition)
    firings = [
        next_firing(entry, after, last=journey.last_entry_at, zone=zone)
        for entry in definition.entries
        if entry.type == "segment"
    ]
    return min((f for f in firings if f is not None), default=None)


def schedule(journey: Journey, *, now: datetime | None = None) -> datetime | None:
    """Set ``next_entry_at`` from the journey's active version; call it when a journey is
    activated or resumed, in that transaction (after its status and version are set).

    Saves only ``next_entry_at``; returns it (None: no segment entry fires any more).
    """
    now = now or timezone.now()
    next_at = None
    if journey.status == JourneyStatus.ACTIVE and journey.version:
        definition = definition_of(journey, journey.version)
        next_at = _next(journey, definition, journey.activated_at or now)
    if next_at != journey.next_entry_at:
        journey.next_entry_at = next_at
        Journey.objects.filter(pk=journey.pk).update(next_entry_at=next_at)
    return next_at


# ---- firing -------------------------------------------------------------------------------------


def fire_due(*, now: datetime | None = None) -> int:
    """Fire the segment entries of every active journey whose ``next_entry_at`` has come; returns
    how many subscribers entered.

    Each journey in its own transaction, claimed with ``FOR UPDATE SKIP LOCKED``: two workers fire
    different journeys, never one twice; a firing that fails rolls back whole (nobody entered, the
    firing stays due) and is tried again by the next tick, without holding up the other journeys.
    """
    now = now or timezone.now()
    entered = 0
    failed: list[int] = []
    for _ in range(MAX_JOURNEYS):
        claimed = None
        try:
            with transaction.atomic():
                journey = (
                    Journey.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("project")
                    .filter(status=JourneyStatus.ACTIVE, next_entry_at__lte=now)
                    .exclude(pk__in=failed)
                    .order_by("next_entry_at")
                    .first()
                )
                if journey is None:
                    break
                claimed = journey.pk
                entered += _fire(journey, now)
        except Exception:
            logger.exception("journey %s: segment entry failed", claimed)
            if claimed is None:
                break  # the claim itself failed (database down): the next tick tries again
            failed.append(claimed)
    return entered


def _fire(journey: Journey, now: datetime) -> int:
    definition = definition_of(journey, journey.version)
    firing = journey.next_entry_at
    zone = journey_zone(journey, definition)
    after = journey.activated_at or firing
    # ISO 8601 basic format in UTC, to the second: short keys keep the (journey, entry_key) index of
    # a million runs small; two firings of one journey are never within a second of each other.
    prefix = f"segment:{firing.astimezone(UTC):%Y%m%dT%H%M%SZ}:"
    entered = 0
    for entry in definition.entries:
        due = next_firing(entry, after, last=journey.last_entry_at, zone=zone)
        if due is None or due > firing:
            continue
        ids = members(journey, entry)
        if ids is None:
            continue
        local = _time((entry.data.get("schedule") or {}).get("local_time"))
        wake = None
        if local is not None:
            wake = local_wake_sql(datetime.combine(firing.astimezone(EARLIEST).date(), local), zone, ids)
        entered += enter_audience(journey, ids, entry_key_prefix=prefix, now=now, wake_at_sql=wake)
    journey.last_entry_at = firing
    journey.next_entry_at = _next(journey, definition, max(now, firing + timedelta(microseconds=1)))
    journey.save(update_fields=["last_entry_at", "next_entry_at"])
    return entered


def members(journey: Journey, entry: Entry) -> QuerySet | None:
    """The entry's audience now as a query of subscriber ids; None (logged) when it has none: the
    segment was deleted, or its rule no longer compiles (a tag it names was deleted)."""
    project = journey.project
    tree: Any = entry.data.get("rule")
    if entry.data.get("segment"):
        segment_id = entry.data["segment"]
        segment = Segment.objects.for_project(project).filter(public_id=_uuid(segment_id)).first()
        if segment is None:
            logger.warning("journey %s: segment %s is gone: nobody entered", journey.pk, segment_id)
            return None
        tree = segment.rule
    try:
        if isinstance(tree, str):
            tree = parse_rule(tree)
        if not tree:
            return None
        return compiler.audience(project, tree).values("id")
    except (InvalidInput, RuleSyntaxError) as exc:
        logger.warning("journey %s: the segment entry's rule does not compile: %s", journey.pk, exc)
        return None


def local_wake_sql(local: datetime, zone: tzinfo, ids: QuerySet) -> tuple[str, list[Any]]:
    """SQL over ``s`` (the subscriber row): the naive ``local`` date-time in the subscriber's zone
    (``zone`` for one without a known zone), as an aware timestamp."""
    fallback = getattr(zone, "key", None) or "UTC"
    if connection.vendor == "postgresql":
        # The subquery is uncorrelated: PostgreSQL hashes the zone names once per statement.
        return (
            "CAST(%s AS timestamp) AT TIME ZONE CASE WHEN s.time_zone IN"
            " (SELECT name FROM pg_timezone_names) THEN s.time_zone ELSE %s END",
            [local.isoformat(sep=" "), fallback],
        )
    names = Subscriber.objects.filter(pk__in=ids).order_by().values_list("time_zone", flat=True).distinct()
    sql, params = ["CASE s.time_zone"], []
    for name in names:
        if name:
            sql.append("WHEN %s THEN %s")
            params += [name, _utc(local, _zone(name, zone))]
    sql.append("ELSE %s END")
    params.append(_utc(local, zone))
    return " ".join(sql), params


# ---- reading the schedule ------------------------------------------------------------------------


def _utc(local: datetime, zone: tzinfo) -> Any:
    return connection.ops.adapt_datetimefield_value(local.replace(tzinfo=zone).astimezone(UTC))


def _zone(name: Any, fallback: tzinfo) -> tzinfo:
    if not isinstance(name, str) or not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def _time(value: Any) -> time | None:
    if not isinstance(value, str):
        return None
    try:
        return time.fromisoformat(value.strip()).replace(tzinfo=None)
    except ValueError:
        return None


def _moment(value: Any, zone: tzinfo) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def _day(value: Any, zone: tzinfo) -> date | None:
    """A date, or the date (in ``zone``) of a date-time."""
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        moment = _moment(value, zone)
        return moment.astimezone(zone).date() if moment is not None else None


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
