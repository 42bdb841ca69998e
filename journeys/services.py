"""Writes to journeys: one service per action, used by the builder, the API, the admin and imports.

Every service takes the journey (or the project) and an ``Actor``, works in one transaction and
writes one audit entry. Editing is allowed on drafts and paused journeys only; an active journey
runs a frozen ``JourneyVersion`` (activation freezes the editable definition when it changed).

Keyword collisions: a folded keyword (``keywords.fold``) may be claimed by one active or paused
journey of a project, and never an opt-in/opt-out word. ``activate`` checks it under a lock on
the project row, so two activations racing for PROMO are serialised and the second is refused.
(Locking the project's active journeys instead would lock nothing when there are none yet.)
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from controlpanel.models import Project
from controlpanel.services import Actor, record_audit

from . import keywords
from .definition import Definition, DefinitionError, parse
from .models import Journey, JourneyRun, JourneyStatus, JourneyVersion, RunState
from .steps import Problem

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "wcp-journey/1"
INBOUND_EVENT = "WhatsAppReceived"
# Journeys whose keywords are taken: a paused journey resumes with its keywords.
CLAIMING = (JourneyStatus.ACTIVE, JourneyStatus.PAUSED)


class JourneyRefused(Exception):
    """The action is not possible in the journey's state; ``message`` says why in plain words."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Activation:
    """What an activation did: the version runs now enter, and the live runs of older versions
    that moved to it (their step exists there, with the same type) or stayed on theirs."""

    journey: Journey
    version: int
    new_version: bool
    moved: int = 0
    stayed: int = 0


@dataclass
class _Claim:
    """A keyword condition of an inbound (WhatsAppReceived) entry, where it is written."""

    field: str
    op: str  # keyword | contains | starts_with | regex
    values: list[str] = field(default_factory=list)  # folded for keyword/contains/starts_with


# --- keywords ------------------------------------------------------------------------------------


def _claims(data: Any) -> list[_Claim]:
    """The inbound text conditions of a definition, read tolerantly (a draft may be broken)."""
    if not isinstance(data, dict):
        return []
    if isinstance(data.get("entries"), list):
        entries = [(f"entries[{i}]", e) for i, e in enumerate(data["entries"])]
    else:
        entries = [("entry", data.get("entry"))]
    claims = []
    for where, entry in entries:
        if not isinstance(entry, dict) or entry.get("type") != "event" or entry.get("event") != INBOUND_EVENT:
            continue
        conditions = entry.get("conditions")
        for i, condition in enumerate(conditions if isinstance(conditions, list) else []):
            if not isinstance(condition, dict):
                continue
            op, value = condition.get("op"), condition.get("value")
            values = value if isinstance(value, list) else [value]
            texts = [v for v in values if isinstance(v, str)]
            if op == "regex":
                claims.append(_Claim(f"{where}.conditions[{i}].value", op, texts[:1]))
            elif op in ("keyword", "contains", "starts_with"):
                folded = [keywords.fold(v) for v in texts]
                claims.append(_Claim(f"{where}.conditions[{i}].value", op, [v for v in folded if v]))
    return claims


def claimed_keywords(data: Any) -> list[str]:
    """The folded keywords a definition claims (its ``keyword`` conditions on inbound messages)."""
    return sorted({v for c in _claims(data) if c.op == "keyword" for v in c.values})


def _would_match(claim: _Claim, keyword: str) -> bool:
    """Would a contains/starts_with/regex condition take an inbound text that is ``keyword``?"""
    if claim.op == "contains":
        return any(v in keyword for v in claim.values)
    if claim.op == "starts_with":
        return any(keyword.startswith(v) for v in claim.values)
    if claim.op == "regex" and claim.values:
        return _regex_matches(claim.values[0], keyword)
    return False


_NESTED_QUANTIFIER = re.compile(r"\([^)]*[+*}][^)]*\)[+*{]")


def _regex_matches(pattern: str, text: str) -> bool:
    try:
        from .conditions import matches  # the time-limited matcher (messaging slice)
    except ImportError:
        matches = None
    if matches is not None:
        try:
            return bool(matches([{"attribute": "text", "op": "regex", "value": pattern}], {"text": text}))
        except Exception:  # a warning is best effort; the pattern was checked at parse time
            logger.warning("regex collision check failed for a pattern", exc_info=True)
            return False
    if _NESTED_QUANTIFIER.search(pattern):
        # Without a time limit a nested quantifier could backtrack for minutes: do not try.
        return False
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def _others(journey: Journey) -> list[Journey]:
    return list(
        Journey.objects.for_project(journey.project_id)
        .filter(status__in=CLAIMING)
        .exclude(pk=journey.pk)
        .only("id", "name", "keywords", "definition", "status")
        .order_by("pk")
    )


