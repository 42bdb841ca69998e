"""The /api/v1/journeys endpoints: create and edit journeys as JSON, change their status, read
their figures, the JSON Schema, clone, export and import. (Start and drop are ``start_api.py``.)

Thin: every write is a service (``journeys.services``), the figures come from ``stats``. The body
of create, replace and import is the journey JSON itself (docs/journeys.md, ``GET /schema``); it
is judged by ``definition.parse``, so a bad one is a 422 ``invalid_journey`` listing every problem
with its step and field, never a 500.

Status codes: 201 created; 200 reads and status changes; 404 for an id not in the API key's
project (another project's journey is "not found", not "forbidden"); 409 ``invalid_transition``
when the journey's status does not allow the change; 422 ``invalid_journey`` with ``problems``
(also for an activation refused by a keyword collision).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from django.core import signing
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from ninja import Field, Query, Router, Schema, Status

from controlpanel.api import ApiError, ErrorOut
from controlpanel.models import Project
from subscribers.errors import InvalidInput

from . import services, stats
from .definition import DefinitionError
from .models import Journey
from .schema import journey_schema
from .steps import Problem

router = Router(tags=["journeys"])

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
_CURSOR_SALT = "journeys.api.list"

StatusName = Literal["draft", "active", "paused", "stopped"]


# --- shapes --------------------------------------------------------------------------------------


class ProblemOut(Schema):
    step: str | None = Field(description="The step's id; null: the journey as a whole (entry, settings).")
    field: str = Field(description='Where in the step (or journey): "next", "template.name", "entry.event".')
    message: str


class InvalidJourneyOut(ErrorOut):
    problems: list[ProblemOut] = Field(
        default_factory=list,
        description="With `invalid_journey`: every problem found, each with its step and field.",
    )


class ActivationOut(Schema):
    version: int = Field(description="The version new runs start on.")
    new_version: bool = Field(description="The definition had changed: a new version was frozen.")
    moved_runs: int = Field(description="Live runs of older versions moved to this one (move_runs).")
    stayed_runs: int = Field(description="Live runs that walk on their older version.")


class JourneySummaryOut(Schema):
    id: UUID
    name: str
    status: StatusName
    status_reason: str
    version: int = Field(description="Newest activated version; 0: never activated.")
    entry_kinds: list[str] = Field(description="event, segment, api.")
    entry_events: list[str]
    keywords: list[str] = Field(description="Folded inbound keywords this journey claims.")
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None
    paused_at: datetime | None
    stopped_at: datetime | None


class JourneyOut(JourneySummaryOut):
    definition: dict[str, Any] = Field(description="The editable journey JSON (docs/journeys.md).")
    problems: list[ProblemOut] = Field(
        description="For a draft or paused journey: what blocks activation ([] = ready)."
    )
    warnings: list[ProblemOut] = Field(
        description="Do not block: e.g. a contains/regex condition that also takes another journey's keyword."
    )


class ActivatedOut(JourneyOut):
    activation: ActivationOut


class JourneyPageOut(Schema):
    items: list[JourneySummaryOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class ListFilters(Schema):
    status: StatusName | None = Field(None, description="Only journeys in this status.")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, json_schema_extra={"maxLength": 200})


# --- helpers -------------------------------------------------------------------------------------


def _problems(problems: list[Problem]) -> list[dict[str, Any]]:
    return [p.as_dict() for p in problems]


def invalid(problems: list[Problem]) -> Status:
    count = len(problems)
    first = problems[0] if problems else None
    where = f" ({first.step or _('journey')}: {first.field})" if first else ""
    body = {
        "code": "invalid_journey",
        "message": ngettext(
            "The journey has %(count)s problem%(where)s: %(message)s",
            "The journey has %(count)s problems%(where)s: %(message)s",
            count,
        )
        % {"count": count, "where": where, "message": first.message if first else ""},
        "problems": _problems(problems),
    }
    return Status(422, body)


def _refused(exc: services.JourneyRefused) -> ApiError:
    return ApiError(409, "invalid_transition", exc.message, field="status")


def get_journey(project: Project, journey_id: UUID) -> Journey:
    journey = Journey.objects.for_project(project).filter(public_id=journey_id).first()
    if journey is None:
        raise ApiError(
            404, "journey_not_found", _("No journey %(id)s in this project.") % {"id": journey_id}, field="id"
        )
    return journey


def summary_out(journey: Journey) -> dict[str, Any]:
    return {
        "id": journey.public_id,
        "name": journey.name,
        "status": journey.status,
        "status_reason": journey.status_reason,
        "version": journey.version,
        "entry_kinds": list(journey.entry_kinds or []),
        "entry_events": list(journey.entry_events or []),
        "keywords": list(journey.keywords or []),
        "created_at": journey.created_at,
        "updated_at": journey.updated_at,
        "activated_at": journey.activated_at,
        "paused_at": journey.paused_at,
        "stopped_at": journey.stopped_at,
    }


def journey_out(journey: Journey) -> dict[str, Any]:
    problems: list[Problem] = []
    warnings: list[Problem] = []
    if journey.status in ("draft", "paused"):
        problems, warnings = services.validate_with_warnings(journey)
    return {
        **summary_out(journey),
        "definition": journey.definition if isinstance(journey.definition, dict) else {},
        "problems": _problems(problems),
        "warnings": _problems(warnings),
    }


def _journey_body(request: HttpRequest) -> Any:
    """The body as JSON of any shape: ``parse`` judges it, so a list or a number is a 422
    ``invalid_journey`` like any other bad journey."""
    try:
        return json.loads(request.body or b"null")
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", _("The request body is not valid JSON.")) from None


def _options(request: HttpRequest, allowed: dict[str, type]) -> dict[str, Any]:
    """An optional small JSON body ({"move_runs": true}, {"name": "..."}); empty: no options."""
    if not request.body.strip():
        return {}
    try:
        data = json.loads(request.body)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", _("The request body is not valid JSON.")) from None
    if not isinstance(data, dict):
        raise InvalidInput(_("The body is a JSON object."), field="body")
    for key, value in data.items():
        if key not in allowed:
            raise InvalidInput(_("Unknown field %(name)r.") % {"name": key[:40]}, field=key[:64])
        if value is not None and not isinstance(value, allowed[key]):
            raise InvalidInput(
                _("%(name)s: expected %(type)s.") % {"name": key, "type": allowed[key].__name__}, field=key
            )
    return data


# --- endpoints -----------------------------------------------------------------------------------

PROMO_EXAMPLE = {
    "name": "PROMO keyword",
    "entry": {
        "type": "event",
        "event": "WhatsAppReceived",
        "conditions": [{"attribute": "text", "op": "keyword", "value": "promo"}],
    },
    "settings": {"reentry": "after_exit"},
    "steps": [
        {
            "id": "reply",
            "type": "whatsapp_text",
            "text": "Danke! Ihr Code: SUSHI20",
            "texts": {"de": "Danke! Ihr Code: SUSHI20", "en": "Thank you! Your code: SUSHI20"},
            "next": "wait",
        },
        {"id": "wait", "type": "wait", "duration": "PT1H", "next": "offer"},
        {
            "id": "offer",
            "type": "whatsapp_template",
            "template": {"name": "follow_up_offer", "language": "de"},
            "next": None,
        },
    ],
}
JOURNEY_BODY = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {"type": "object", "description": "The journey JSON: see GET /journeys/schema."},
                "examples": {"promo": {"summary": "The PROMO keyword flow", "value": PROMO_EXAMPLE}},
            }
        },
        "required": True,
    }
}


def _optional_body(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "properties": properties, "additionalProperties": False}
                }
            },
        }
    }


WRITE = {422: InvalidJourneyOut}


@router.get("/schema", response={200: dict[str, Any]}, summary="The journey JSON Schema")
def get_schema(request):
    """The JSON Schema (draft 2020-12) of the journey JSON, with every step type. It describes the
    shape; the API still checks what a schema cannot (outlets that exist, no loops, templates,
    keyword collisions) and answers those as 422 `invalid_journey`."""
    return journey_schema()


@router.post(
    "",
    response={201: JourneyOut, **WRITE},
    summary="Create a journey (a draft)",
    openapi_extra=JOURNEY_BODY,
)
def create_journey(request):
    """Saves a draft: nothing runs until `POST /journeys/{id}/activate`. A draft may be unfinished;
    `problems` in the answer lists what activation still needs. 422 `invalid_journey` with every
    problem (step and field) when the JSON is not a journey."""
    try:
        journey = services.create_journey(
            project=request.project, data=_journey_body(request), actor=request.actor
        )
    except DefinitionError as exc:
        return invalid(exc.problems)
    return Status(201, journey_out(journey))


@router.get("", response={200: JourneyPageOut, 422: ErrorOut}, summary="List journeys")
def list_journeys(request, filters: Query[ListFilters]):
    """The project's journeys, newest first, a page of `limit` at a time (follow `next_cursor`)."""
    journeys = Journey.objects.for_project(request.project).defer("definition")
    if filters.status:
        journeys = journeys.filter(status=filters.status)
    if filters.cursor:
        try:
            before = signing.loads(filters.cursor, salt=_CURSOR_SALT)
        except signing.BadSignature:
            before = None
        if not isinstance(before, int) or isinstance(before, bool):
            raise InvalidInput(_("This cursor is not one a page of this list returned."), field="cursor")
        journeys = journeys.filter(pk__lt=before)
    page = list(journeys.order_by("-pk")[: filters.limit + 1])
    rows = page[: filters.limit]
    return {
        "items": [summary_out(j) for j in rows],
        "next_cursor": signing.dumps(rows[-1].pk, salt=_CURSOR_SALT) if len(page) > filters.limit else None,
    }


