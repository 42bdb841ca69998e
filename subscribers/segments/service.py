"""Writes on saved segments: create/update from a rule, delete, refresh the stored count."""

from __future__ import annotations

import time
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from controlpanel.models import Project
from controlpanel.services import Actor, record_audit

from ..errors import InvalidInput
from ..models import Segment
from ..tags import clean_text
from . import tree as t
from .compiler import count
from .text import rule_to_text
from .validate import validate_rule

MAX_NAME = 120
MAX_DESCRIPTION = 255
# The goal for a count. A rule that is not saved and counts slower than this asks for
# indexes on the event attributes it compares, as saving the rule would.
SLOW_COUNT_SECONDS = 0.1


def count_unsaved(*, project: Project, rule: Any, actor: Actor) -> int:
    """Count a rule that is not saved (the builder's preview, ``POST /segments/count``).

    Saving a segment indexes the event attributes its rule compares for equality. A marketer
    exploring in the builder, or a backend counting through the API, may never save: when such
    a count is slow, it asks for the same indexes, so that the next counts are fast. Only slow
    counts ask, so small projects never build one; the project's limit of indexes holds.
    Raises InvalidInput (IncompleteRule) like validate_rule.
    """
    started = time.perf_counter()
    result = count(project, rule)  # validates the rule itself
    if time.perf_counter() - started > SLOW_COUNT_SECONDS:
        from ..attribute_indexes import ensure_for_rule  # it imports this package: not at module level

        ensure_for_rule(project=project, rule=validate_rule(project, rule), actor=actor)
    return result


def refresh_count(*, segment: Segment) -> Segment:
    """Count the segment's audience now and store it with the time. Safe to run any time."""
    segment.cached_count = count(segment.project, segment.rule)
    segment.count_computed_at = timezone.now()
    Segment.objects.filter(pk=segment.pk).update(
        cached_count=segment.cached_count, count_computed_at=segment.count_computed_at
    )
    return segment


def _clean_name(project: Project, name: Any, segment: Segment | None) -> str:
    name = clean_text(str(name or "").strip(), field="name", what="The segment name")
    if not name:
        raise InvalidInput(_("A segment needs a name."), field="name", code="invalid")
    if len(name) > MAX_NAME:
        raise InvalidInput(
            _("The name is longer than %(MAX_NAME)s characters.") % {"MAX_NAME": MAX_NAME},
            field="name",
            code="invalid",
        )
    taken = Segment.objects.for_project(project).filter(name__iexact=name)
    if segment is not None:
        taken = taken.exclude(pk=segment.pk)
    if taken.exists():
        raise InvalidInput(
            _("A segment named %(name)r already exists.") % {"name": name}, field="name", code="conflict"
        )
    return name


@transaction.atomic
def save_segment(
    *,
    project: Project,
    name: str,
    rule: Any,
    actor: Actor,
    description: str = "",
    segment: Segment | None = None,
) -> Segment:
    """Create (``segment=None``) or update a saved segment; validates the rule and stores its count.

    Raises InvalidInput (nothing written) for a bad name or rule; a rule that includes the
    segment itself, directly or through other segments, is refused.
    """
    if segment is not None and segment.project_id != project.pk:
        raise InvalidInput(_("No such segment."), code="not_found")
    name = _clean_name(project, name, segment)
    description = str(description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(
            _("The description is longer than %(MAX_DESCRIPTION)s characters.")
            % {"MAX_DESCRIPTION": MAX_DESCRIPTION},
            field="description",
            code="invalid",
        )
    checked = validate_rule(project, rule, segment=segment)
    created = segment is None
    if created:
        segment = Segment(project=project, created_by=actor.user)
        old = {}
    else:
        old = {"name": segment.name, "description": segment.description, "rule": rule_to_text(segment.rule)}
    segment.name, segment.description, segment.rule = name, description, checked
    try:
        with transaction.atomic():
            segment.save()
    except IntegrityError:
        raise InvalidInput(
            _("A segment named %(name)r already exists.") % {"name": name}, field="name", code="conflict"
        ) from None
    if old and old["name"] != name:
        _rename_references(segment)
    refresh_count(segment=segment)
    from ..attribute_indexes import ensure_for_rule  # it imports this package: not at module level

    ensure_for_rule(project=project, rule=checked, actor=actor)
    new = {"name": name, "description": description, "rule": rule_to_text(checked)}
    changes = {k: [old.get(k), v] for k, v in new.items() if old.get(k) != v}
    record_audit(
        project=project,
        actor=actor,
        action="segment.created" if created else "segment.updated",
        obj=segment,
        changes=changes,
    )
    return segment


def segments_including(segment: Segment) -> list[Segment]:
    """The project's other segments whose rules include ``segment`` directly."""
    ref = str(segment.public_id)
    return [
        other
        for other in Segment.objects.for_project(segment.project).exclude(pk=segment.pk)
        if any(node.get("segment") == ref for node in t.segment_refs(other.rule or {}))
    ]


def _rename_references(segment: Segment) -> None:
    """Segments including ``segment`` carry its name for their text form: keep it current."""
    ref = str(segment.public_id)
    for other in segments_including(segment):
        for node in t.segment_refs(other.rule):
            if node.get("segment") == ref:
                node["name"] = segment.name
        # update(), not save(): renaming an included segment does not edit the including one.
        Segment.objects.filter(pk=other.pk).update(rule=other.rule)


@transaction.atomic
def delete_segment(*, segment: Segment, actor: Actor) -> None:
    """Delete a saved segment; refused while another segment includes it."""
    users = segments_including(segment)
    if users:
        names = ", ".join(repr(s.name) for s in users)
        raise InvalidInput(
            _("Segment %(name)r is used by %(names)s; remove it from there first.")
            % {"name": segment.name, "names": names},
            code="in_use",
        )
    record_audit(project=segment.project, actor=actor, action="segment.deleted", obj=segment)
    segment.delete()