def _collisions(journey: Journey, data: Any) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings) of ``data``'s keywords against the project's other claiming journeys
    and its opt-in/opt-out words."""
    mine = _claims(data)
    if not mine:
        return [], []
    others = _others(journey)
    taken: dict[str, str] = {}  # folded keyword -> who claims it
    for other in others:
        for word in other.keywords or claimed_keywords(other.definition):
            taken.setdefault(word, f"journey '{other.name}'")
    reserved = keywords.reserved_keywords(journey.project_id)
    problems: list[Problem] = []
    warnings: list[Problem] = []
    for claim in mine:
        if claim.op == "keyword":
            for word in claim.values:
                if word in reserved:
                    problems.append(
                        Problem(
                            None,
                            claim.field,
                            f"{word.upper()} is an {reserved[word]}: the platform answers it itself.",
                        )
                    )
                elif word in taken:
                    problems.append(
                        Problem(None, claim.field, f"{word.upper()} is already claimed by {taken[word]}.")
                    )
            continue
        for word, owner in {**taken, **{w: f"the {why}" for w, why in reserved.items()}}.items():
            if _would_match(claim, word):
                warnings.append(
                    Problem(
                        None,
                        claim.field,
                        _("This %(op)s condition also takes %(word)s, claimed by %(owner)s.")
                        % {"op": claim.op.replace("_", " "), "word": word.upper(), "owner": owner},
                    )
                )
    # The other way round: another journey's loose condition takes one of my keywords.
    my_words = claimed_keywords(data)
    for other in others:
        for claim in _claims(other.definition):
            if claim.op == "keyword":
                continue
            for word in my_words:
                if _would_match(claim, word):
                    warnings.append(
                        Problem(
                            None,
                            "entry",
                            _("Journey '%(name)s' has a %(op)s condition that also takes %(word)s.")
                            % {"name": other.name, "op": claim.op.replace("_", " "), "word": word.upper()},
                        )
                    )
    return problems, warnings


# --- references ----------------------------------------------------------------------------------


def missing_references(project: Project, data: Any, *, strict: bool = False) -> list[Problem]:
    """Segments and templates the definition names that this project does not have (per step and
    field); with ``strict`` a template must also be approved. Read tolerantly: a draft may be
    broken elsewhere."""
    from subscribers.models import Segment
    from whatsapp.models import MessageTemplate, TemplateStatus

    if not isinstance(data, dict):
        return []
    wanted_segments: list[tuple[str | None, str, str]] = []  # (step, field, public id)
    wanted_templates: list[tuple[str, str, str, str]] = []  # (step, field, name, language)
    entries = data.get("entries") if isinstance(data.get("entries"), list) else [data.get("entry")]
    for i, entry in enumerate(entries):
        if (
            isinstance(entry, dict)
            and entry.get("type") == "segment"
            and isinstance(entry.get("segment"), str)
        ):
            where = f"entries[{i}].segment" if isinstance(data.get("entries"), list) else "entry.segment"
            wanted_segments.append((None, where, entry["segment"]))
    for step in data.get("steps") if isinstance(data.get("steps"), list) else []:
        if not isinstance(step, dict) or not isinstance(step.get("id"), str):
            continue
        if step.get("type") == "segment_split" and isinstance(step.get("segment"), str):
            wanted_segments.append((step["id"], "segment", step["segment"]))
        template = step.get("template")
        if step.get("type") == "whatsapp_template" and isinstance(template, dict):
            name, language = template.get("name"), template.get("language")
            if isinstance(name, str) and name:
                wanted_templates.append((step["id"], "template.name", name, str(language or "")))
    problems = []
    if wanted_segments:
        existing = {
            str(u)
            for u in Segment.objects.for_project(project)
            .filter(public_id__in=[_uuid_or_none(s) for _, _, s in wanted_segments if _uuid_or_none(s)])
            .values_list("public_id", flat=True)
        }
        for step, where, segment in wanted_segments:
            if str(_uuid_or_none(segment)) not in existing:
                problems.append(
                    Problem(
                        step, where, _("There is no segment %(id)s in this project.") % {"id": segment[:40]}
                    )
                )
    if wanted_templates:
        rows = MessageTemplate.objects.for_project(project).filter(
            name__in=[name for _, _, name, _ in wanted_templates]
        )
        status = {(t.name, t.language): t.status for t in rows.only("name", "language", "status")}
        for step, where, name, language in wanted_templates:
            found = (
                status.get((name, language))
                if language
                else next((s for (n, _), s in status.items() if n == name), None)
            )
            shown = f"{name} ({language})" if language else name
            if found is None:
                problems.append(
                    Problem(
                        step,
                        where,
                        _("There is no template %(name)s in this project.") % {"name": shown[:80]},
                    )
                )
            elif strict and found != TemplateStatus.APPROVED:
                problems.append(
                    Problem(
                        step,
                        where,
                        _("The template %(name)s is not approved (%(status)s).")
                        % {"name": shown[:80], "status": found.lower()},
                    )
                )
    return problems


def _uuid_or_none(text: str):
    import uuid

    try:
        return uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return None


def _merge(found: list[Problem], extra: list[Problem]) -> list[Problem]:
    """``found`` plus the ``extra`` problems on a step field nothing in ``found`` names yet (by its
    first part: the step module's "template" and our "template.name" are one problem)."""

    def key(p: Problem) -> tuple[str | None, str]:
        return (p.step, p.field.split(".", 1)[0])

    named = {key(p) for p in found}
    return found + [p for p in extra if key(p) not in named]


# --- validation ----------------------------------------------------------------------------------


def validate_with_warnings(journey: Journey) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings) of the journey's editable definition. Problems block activation: the
    strict parse (every step configured), missing or unapproved templates and segments, keywords
    claimed by another active or paused journey or by the opt-in/opt-out words. Warnings do not:
    a contains / starts_with / regex condition that would also take another journey's keyword."""
    data = journey.definition
    try:
        parse(data, project=journey.project, strict=True)
        problems: list[Problem] = []
    except DefinitionError as exc:
        problems = list(exc.problems)
    problems = _merge(problems, missing_references(journey.project, data, strict=True))
    collisions, warnings = _collisions(journey, data)
    return problems + collisions, _catch_all(data) + warnings