@router.get("/{uuid:journey_id}", response={200: JourneyOut}, summary="A journey with its definition")
def get_journey_detail(request, journey_id: UUID):
    """Status, the editable definition, and for a draft or paused journey what blocks activation
    (`problems`) and what only warns (`warnings`)."""
    return journey_out(get_journey(request.project, journey_id))


@router.put(
    "/{uuid:journey_id}",
    response={200: JourneyOut, 409: ErrorOut, **WRITE},
    summary="Replace a journey's definition",
    openapi_extra=JOURNEY_BODY,
)
def update_journey(request, journey_id: UUID):
    """Replaces the definition of a draft or paused journey (409 for an active one: pause it
    first). Runs of a paused journey stay where they are; `activate` or `resume` decide whether
    they move to the new version."""
    journey = get_journey(request.project, journey_id)
    data = _journey_body(request)
    try:
        journey = services.update_journey(journey=journey, data=data, actor=request.actor)
    except services.JourneyRefused as exc:
        raise _refused(exc) from None
    except DefinitionError as exc:
        return invalid(exc.problems)
    return journey_out(journey)


def _activation(request, journey_id: UUID, action: str):
    journey = get_journey(request.project, journey_id)
    options = _options(request, {"move_runs": bool})
    service = services.activate_journey if action == "activate" else services.resume_journey
    try:
        outcome = service(journey=journey, actor=request.actor, move_runs=bool(options.get("move_runs")))
    except services.JourneyRefused as exc:
        raise _refused(exc) from None
    except DefinitionError as exc:
        return invalid(exc.problems)
    _found, warnings = services.validate_with_warnings(outcome.journey)
    return {
        **journey_out(outcome.journey),
        "warnings": _problems(warnings),
        "activation": {
            "version": outcome.version,
            "new_version": outcome.new_version,
            "moved_runs": outcome.moved,
            "stayed_runs": outcome.stayed,
        },
    }


