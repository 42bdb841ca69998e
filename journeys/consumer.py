"""The durable event feed's consumer ``journeys`` (ADR 0003, ADR 0007): events move journeys.

One batch of events (in feed order, inside the feed's transaction that advances the position, so
everything written here happens exactly once per event) does four things, each set-based over
the batch, whatever its size:

a) **entries**: an event whose name starts an active journey of its project and whose entry
   conditions hold enters the subscriber (``entry.enter``: re-entry rules, caps and dedup by
   ``event:<id>`` are there). The active journeys of the batch's projects are loaded once.
b) **wakes**: runs waiting for one of the events are advanced (``engine.wake_for_events``).
c) **message statuses**: ``WhatsAppDelivered`` / ``WhatsAppRead`` / ``WhatsAppFailed`` (attribute
   ``message_id``, the wamid) and quick-reply presses (``WhatsAppReceived`` answering a message,
   ``WhatsAppButtonClicked``) count ``delivered`` / ``read`` / ``failed`` / ``clicked`` on the
   step that sent that message; ``EmailDelivered`` / ``EmailOpened`` / ``EmailClicked`` /
   ``EmailBounced`` / ``PushOpened`` (attribute ``message``, the message's public id) count
   ``delivered`` / ``opened`` / ``clicked`` / ``bounced`` (a hard bounce also ``failed``: it
   fails the row). A send the provider refused at once (no wamid: ``WhatsAppFailed``,
   ``EmailFailed``, ``PushFailed`` with ``message``, recorded by the sender's write-back) counts
   ``failed`` as a failure reported later does. Once per message and key: the visit row keeps
   the keys it counted (``detail["counted"]``), so a second press, a second open, or a status
   seen twice, counts nothing. A read or opened message was delivered even when no delivery
   report came: it counts both.
d) **goals**: an event that is a journey's conversion goal (name and conditions) within the
   goal's window after a run entered (measured from the entry event's time for event entries,
   so a consumer lagging behind cannot push the start after the goal) converts that run once:
   ``converted_at``, attributed to the last step whose message was read, else the last step
   whose message was sent (Pushwoosh's rule); ``converted`` counted journey-wide and on that
   step; with ``exit`` the run leaves the journey (``engine.exit_runs(reason="goal")``).
   Paused journeys still convert (the purchase happened); dry runs never do.

Queries per batch: one for the journeys, the entry path's few per journey that someone enters,
the engine's wake, a select per naming (wamid, public id) and one update for statuses, two
selects and one update for goals, and the counters (one upsert per journey touched).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.models import MessageStatus
from subscribers import feed
from subscribers.models import Event

from . import conditions, counters, engine
from .definition import Definition, Goal
from .entry import Arrival, enter
from .models import Journey, JourneyRun, JourneyRunStep, JourneyStatus, RunState
from .versions import definition_of

logger = logging.getLogger(__name__)

CONSUMER = "journeys"
STATUS_KEYS = {"WhatsAppDelivered": "delivered", "WhatsAppRead": "read", "WhatsAppFailed": "failed"}
# Email and push (campaigns.channel_events): an open or a click implies the message arrived.
CHANNEL_KEYS = {
    "EmailDelivered": ("delivered",),
    "EmailOpened": ("delivered", "opened"),
    "EmailClicked": ("delivered", "clicked"),
    "EmailBounced": ("bounced",),
    "PushOpened": ("delivered", "opened"),
    # Refused by the provider at send time (campaigns.sending._record_failures).
    "EmailFailed": ("failed",),
    "PushFailed": ("failed",),
}
BY_WAMID, BY_PUBLIC_ID = "wamid", "public_id"
SENT_STATUSES = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)


def register() -> None:
    """Called from ``JourneysConfig.ready``."""
    feed.register(CONSUMER, handle)


def event_payload(event: Event) -> dict[str, Any]:
    """An event as runs keep it (``run.context["event"]``, ``visit.event``)."""
    return {
        "id": event.pk,
        "name": event.name,
        "attributes": event.attributes if isinstance(event.attributes, dict) else {},
        "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
    }


@dataclass
class _Journeys:
    """The batch projects' journeys that events can enter (active) or convert (active, paused)."""

    entries: dict[tuple[int, str], list[tuple[Journey, list[list[dict]]]]]
    goals: dict[tuple[int, str], list[Journey]]


def handle(events: Sequence[Event]) -> None:
    if not events:
        return
    now = timezone.now()
    journeys = _load_journeys(events)
    started = _enter(events, journeys, now)
    _wake(events)
    _count_message_events(events)
    _convert(events, journeys, now)
    if started:
        _kick()


def _kick() -> None:
    engine.kick()  # a tick right after commit: a keyword reply goes now, not at the next scheduler tick