def _catch_all(data: Any) -> list[Problem]:
    """A warning for an inbound entry without a text condition: every message a subscriber writes
    (answers to other journeys' buttons, STOP) would start this journey."""
    if not isinstance(data, dict):
        return []
    listed = isinstance(data.get("entries"), list)
    entries = data["entries"] if listed else [data.get("entry")]
    warnings = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("type") != "event" or entry.get("event") != INBOUND_EVENT:
            continue
        conditions = entry.get("conditions")
        if not conditions:
            where = f"entries[{i}].conditions" if listed else "entry.conditions"
            warnings.append(
                Problem(
                    None, where, _("Every inbound message would start this journey: add a keyword condition.")
                )
            )
    return warnings


def validate(journey: Journey) -> list[Problem]:
    """Everything that blocks activation, per step and field; empty: it may be activated."""
    return validate_with_warnings(journey)[0]


# --- writes --------------------------------------------------------------------------------------


def _denormalise(journey: Journey, definition: Definition) -> None:
    """Copy what the feed consumer and collision checks look up from the definition."""
    journey.entry_kinds = sorted({e.type for e in definition.entries})
    journey.entry_events = sorted({e.data["event"] for e in definition.entries if e.type == "event"})
    journey.keywords = claimed_keywords(definition.raw)


def _save_new(
    *, project: Project, data: dict[str, Any], definition: Definition, actor: Actor, action: str, **changes
) -> Journey:
    journey = Journey(project=project, name=definition.name, definition=data, created_by=actor.user)
    _denormalise(journey, definition)
    journey.save()
    record_audit(project=project, actor=actor, action=action, obj=journey, changes=changes or None)
    return journey


@transaction.atomic
def create_journey(*, project: Project, data: dict[str, Any], actor: Actor) -> Journey:
    """A new draft from JSON; DefinitionError (every problem, per step and field) when it is bad.
    A draft may be incomplete; ``validate`` says what activation still needs."""
    definition = parse(data, project=project)
    return _save_new(project=project, data=data, definition=definition, actor=actor, action="journey.create")


@transaction.atomic
def update_journey(*, journey: Journey, data: dict[str, Any], actor: Actor) -> Journey:
    """Replace the definition of a draft or paused journey (an active one must be paused first).
    A paused journey's runs keep walking their version until it is resumed (see ``activate``)."""
    journey = Journey.objects.select_for_update().get(pk=journey.pk)
    if journey.status not in (JourneyStatus.DRAFT, JourneyStatus.PAUSED):
        if journey.status == JourneyStatus.ACTIVE:
            raise JourneyRefused(_("Pause the journey before you edit it."))
        raise JourneyRefused(_("A stopped journey cannot be edited; clone it."))
    definition = parse(data, project=journey.project)
    journey.definition = data
    journey.name = definition.name
    _denormalise(journey, definition)
    journey.save()
    record_audit(project=journey.project, actor=actor, action="journey.update", obj=journey)
    return journey


