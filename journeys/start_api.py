"""/api/v1/journeys: start a journey for subscribers, drop subscribers from journeys, follow a request.

Thin: ``start.py`` accepts and carries out the requests (an actor, after commit). Status codes:
202 accepted (the work is queued; ``GET /journeys/requests/{request_id}`` has the result); 404
for a journey or request not in the API key's project; 409 when the journey takes no starts
(not active, or no API entry); 422 for bad input, naming the field. Subscribers that are not
found are listed per item in the request's result, never a failure of the whole request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Router, Schema, Status
from pydantic import ConfigDict

from controlpanel.api import ApiError, ErrorOut
from subscribers import tags
from subscribers.errors import InvalidInput

from . import start
from .models import Journey, JourneyStartRequest

router = Router(tags=["journeys"])


class StrictSchema(Schema):
    model_config = ConfigDict(extra="forbid")


SUBSCRIBERS_DESCRIPTION = (
    'Each item names one subscriber of the project: `{"id": "<subscriber id>"}`, `{"phone": '
    '"+4915112345678"}` or `{"external_id": "crm-4711"}`.'
)


class StartIn(StrictSchema):
    subscribers: list[dict[str, Any]] | None = Field(
        None,
        description=SUBSCRIBERS_DESCRIPTION + f" At most {start.MAX_SUBSCRIBERS:,}; give this or `rule`.",
        examples=[[{"phone": "+4915112345678"}, {"external_id": "crm-4711"}]],
        json_schema_extra={"maxItems": start.MAX_SUBSCRIBERS},
    )
    rule: dict[str, Any] | str | None = Field(
        None,
        description="Everyone matching a segment rule (the segments' JSON tree or text form) enters.",
        examples=['T("city", eq, "Berlin")'],
    )
    values: dict[str, Any] | None = Field(
        None,
        description="Available to the journey's messages as `{{ values.<name> }}` (the same for all).",
        examples=[{"code": "SUSHI20"}],
    )


class DropIn(StrictSchema):
    journey: UUID | None = Field(
        None, description="Drop from this journey only; default: from every journey."
    )
    subscribers: list[dict[str, Any]] = Field(
        description=SUBSCRIBERS_DESCRIPTION + f" At most {start.MAX_SUBSCRIBERS:,}.",
        json_schema_extra={"maxItems": start.MAX_SUBSCRIBERS},
    )


class AcceptedOut(Schema):
    request_id: UUID
    status: Literal["queued"]


class RequestOut(Schema):
    request_id: UUID
    action: Literal["start", "drop"]
    journey: UUID | None
    status: Literal["queued", "done", "failed"]
    result: dict[str, Any] = Field(
        description="start: `entered`, `not_entered` (kept out by the re-entry rule or the entry cap), "
        "`unknown` and `errors` (per item: `index`, `field`, `code`, `message`); drop: `dropped`, "
        "`unknown`, `errors`; failed: `error`."
    )
    created_at: datetime
    finished_at: datetime | None


def _journey(request: HttpRequest, journey_id: UUID) -> Journey:
    journey = Journey.objects.for_project(request.project).filter(public_id=journey_id).first()
    if journey is None:
        raise ApiError(
            404, "journey_not_found", _("No journey %(id)s in this project.") % {"id": journey_id}, field="id"
        )
    return journey


def _accepted(item: JourneyStartRequest) -> Status:
    return Status(202, {"request_id": item.public_id, "status": "queued"})


def _check_storable(payload: Schema) -> None:
    """No database stores a lone surrogate or NUL: a 422 naming the field, not a 500."""
    for name, value in payload.model_dump().items():
        tags.clean_tree(value, field=name)


def _invalid(exc: InvalidInput) -> ApiError:
    return ApiError(422, exc.code if exc.code != "invalid" else "validation_error", exc.message, exc.field)


@router.post(
    "/{uuid:journey_id}/start",
    response={202: AcceptedOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Start a journey for subscribers",
)
def start_journey(request, journey_id: UUID, payload: StartIn):
    """Subscribers (listed, or everyone matching a rule) enter the journey, asynchronously: the
    answer is a request id; `GET /journeys/requests/{request_id}` has the result. Idempotent per
    request. The journey must be active and have an entry of type `api` (409 otherwise)."""
    journey = _journey(request, journey_id)
    try:
        _check_storable(payload)
        item = start.request_start(
            journey=journey, subscribers=payload.subscribers, rule=payload.rule, values=payload.values
        )
    except start.StartRefused as exc:
        raise ApiError(409, exc.code, exc.message) from None
    except InvalidInput as exc:
        raise _invalid(exc) from None
    return _accepted(item)


@router.post(
    "/drop",
    response={202: AcceptedOut, 404: ErrorOut, 422: ErrorOut},
    summary="Drop subscribers from running journeys",
)
def drop(request, payload: DropIn):
    """The subscribers' live runs end (reason `dropped`) in one journey or in all of the project's
    journeys; asynchronous like a start."""
    journey = _journey(request, payload.journey) if payload.journey is not None else None
    try:
        _check_storable(payload)
        item = start.request_drop(project=request.project, journey=journey, subscribers=payload.subscribers)
    except InvalidInput as exc:
        raise _invalid(exc) from None
    return _accepted(item)


@router.get(
    "/requests/{uuid:request_id}",
    response={200: RequestOut, 404: ErrorOut},
    summary="A start or drop request and its result",
)
def get_request(request, request_id: UUID):
    item = (
        JourneyStartRequest.objects.for_project(request.project)
        .select_related("journey")
        .filter(public_id=request_id)
        .first()
    )
    if item is None:
        raise ApiError(
            404,
            "request_not_found",
            _("No journey request %(id)s in this project.") % {"id": request_id},
            field="id",
        )
    return {
        "request_id": item.public_id,
        "action": item.action,
        "journey": item.journey.public_id if item.journey is not None else None,
        "status": item.status,
        "result": item.result or {},
        "created_at": item.created_at,
        "finished_at": item.finished_at,
    }