def _load_journeys(events: Sequence[Event]) -> _Journeys:
    projects = {e.project_id for e in events}
    names = {e.name for e in events}
    entries: dict[tuple[int, str], list[tuple[Journey, list[list[dict]]]]] = defaultdict(list)
    goals: dict[tuple[int, str], list[Journey]] = defaultdict(list)
    rows = (
        Journey.objects.filter(
            project_id__in=projects, status__in=[JourneyStatus.ACTIVE, JourneyStatus.PAUSED]
        )
        .filter(version__gt=0)
        .select_related("project")
        .order_by("pk")
    )
    for journey in rows:
        definition = _definition(journey)
        if definition is None:
            continue
        if journey.status == JourneyStatus.ACTIVE:
            by_event: dict[str, list[list[dict]]] = defaultdict(list)
            for entry in definition.entries:
                name = entry.data.get("event")
                if entry.type == "event" and name in names:
                    by_event[name].append(list(entry.data.get("conditions") or []))
            for name, condition_sets in by_event.items():
                entries[(journey.project_id, name)].append((journey, condition_sets))
        goal = definition.settings.goal
        if goal is not None and goal.event in names:
            goals[(journey.project_id, goal.event)].append(journey)
    return _Journeys(entries, goals)


def _definition(journey: Journey, version: int | None = None) -> Definition | None:
    try:
        return definition_of(journey, version or journey.version)
    except Exception:  # a version that no longer parses: its journey is skipped, the feed goes on
        logger.exception(
            "journey %s: version %s does not parse", journey.public_id, version or journey.version
        )
        return None


# --- a) entries ----------------------------------------------------------------------------------


def _enter(events: Sequence[Event], journeys: _Journeys, now: datetime) -> int:
    if not journeys.entries:
        return 0
    arrivals: dict[int, list[Arrival]] = defaultdict(list)
    by_pk: dict[int, Journey] = {}
    for event in events:
        for journey, condition_sets in journeys.entries.get((event.project_id, event.name), ()):
            attributes = event.attributes if isinstance(event.attributes, dict) else {}
            # Several entries of one journey that match one event: one arrival (and enter()
            # lets a subscriber in once per call).
            if any(conditions.matches(conds, attributes) for conds in condition_sets):
                by_pk[journey.pk] = journey
                arrivals[journey.pk].append(
                    Arrival(event.subscriber_id, f"event:{event.pk}", {"event": event_payload(event)})
                )
    started = 0
    for journey_pk, journey_arrivals in arrivals.items():
        started += len(enter(by_pk[journey_pk], journey_arrivals, now=now))
    return started


# --- b) wakes ------------------------------------------------------------------------------------


def _wake(events: Sequence[Event]) -> None:
    engine.wake_for_events(events)


# --- c) message statuses and clicks --------------------------------------------------------------


def _message_keys(event: Event) -> tuple[str, str, list[str]] | None:
    """(how the event names the message, the name, counter keys) for an event about a message we
    sent, or None. WhatsApp names it by wamid; email and push (``campaigns.channel_events``) by
    the message's public id (attribute ``message``)."""
    attributes = event.attributes if isinstance(event.attributes, dict) else {}
    if event.name in CHANNEL_KEYS:
        message = attributes.get("message")
        keys = list(CHANNEL_KEYS[event.name])
        if event.name == "EmailBounced" and attributes.get("bounce", "hard") == "hard":
            keys.append("failed")  # a hard bounce fails the row (channel_events), as WhatsAppFailed does
        return (BY_PUBLIC_ID, str(message), keys) if message else None
    if event.name in STATUS_KEYS:
        wamid = attributes.get("message_id")
        # A read message was delivered even when Meta's delivered status never came.
        keys = ["delivered", "read"] if STATUS_KEYS[event.name] == "read" else [STATUS_KEYS[event.name]]
        if wamid:
            return BY_WAMID, str(wamid), keys
        # A send Meta refused at POST time has no wamid: the sender names the row by its public id
        # (campaigns.sending._record_failures).
        message = attributes.get("message")
        return (BY_PUBLIC_ID, str(message), keys) if message else None
    pressed = attributes.get("button_text") or attributes.get("button_payload")
    if event.name == "WhatsAppReceived" and pressed and attributes.get("context_message_id"):
        return BY_WAMID, str(attributes["context_message_id"]), ["clicked"]
    if event.name == "WhatsAppButtonClicked" and attributes.get("message_id"):
        return BY_WAMID, str(attributes["message_id"]), ["clicked"]
    return None


Keyed = list[tuple[int, tuple[str, str, list[str]]]]  # (project id, (by, message name, keys))