def activate(*, journey: Journey, actor: Actor, move_runs: bool = False) -> Journey:
    """Freeze the definition as a new version and start taking entries; refused while invalid.
    See ``activate_journey`` for what happens to the runs of older versions."""
    return activate_journey(journey=journey, actor=actor, move_runs=move_runs).journey


def activate_journey(*, journey: Journey, actor: Actor, move_runs: bool = False) -> Activation:
    """Draft or paused -> active. DefinitionError with every problem (keyword collisions included)
    when the definition may not run; JourneyRefused for a stopped journey.

    A changed definition becomes a new version; new runs start on it. Live runs of older versions
    stay on theirs unless ``move_runs``: then each run whose current step exists in the new version
    with the same type moves to it (set-based), the others stay. Runs a worker holds right now
    (lease not passed) stay. Idempotent: activating an active journey changes nothing.
    """
    return _activate(journey=journey, actor=actor, move_runs=move_runs, action="journey.activate")


@transaction.atomic
def _activate(*, journey: Journey, actor: Actor, move_runs: bool, action: str) -> Activation:
    # Lock order: project, then journey (every activation of the project queues on the first).
    Project.objects.select_for_update().filter(pk=journey.project_id).first()
    journey = Journey.objects.select_for_update().get(pk=journey.pk)
    if journey.status == JourneyStatus.STOPPED:
        raise JourneyRefused(_("A stopped journey cannot be activated again; clone it."))
    if journey.status == JourneyStatus.ACTIVE:
        return Activation(journey, journey.version, new_version=False)
    latest = JourneyVersion.objects.filter(journey=journey).order_by("-number").first()
    new_version = latest is None or latest.definition != journey.definition
    # Resuming what was validated and frozen: its runs walk it already, so only what another
    # journey may have changed since (a keyword) is checked; a template Meta paused meanwhile is
    # the send step's to skip with the reason, not a reason to keep the brake on.
    problems = validate(journey) if new_version else _collisions(journey, journey.definition)[0]
    if problems:
        raise DefinitionError(problems)
    definition = parse(
        journey.definition, project=journey.project if new_version else None, strict=new_version
    )
    if new_version:
        number = (latest.number if latest else 0) + 1
        JourneyVersion.objects.create(
            project=journey.project,
            journey=journey,
            number=number,
            definition=journey.definition,
            created_by=actor.user,
        )
        journey.version = number
    moved, stayed = _move_runs(journey, definition, move=move_runs)
    _denormalise(journey, definition)
    journey.status = JourneyStatus.ACTIVE
    journey.status_reason = ""
    journey.activated_at = timezone.now()
    journey.save()
    _schedule_entries(journey)
    record_audit(
        project=journey.project,
        actor=actor,
        action=action,
        obj=journey,
        changes={"version": journey.version, "moved_runs": moved, "stayed_runs": stayed},
    )
    return Activation(journey, journey.version, new_version, moved, stayed)


def _move_runs(journey: Journey, definition: Definition, *, move: bool) -> tuple[int, int]:
    """(moved, stayed) live runs of versions older than ``journey.version``."""
    older = JourneyRun.objects.filter(journey=journey, dry_run=False).exclude(state=RunState.DONE)
    older = older.exclude(version=journey.version)
    moved = 0
    if move:
        now = timezone.now()
        from .versions import definition_of

        # Same step id and same type: a run waiting at a wait step must find a wait step there.
        # One UPDATE per older version still walked (a handful), not one per run.
        for number in older.order_by().values_list("version", flat=True).distinct():
            try:
                old = definition_of(journey, number)
            except (JourneyVersion.DoesNotExist, DefinitionError):
                continue
            same = [
                sid
                for sid, step in old.steps.items()
                if sid in definition.steps and definition.steps[sid].type == step.type
            ]
            if same:
                moved += (
                    older.filter(version=number, step_id__in=same)
                    .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
                    .update(version=journey.version)
                )
    return moved, older.count()


def _schedule_entries(journey: Journey) -> None:
    """Set when the journey's segment entries fire next."""
    from .segment_entry import schedule

    schedule(journey)


