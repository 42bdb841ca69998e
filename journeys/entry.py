"""Entering a journey: the one place runs are created (event, segment and API entries, dry runs).

The re-entry rule and the entry cap are decided here, for every kind of entry, so they cannot
differ between them. Deduplication is in the database: one run per (journey, entry_key), and for
``never`` / ``after_exit`` one run per (journey, subscriber, exclusive="1"), so two entries racing
for one subscriber start one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count

from . import counters
from .definition import Definition
from .models import Journey, JourneyRun, RunState
from .versions import definition_of


@dataclass(frozen=True)
class Arrival:
    subscriber_id: int
    entry_key: str  # "event:<id>", "segment:<firing>:<subscriber>", "api:<request>:<subscriber>"
    context: dict[str, Any] = field(default_factory=dict)  # {"event": {...}} / {"values": {...}}


def enter(
    journey: Journey, arrivals: Sequence[Arrival], *, now: datetime, dry_run: bool = False
) -> list[JourneyRun]:
    """Start a run for each arrival allowed in; returns the runs started (ready at ``now``).

    Idempotent: an arrival whose entry_key already started a run starts nothing. A subscriber
    who arrives twice in one call enters once.
    """
    if not arrivals or not journey.version:
        return []
    definition = definition_of(journey, journey.version)
    allowed = _allowed(journey, definition, arrivals, now)
    if not allowed or definition.first is None:
        return []
    exclusive = None if definition.settings.reentry == "any_time" else "1"
    runs = [
        JourneyRun(
            project_id=journey.project_id,
            journey=journey,
            version=journey.version,
            subscriber_id=a.subscriber_id,
            state=RunState.READY,
            step_id=definition.first,
            wake_at=now,
            context=a.context,
            entry_key=a.entry_key[:200],
            exclusive=None if dry_run else exclusive,
            dry_run=dry_run,
            entered_at=now,
        )
        for a in allowed
    ]
    JourneyRun.objects.bulk_create(runs, ignore_conflicts=True)
    started = list(
        JourneyRun.objects.filter(journey=journey, entry_key__in=[r.entry_key for r in runs], entered_at=now)
    )
    if started and not dry_run:
        counters.bump(journey.project_id, journey.pk, {("", "entered"): len(started)})
    return started


def _allowed(
    journey: Journey, definition: Definition, arrivals: Sequence[Arrival], now: datetime
) -> list[Arrival]:
    settings = definition.settings
    seen: set[int] = set()
    unique = []
    for arrival in arrivals:
        if arrival.subscriber_id not in seen:
            seen.add(arrival.subscriber_id)
            unique.append(arrival)
    ids = [a.subscriber_id for a in unique]
    runs = JourneyRun.objects.filter(journey=journey, subscriber_id__in=ids, dry_run=False)
    blocked: set[int] = set()
    if settings.reentry == "never":
        blocked |= set(runs.values_list("subscriber_id", flat=True))
    elif settings.reentry == "after_exit":
        blocked |= set(runs.live().values_list("subscriber_id", flat=True))
    elif settings.reentry_gap is not None:
        blocked |= set(
            runs.filter(entered_at__gt=now - settings.reentry_gap).values_list("subscriber_id", flat=True)
        )
    if settings.entry_cap:
        capped = runs
        if settings.entry_cap_period is not None:
            capped = capped.filter(entered_at__gt=now - settings.entry_cap_period)
        blocked |= {
            row["subscriber_id"]
            for row in capped.values("subscriber_id")
            .annotate(n=Count("id"))
            .filter(n__gte=settings.entry_cap)
        }
    return [a for a in unique if a.subscriber_id not in blocked]