def _visits_of(keyed: Keyed, by: str) -> dict[tuple[int, str], JourneyRunStep]:
    """(project id, message name) -> the visit that sent it, for the messages named ``by``; one
    query. Locked: the engine may be writing the same visit's detail (a button branch) meanwhile."""
    names = {name for _, (how, name, _) in keyed if how == by}
    if not names:
        return {}
    column = "message__wamid" if by == BY_WAMID else "message__public_id"
    if by == BY_PUBLIC_ID:
        names = {name for name in names if _is_uuid(name)}
    visits = (
        JourneyRunStep.objects.filter(
            project_id__in={project for project, _ in keyed}, **{f"{column}__in": names}
        )
        .select_related("run", "message")
        .select_for_update(of=("self",))
    )
    return {
        (v.project_id, str(v.message.wamid if by == BY_WAMID else v.message.public_id)): v
        for v in visits
        if not v.run.dry_run
    }


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _count_message_events(events: Sequence[Event]) -> None:
    keyed = [(event.project_id, key) for event in events if (key := _message_keys(event)) is not None]
    if not keyed:
        return
    found = {by: _visits_of(keyed, by) for by in (BY_WAMID, BY_PUBLIC_ID)}
    deltas: dict[tuple[int, int, str, str], int] = defaultdict(int)
    changed: dict[int, JourneyRunStep] = {}
    for project_id, (by, name, keys) in keyed:
        record = found[by].get((project_id, name))
        if record is None:
            continue
        # Once per message and key: a replayed event, a second open, or a status seen twice
        # counts nothing (the visit row keeps what it counted).
        counted = record.detail.setdefault("counted", [])
        for one in keys:
            if one in counted:
                continue
            counted.append(one)
            deltas[(record.project_id, record.run.journey_id, record.step_id, one)] += 1
            changed[record.pk] = record
    if changed:
        JourneyRunStep.objects.bulk_update(list(changed.values()), ["detail"])
        counters.bump_many(deltas)


# --- d) conversion goals -------------------------------------------------------------------------


def _start_of(run: JourneyRun) -> tuple[datetime, int | None]:
    """When a run's goal window opens, and the id of the event that entered it (not a goal itself)."""
    entry_event = (run.context or {}).get("event") if isinstance(run.context, dict) else None
    if isinstance(entry_event, dict):
        occurred = entry_event.get("occurred_at")
        at = parse_datetime(occurred) if isinstance(occurred, str) else None
        if at is not None:
            return min(at, run.entered_at), entry_event.get("id")
    return run.entered_at, None


def _convert(events: Sequence[Event], journeys: _Journeys, now: datetime) -> None:
    candidates = [e for e in events if (e.project_id, e.name) in journeys.goals]
    if not candidates:
        return
    journey_by_pk = {j.pk: j for js in journeys.goals.values() for j in js}
    windows = [goal.window for j in journey_by_pk.values() if (goal := _goal(j, j.version)) is not None]
    if not windows:
        return
    widest = max(windows)
    runs = JourneyRun.objects.filter(
        journey_id__in=list(journey_by_pk),
        subscriber_id__in={e.subscriber_id for e in candidates},
        dry_run=False,
        converted_at__isnull=True,
        entered_at__gte=min(e.occurred_at for e in candidates) - widest,
    ).only("id", "project_id", "journey_id", "version", "subscriber_id", "state", "context", "entered_at")
    by_subscriber: dict[int, list[JourneyRun]] = defaultdict(list)
    for run in runs.order_by("entered_at", "pk"):
        by_subscriber[run.subscriber_id].append(run)
    converted: dict[int, tuple[JourneyRun, Event, Goal]] = {}
    for event in candidates:
        attributes = event.attributes if isinstance(event.attributes, dict) else {}
        for run in by_subscriber.get(event.subscriber_id, ()):
            if run.pk in converted or run.journey_id not in journey_by_pk:
                continue
            goal = _goal(journey_by_pk[run.journey_id], run.version)
            if goal is None or goal.event != event.name:
                continue
            start, entry_event_id = _start_of(run)
            if event.pk == entry_event_id or not (start <= event.occurred_at <= start + goal.window):
                continue
            if conditions.matches(goal.conditions, attributes):
                converted[run.pk] = (run, event, goal)
    if not converted:
        return
    attributed = _attribute(list(converted))
    deltas: dict[tuple[int, int, str, str], int] = defaultdict(int)
    for run, event, _ in converted.values():
        run.converted_at = event.occurred_at
        run.converted_step = attributed.get(run.pk, "")
        deltas[(run.project_id, run.journey_id, "", "converted")] += 1
        if run.converted_step:
            deltas[(run.project_id, run.journey_id, run.converted_step, "converted")] += 1
    JourneyRun.objects.bulk_update(
        [run for run, _, _ in converted.values()], ["converted_at", "converted_step"]
    )
    counters.bump_many(deltas)
    leaving = [run for run, _, goal in converted.values() if goal.exit and run.state != RunState.DONE]
    if leaving:
        engine.exit_runs(runs=leaving, reason="goal", now=now)


def _goal(journey: Journey, version: int) -> Goal | None:
    definition = _definition(journey, version)
    return definition.settings.goal if definition is not None else None


def _attribute(run_ids: list[int]) -> dict[int, str]:
    """Run id -> the step its conversion goes to: the last step whose message was read, else the
    last whose message was sent ("last" in the order the run visited them)."""
    visits = (
        JourneyRunStep.objects.filter(run_id__in=run_ids, message__isnull=False)
        .order_by("entered_at", "pk")
        .values_list("run_id", "step_id", "message__read_at", "message__status", "message__sent_at")
    )
    read: dict[int, str] = {}
    sent: dict[int, str] = {}
    for run_id, step_id, read_at, status, sent_at in visits:
        if read_at is not None or status == MessageStatus.READ:
            read[run_id] = step_id
        if sent_at is not None or status in SENT_STATUSES:
            sent[run_id] = step_id
    return {run_id: read.get(run_id) or sent.get(run_id, "") for run_id in run_ids}