MOVE_RUNS = _optional_body(
    {
        "move_runs": {
            "type": "boolean",
            "default": False,
            "description": "Move live runs of older versions to the new one where their step still exists "
            "(same id and type); the others stay on their version.",
        }
    }
)


@router.post(
    "/{uuid:journey_id}/activate",
    response={200: ActivatedOut, 409: ErrorOut, **WRITE},
    summary="Activate a draft (or a paused journey)",
    openapi_extra=MOVE_RUNS,
)
def activate(request, journey_id: UUID):
    """Freezes the definition as a version (when it changed) and starts taking entries. Refused
    with every problem (422 `invalid_journey`), keyword collisions included: "PROMO is already
    claimed by journey 'Promo 2'". 409 for a stopped journey. Activating an active one changes
    nothing."""
    return _activation(request, journey_id, "activate")


@router.post(
    "/{uuid:journey_id}/resume",
    response={200: ActivatedOut, 409: ErrorOut, **WRITE},
    summary="Resume a paused journey",
    openapi_extra=MOVE_RUNS,
)
def resume(request, journey_id: UUID):
    """Paused -> active: held runs go on. An edited definition becomes a new version (see
    `move_runs`). 409 when the journey is not paused."""
    return _activation(request, journey_id, "resume")


@router.post("/{uuid:journey_id}/pause", response={200: JourneyOut, 409: ErrorOut}, summary="Pause")
def pause(request, journey_id: UUID):
    """Active -> paused: no entries, runs hold where they are (waits resume where they stood). The
    definition can be edited while paused."""
    journey = get_journey(request.project, journey_id)
    try:
        journey = services.pause(journey=journey, actor=request.actor)
    except services.JourneyRefused as exc:
        raise _refused(exc) from None
    return journey_out(journey)


