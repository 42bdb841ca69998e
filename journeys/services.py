"""Writes to journeys: one service per action, used by the builder, the API, the admin and imports.

First cut (foundation): create, update, validate, activate, pause, resume, stop. The definition
slice completes it (keyword collisions, templates, run migration between versions, clone,
export, import).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from controlpanel.models import Project
from controlpanel.services import Actor, record_audit

from . import keywords, segment_entry
from .definition import Definition, DefinitionError, parse
from .models import Journey, JourneyStatus, JourneyVersion
from .steps import Problem


class JourneyRefused(Exception):
    """The action is not possible in the journey's state; ``message`` says why in plain words."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def _denormalise(journey: Journey, definition: Definition) -> None:
    """Copy what the feed consumer and collision checks look up from the definition."""
    journey.entry_kinds = sorted({e.type for e in definition.entries})
    journey.entry_events = sorted({e.data["event"] for e in definition.entries if e.type == "event"})
    claimed: set[str] = set()
    for entry in definition.entries:
        for condition in entry.data.get("conditions") or []:
            if condition.get("op") == "keyword":
                values = condition.get("value")
                for value in values if isinstance(values, list) else [values]:
                    if isinstance(value, str) and keywords.fold(value):
                        claimed.add(keywords.fold(value))
    journey.keywords = sorted(claimed)


@transaction.atomic
def create_journey(*, project: Project, data: dict[str, Any], actor: Actor) -> Journey:
    """A new draft from JSON; DefinitionError (every problem, per step and field) when it is bad."""
    definition = parse(data, project=project)
    journey = Journey(project=project, name=definition.name, definition=data, created_by=actor.user)
    _denormalise(journey, definition)
    journey.save()
    record_audit(project=project, actor=actor, action="journey.create", obj=journey)
    return journey


@transaction.atomic
def update_journey(*, journey: Journey, data: dict[str, Any], actor: Actor) -> Journey:
    """Replace the definition of a draft or paused journey (an active one must be paused first)."""
    journey = Journey.objects.select_for_update().get(pk=journey.pk)
    if journey.status not in (JourneyStatus.DRAFT, JourneyStatus.PAUSED):
        raise JourneyRefused("Pause the journey before you edit it.")
    definition = parse(data, project=journey.project)
    journey.definition = data
    journey.name = definition.name
    _denormalise(journey, definition)
    journey.save()
    record_audit(project=journey.project, actor=actor, action="journey.update", obj=journey)
    return journey


def validate(journey: Journey) -> list[Problem]:
    """Everything that blocks activation, per step and field; empty: it may be activated."""
    try:
        parse(journey.definition, project=journey.project, strict=True)
    except DefinitionError as exc:
        return exc.problems
    return []


@transaction.atomic
def activate(*, journey: Journey, actor: Actor) -> Journey:
    """Freeze the definition as a new version and start taking entries; refused while invalid."""
    journey = Journey.objects.select_for_update().get(pk=journey.pk)
    if journey.status == JourneyStatus.STOPPED:
        raise JourneyRefused("A stopped journey cannot be activated again; clone it.")
    if journey.status == JourneyStatus.ACTIVE:
        return journey
    problems = validate(journey)
    if problems:
        raise DefinitionError(problems)
    latest = JourneyVersion.objects.filter(journey=journey).order_by("-number").first()
    if latest is None or latest.definition != journey.definition:
        number = (latest.number if latest else 0) + 1
        JourneyVersion.objects.create(
            project=journey.project,
            journey=journey,
            number=number,
            definition=journey.definition,
            created_by=actor.user,
        )
        journey.version = number
    journey.status = JourneyStatus.ACTIVE
    journey.activated_at = timezone.now()
    journey.save()
    # Segment entries: when the next one fires (entries slice; once-entries fire once only).
    segment_entry.schedule(journey)
    record_audit(
        project=journey.project,
        actor=actor,
        action="journey.activate",
        obj=journey,
        changes={"version": journey.version},
    )
    return journey


@transaction.atomic
def pause(*, journey: Journey, actor: Actor) -> Journey:
    """Runs hold where they are (the engine claims runs of active journeys only)."""
    journey = Journey.objects.select_for_update().get(pk=journey.pk)
    if journey.status != JourneyStatus.ACTIVE:
        raise JourneyRefused("Only an active journey can be paused.")
    journey.status = JourneyStatus.PAUSED
    journey.paused_at = timezone.now()
    journey.save()
    record_audit(project=journey.project, actor=actor, action="journey.pause", obj=journey)
    return journey


def resume(*, journey: Journey, actor: Actor) -> Journey:
    """Resume a paused journey: activation again (a changed definition becomes a new version)."""
    if journey.status != JourneyStatus.PAUSED:
        raise JourneyRefused("Only a paused journey can be resumed.")
    return activate(journey=journey, actor=actor)


@transaction.atomic
def stop(*, journey: Journey, actor: Actor) -> Journey:
    """End the journey for good: no entries, its runs end (the engine's exit_runs, reason stopped)."""
    journey = Journey.objects.select_for_update().get(pk=journey.pk)
    if journey.status == JourneyStatus.STOPPED:
        return journey
    journey.status = JourneyStatus.STOPPED
    journey.stopped_at = timezone.now()
    journey.save()
    record_audit(project=journey.project, actor=actor, action="journey.stop", obj=journey)
    return journey