@transaction.atomic
def pause(*, journey: Journey, actor: Actor) -> Journey:
    """Runs hold where they are (the engine claims runs of active journeys only); no entries."""
    journey = Journey.objects.select_for_update().get(pk=journey.pk)
    if journey.status != JourneyStatus.ACTIVE:
        raise JourneyRefused(_("Only an active journey can be paused."))
    journey.status = JourneyStatus.PAUSED
    journey.paused_at = timezone.now()
    journey.save()
    record_audit(project=journey.project, actor=actor, action="journey.pause", obj=journey)
    return journey


def resume(*, journey: Journey, actor: Actor, move_runs: bool = False) -> Journey:
    """Resume a paused journey: activation again (a changed definition becomes a new version)."""
    return resume_journey(journey=journey, actor=actor, move_runs=move_runs).journey


@transaction.atomic
def resume_journey(*, journey: Journey, actor: Actor, move_runs: bool = False) -> Activation:
    # The project first, as in activate_journey: the same lock order, no deadlock between them.
    Project.objects.select_for_update().filter(pk=journey.project_id).first()
    current = Journey.objects.select_for_update().get(pk=journey.pk)
    if current.status != JourneyStatus.PAUSED:
        raise JourneyRefused(_("Only a paused journey can be resumed."))
    return _activate(journey=current, actor=actor, move_runs=move_runs, action="journey.resume")


@transaction.atomic
def stop(*, journey: Journey, actor: Actor) -> Journey:
    """End the journey for good: no entries, its live runs end (the engine's exit_runs, reason
    ``stopped``), in this transaction. Idempotent."""
    from . import engine

    journey = Journey.objects.select_for_update().get(pk=journey.pk)
    if journey.status == JourneyStatus.STOPPED:
        return journey
    journey.status = JourneyStatus.STOPPED
    journey.stopped_at = timezone.now()
    journey.next_entry_at = None
    journey.save()
    ended = engine.exit_runs(journey=journey, reason="stopped")
    record_audit(
        project=journey.project,
        actor=actor,
        action="journey.stop",
        obj=journey,
        changes={"runs_ended": ended},
    )
    return journey


# --- copies --------------------------------------------------------------------------------------


def _named(data: dict[str, Any], name: str) -> dict[str, Any]:
    copied = copy.deepcopy(data)
    copied["name"] = name
    return copied


@transaction.atomic
def clone_journey(*, journey: Journey, actor: Actor, name: str | None = None) -> Journey:
    """A draft copy of the journey's editable definition (not its runs or counters), in its project.
    Parsed for structure only: a segment deleted since is shown by ``validate``, not refused."""
    new_name = (name or "").strip() or f"{journey.name} (copy)"[:200]
    data = _named(journey.definition if isinstance(journey.definition, dict) else {}, new_name)
    definition = parse(data)
    return _save_new(
        project=journey.project,
        data=data,
        definition=definition,
        actor=actor,
        action="journey.clone",
        source=str(journey.public_id),
    )


def export_journey(journey: Journey) -> dict[str, Any]:
    """The journey's editable definition as JSON for ``import_journey`` (in any project): the
    definition as written, with ``"format": "wcp-journey/1"``. Segment ids and template names are
    kept as they are; the importing project must have them (import lists the missing ones)."""
    data = copy.deepcopy(journey.definition) if isinstance(journey.definition, dict) else {}
    data.pop("format", None)
    return {"format": EXPORT_FORMAT, **data, "name": journey.name}


@transaction.atomic
def import_journey(*, project: Project, data: Any, actor: Actor) -> Journey:
    """A draft in ``project`` from an export (or any journey JSON).

    Decision: the structure must be valid (DefinitionError otherwise, nothing written), but a
    reference the project does not have (a segment id, a template) does not refuse the import:
    segments and templates are per project, so an import between projects almost always has some.
    The draft is written and ``validate`` names each missing reference per step and field (they
    block activation); the audit entry lists them too.
    """
    if not isinstance(data, dict):
        raise DefinitionError([Problem(None, "", _("A journey is a JSON object."))])
    fmt = data.get("format")
    if fmt is not None and fmt != EXPORT_FORMAT:
        raise DefinitionError(
            [
                Problem(
                    None, "format", _("Only %(format)s exports can be imported.") % {"format": EXPORT_FORMAT}
                )
            ]
        )
    data = {k: v for k, v in data.items() if k != "format"}
    definition = parse(data)  # structure only: references are this project's to fix
    missing = missing_references(project, data)
    return _save_new(
        project=project,
        data=data,
        definition=definition,
        actor=actor,
        action="journey.import",
        missing=[p.as_dict() for p in missing],
    )
