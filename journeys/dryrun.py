"""Dry runs: a journey walked by a test subscriber on a simulated clock, for the panel's dry run page.

A dry run is a ``JourneyRun`` with ``dry_run=True``: the tick never claims it, the feed never wakes
it, counters never count it, and steps write into their visit's ``detail`` what they would have
done instead of doing it (no message to Meta, no tag written, no webhook called). Its clock is
``context["clock"]`` (ISO): it starts at the real time and moves only when the marketer fast-
forwards. A draft can be dry-run too: its definition is stored in ``context["definition"]`` and
the engine parses it from there instead of a frozen version.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from .definition import parse
from .engine import Wake, _Batch
from .entry import Arrival, enter
from .models import Journey, JourneyRun, JourneyRunStep, RunState
from .versions import definition_of


def clock(run: JourneyRun) -> datetime:
    """The run's simulated now."""
    value = (run.context or {}).get("clock")
    return datetime.fromisoformat(value) if value else run.entered_at


@transaction.atomic
def start(
    *,
    journey: Journey,
    subscriber: Any,
    definition: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
) -> JourneyRun:
    """Start a dry run of ``journey`` (its active version, or ``definition``: a draft, parsed now:
    DefinitionError when it is not valid) for ``subscriber`` and walk it to its first wait.

    ``event`` (``{"name", "attributes"}``) is the entry event as the feed would hand it to a real
    run: steps read ``{{ event.<attribute> }}`` from it, and an inbound message opens the window.
    """
    if subscriber.project_id != journey.project_id:
        raise ValueError("The subscriber belongs to another project.")
    now = timezone.now()
    draft = definition
    if draft is None and not journey.version:
        draft = journey.definition  # never activated: the saved draft
    parsed = parse(draft) if draft is not None else None
    key = f"dry:{uuid.uuid4()}"
    context: dict[str, Any] = {"clock": now.isoformat()}
    if event is not None:
        context["event"] = {
            "id": None,
            "name": str(event.get("name") or ""),
            "attributes": dict(event.get("attributes") or {}),
            "occurred_at": now.isoformat(),
        }
    run = None
    if parsed is None:
        # The one entry path; dry runs are exempt from the re-entry rule only where it refuses.
        started = enter(journey, [Arrival(subscriber.pk, key, context)], now=now, dry_run=True)
        run = started[0] if started else None
    if run is None:
        if draft is not None:
            context["definition"] = draft
        first = (parsed or definition_of(journey, journey.version)).first
        run = JourneyRun.objects.create(
            project_id=journey.project_id,
            journey=journey,
            version=journey.version,
            subscriber=subscriber,
            state=RunState.READY if first else RunState.DONE,
            step_id=first or "",
            wake_at=now,
            context=context,
            entry_key=key,
            dry_run=True,
            entered_at=now,
        )
    _advance(run, now=clock(run), wake=Wake())
    run.refresh_from_db()
    return run


def _advance(run: JourneyRun, *, now: datetime, wake: Wake) -> list[JourneyRunStep]:
    before = {v.pk: (v.finished_at, v.outlet) for v in JourneyRunStep.objects.filter(run=run)}
    run = JourneyRun.objects.select_for_update().get(pk=run.pk)
    if run.state == RunState.DONE:
        return []
    run.context = {**(run.context or {}), "clock": now.isoformat()}
    batch = _Batch(now=now)
    batch.load([run])
    batch.advance(run, wake)
    batch.flush()
    return [v for v in timeline(run) if v.pk not in before or before[v.pk] != (v.finished_at, v.outlet)]


@transaction.atomic
def fast_forward(run: JourneyRun) -> list[JourneyRunStep]:
    """Move the run's clock to its next wake (the end of its wait) and advance it; the visits made
    or finished by that. A run that waits only for an event, or is done, does not move."""
    run = JourneyRun.objects.get(pk=run.pk, dry_run=True)
    if run.state == RunState.DONE or run.wake_at is None:
        return []
    now = max(clock(run), run.wake_at)
    return _advance(run, now=now, wake=Wake(timer=True))


@transaction.atomic
def fire(run: JourneyRun, name: str, attributes: dict[str, Any] | None = None) -> list[JourneyRunStep]:
    """Deliver the event ``name`` to a waiting dry run (as the feed would a real one); the visits it
    made or finished. An event the run is not waiting for changes nothing."""
    run = JourneyRun.objects.get(pk=run.pk, dry_run=True)
    if run.state != RunState.WAITING or name not in (run.waiting_events or []):
        return []
    now = clock(run)
    event = {
        "id": None,
        "name": name,
        "attributes": dict(attributes or {}),
        "occurred_at": now.isoformat(),
    }
    return _advance(run, now=now, wake=Wake(event=event))


def timeline(run: JourneyRun) -> list[JourneyRunStep]:
    """The run's visits in the order it made them, with what each did (``detail``, ``outlet``)."""
    return list(
        JourneyRunStep.objects.filter(run_id=run.pk).select_related("message").order_by("entered_at", "pk")
    )