@router.post("/{uuid:journey_id}/stop", response={200: JourneyOut, 409: ErrorOut}, summary="Stop for good")
def stop(request, journey_id: UUID):
    """-> stopped, for good: no entries, and every live run ends (reason `stopped`). Clone it to
    run it again. Stopping a stopped journey changes nothing."""
    journey = get_journey(request.project, journey_id)
    try:
        journey = services.stop(journey=journey, actor=request.actor)
    except services.JourneyRefused as exc:
        raise _refused(exc) from None
    return journey_out(journey)


@router.get("/{uuid:journey_id}/stats", response={200: dict[str, Any]}, summary="A journey's figures")
def journey_stats(request, journey_id: UUID):
    """Entries, unique subscribers, in the journey now, goal conversions and rate, exits by reason,
    messages per channel, and per step: entered, waiting now, the channel's message counters (sent,
    delivered, read, opened, clicked, bounced, failed, skipped), converted, exited and the number
    who passed each outlet. From counters: cheap at any size."""
    journey = get_journey(request.project, journey_id)
    figures = getattr(stats, "journey_stats", None)
    if figures is not None:
        return figures(journey)
    return _minimal_stats(journey)


def _minimal_stats(journey: Journey) -> dict[str, Any]:
    """What the step counters say, until the statistics module's ``journey_stats`` is merged."""
    counts = stats.step_counts(journey)
    overall = counts.get("", {})
    entered, converted = overall.get("entered", 0), overall.get("converted", 0)
    return {
        "entered": entered,
        "in_journey": sum(c.get("waiting", 0) for step, c in counts.items() if step),
        "converted": converted,
        "conversion_rate": round(100 * converted / entered, 1) if entered else None,
        "exits": [
            {"reason": key.split(":", 1)[1], "count": n}
            for key, n in sorted(overall.items())
            if key.startswith("exited:") and n
        ],
        "steps": [
            {
                "id": step_id,
                "waiting": c.get("waiting", 0),
                **{k: n for k, n in c.items() if not k.startswith("passed:") and k != "waiting"},
                "passed": {k.split(":", 1)[1]: n for k, n in c.items() if k.startswith("passed:")},
            }
            for step_id, c in sorted(counts.items())
            if step_id
        ],
    }


@router.post(
    "/{uuid:journey_id}/clone",
    response={201: JourneyOut, **WRITE},
    summary="Clone a journey (a draft copy)",
    openapi_extra=_optional_body({"name": {"type": "string", "maxLength": 200}}),
)
def clone(request, journey_id: UUID):
    """A draft copy of the definition (not the runs or figures), named `name` or "<name> (copy)".
    The copy claims the same keywords: change them before activating it next to the original."""
    journey = get_journey(request.project, journey_id)
    options = _options(request, {"name": str})
    name = options.get("name")
    if name is not None and len(name) > 200:
        raise InvalidInput(_("At most 200 characters."), field="name")
    try:
        copy = services.clone_journey(journey=journey, actor=request.actor, name=name)
    except DefinitionError as exc:
        return invalid(exc.problems)
    return Status(201, journey_out(copy))


@router.get("/{uuid:journey_id}/export", response={200: dict[str, Any]}, summary="Export as JSON")
def export(request, journey_id: UUID):
    """The journey JSON with `"format": "wcp-journey/1"`, for `POST /journeys/import` in any
    project. Segment ids and template names are kept as they are."""
    return services.export_journey(get_journey(request.project, journey_id))


@router.post(
    "/import",
    response={201: JourneyOut, **WRITE},
    summary="Import a journey (a draft)",
    openapi_extra=JOURNEY_BODY,
)
def import_journey(request):
    """Creates a draft from an export (or any journey JSON). A structure that is not a journey is
    refused (422, nothing written). References this project does not have (a segment id, a
    template) do not refuse the import: the draft is written and `problems` names each one per step
    and field; they block activation until fixed."""
    try:
        journey = services.import_journey(
            project=request.project, data=_journey_body(request), actor=request.actor
        )
    except DefinitionError as exc:
        return invalid(exc.problems)
    return Status(201, journey_out(journey))
