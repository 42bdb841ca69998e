"""The /api/v1/segments endpoints: saved segments, their counts, and counting a rule in text form.

Rules travel as the text form (``T("city", eq, "Berlin") * E("OrderPlaced", gte, 1, 30d)``).
A rule that does not parse is a 422 ``rule_syntax_error`` with the 0-based ``position``; a rule
that parses but does not fit the project (unknown tag, operator not allowed for the type) is a
422 ``invalid_rule``. Every lookup starts from the API key's project.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.utils.translation import gettext as _
from ninja import Field, Router, Schema, Status

from controlpanel.api import ApiError, ErrorOut
from controlpanel.models import Project

from . import segments
from .errors import InvalidInput
from .models import Segment

router = Router(tags=["segments"])


class RuleErrorOut(Schema):
    code: str
    message: str
    field: str | None = None
    position: int | None = Field(None, description="0-based position of a syntax error in the rule text")


class SegmentOut(Schema):
    id: UUID
    name: str
    description: str
    rule: str = Field(description="The rule in text form")
    tree: dict[str, Any] = Field(description="The rule as a JSON tree (what the panel's builder edits)")
    count: int | None = Field(description="Subscribers matching when last counted")
    count_computed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SegmentIn(Schema):
    # The limits save_segment checks, shown in the document.
    name: str = Field(json_schema_extra={"minLength": 1, "maxLength": 120})
    description: str = Field("", json_schema_extra={"maxLength": 255})
    rule: str = Field(description='The rule in text form, e.g. T("city", eq, "Berlin")')


class RuleIn(Schema):
    rule: str = Field(description='The rule in text form, e.g. T("city", eq, "Berlin") * R(whatsapp)')


class CountOut(Schema):
    count: int


class SegmentCountOut(Schema):
    id: UUID
    count: int
    count_computed_at: datetime


# 400, 401, 413 and the 404 of an unknown id are documented for every endpoint by controlpanel.api.
ERRORS = {404: ErrorOut, 409: ErrorOut, 422: RuleErrorOut}


def segment_out(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.public_id,
        "name": segment.name,
        "description": segment.description,
        "rule": _text(segment.rule),
        "tree": segment.rule,
        "count": segment.cached_count,
        "count_computed_at": segment.count_computed_at,
        "created_at": segment.created_at,
        "updated_at": segment.updated_at,
    }


def _text(tree: dict[str, Any]) -> str:
    try:
        return segments.rule_to_text(tree)
    except ValueError:
        return ""


def get_segment(project: Project, segment_id: UUID) -> Segment:
    segment = Segment.objects.for_project(project).filter(public_id=segment_id).first()
    if segment is None:
        raise ApiError(
            404, "segment_not_found", _("No segment %(id)s in this project.") % {"id": segment_id}, field="id"
        )
    return segment


def parse(text: str) -> dict[str, Any] | Status:
    try:
        return segments.parse_rule(text)
    except segments.RuleSyntaxError as exc:
        body = {
            "code": "rule_syntax_error",
            "message": exc.message,
            "field": "rule",
            "position": exc.position,
        }
        return Status(422, body)


def rule_error(exc: InvalidInput) -> Status:
    if exc.code == "invalid_rule":
        return Status(422, {"code": "invalid_rule", "message": exc.message, "field": "rule"})
    return Status({"conflict": 409, "not_found": 404}.get(exc.code, 422), exc.as_dict())


@router.get("", response={200: list[SegmentOut]}, summary="List saved segments with their last count")
def list_segments(request):
    """All saved segments of the project with their last computed count."""
    return [segment_out(s) for s in Segment.objects.for_project(request.project).order_by("name")]


@router.post("", response={201: SegmentOut, **ERRORS}, summary="Save a segment from its text rule")
def create_segment(request, payload: SegmentIn):
    """Save a segment from a rule in text form; its count is computed on save."""
    tree = parse(payload.rule)
    if isinstance(tree, Status):
        return tree
    try:
        segment = segments.save_segment(
            project=request.project,
            name=payload.name,
            description=payload.description,
            rule=tree,
            actor=request.actor,
        )
    except InvalidInput as exc:
        return rule_error(exc)
    return Status(201, segment_out(segment))


@router.post(
    "/count",
    response={200: CountOut, **ERRORS},
    summary="Count the audience of a text rule (422 with the error position)",
)
def count_rule(request, payload: RuleIn):
    """Count the subscribers matching a rule in text form, without saving it."""
    tree = parse(payload.rule)
    if isinstance(tree, Status):
        return tree
    try:
        return {"count": segments.count_unsaved(project=request.project, rule=tree, actor=request.actor)}
    except InvalidInput as exc:
        return rule_error(exc)


@router.get("/{uuid:segment_id}", response={200: SegmentOut}, summary="Get a saved segment")
def get_one(request, segment_id: UUID):
    return segment_out(get_segment(request.project, segment_id))


@router.put("/{uuid:segment_id}", response={200: SegmentOut, **ERRORS}, summary="Replace a saved segment")
def update_segment(request, segment_id: UUID, payload: SegmentIn):
    """Replace a segment's name, description and rule; its count is recomputed."""
    segment = get_segment(request.project, segment_id)
    tree = parse(payload.rule)
    if isinstance(tree, Status):
        return tree
    try:
        segment = segments.save_segment(
            project=request.project,
            segment=segment,
            name=payload.name,
            description=payload.description,
            rule=tree,
            actor=request.actor,
        )
    except InvalidInput as exc:
        return rule_error(exc)
    return segment_out(segment)


@router.delete("/{uuid:segment_id}", response={204: None, 409: ErrorOut}, summary="Delete a saved segment")
def delete_segment(request, segment_id: UUID):
    """Delete a segment; refused (409) while another segment includes it."""
    segment = get_segment(request.project, segment_id)
    try:
        segments.delete_segment(segment=segment, actor=request.actor)
    except InvalidInput as exc:
        return Status(409, exc.as_dict())
    return Status(204, None)


@router.get(
    "/{uuid:segment_id}/count",
    response={200: SegmentCountOut, **ERRORS},
    summary="Count a saved segment now (and store the count)",
)
def count_segment(request, segment_id: UUID):
    """Count the segment's subscribers now and store the count with its time."""
    segment = get_segment(request.project, segment_id)
    try:
        segments.refresh_count(segment=segment)
    except InvalidInput as exc:
        # A saved rule can go stale, e.g. when a tag it uses was deleted.
        return rule_error(exc)
    return {
        "id": segment.public_id,
        "count": segment.cached_count,
        "count_computed_at": segment.count_computed_at,
    }
