"""Panel pages for segments: the list with counts, the visual builder with a live count, save and delete.

The builder (static/js/segment-builder.js) edits the rule tree in the browser and keeps it, as
JSON, in the form's ``rule`` field; the text box holds the same rule in text form. ``source``
says which of the two the marketer edited last, so saving (and the preview) use that one.
The live preview is a GET, so viewers can explore audiences too; only saving needs a marketer.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from controlpanel.models import Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view

from . import events as eventdefs
from . import segments
from . import tags as tagtypes
from .errors import InvalidInput
from .models import ConsentState, Segment, TagDefinition
from .segments import tree as t
from .segments.validate import IncompleteRule

SAMPLE_SIZE = 10
EMPTY_RULE: dict[str, Any] = t.group("and", [])


class RuleInputError(Exception):
    """The posted rule cannot be read: a syntax error in the text or a tree that is not JSON."""

    def __init__(self, message: str, *, position: int | None = None, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.position = position
        self.path = path


def _actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user)


def _read_rule(data) -> dict[str, Any]:
    """The rule tree from the builder's JSON or from the text box, whichever ``source`` names."""
    if data.get("source") == "builder":
        raw = data.get("rule") or ""
        try:
            tree = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            raise RuleInputError(
                _("The builder sent a rule that is not valid JSON; reload the page.")
            ) from None
        return tree
    text = data.get("text") or ""
    try:
        return segments.parse_rule(text)
    except segments.RuleSyntaxError as exc:
        raise RuleInputError(exc.message, position=exc.position) from None


def _text_of(tree: Any) -> str:
    try:
        return segments.rule_to_text(tree)
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def _builder_schema(project, exclude: Segment | None = None) -> dict[str, Any]:
    """What the builder may offer: the project's tags, events, fields and segments with their operators."""
    tags = [
        {"name": b.name, "label": b.label, "type": str(b.type), "builtin": True, "ops": t.op_choices(b.type)}
        for b in tagtypes.BUILTIN_TAGS.values()
    ]
    tags += [
        {"name": d.name, "type": d.type, "builtin": False, "ops": t.op_choices(d.type)}
        for d in TagDefinition.objects.for_project(project).order_by("name")
    ]
    events = [
        {
            "name": name,
            "attributes": [
                {"name": attr, "type": type_, "ops": t.op_choices(type_)}
                for attr, type_ in sorted(attributes.items())
                if type_ in t.OPS_BY_TYPE and type_ != "list"
            ],
        }
        for name, attributes in sorted(
            eventdefs.all_definitions(project).items(), key=lambda kv: kv[0].lower()
        )
    ]
    others = Segment.objects.for_project(project).order_by("name")
    if exclude is not None:
        others = others.exclude(pk=exclude.pk)
    return {
        "tags": tags,
        "events": events,
        "fields": [
            {"name": name, "label": label, "type": type_, "ops": t.op_choices(type_)}
            for name, (_column, type_, label) in t.FIELDS.items()
        ],
        "segments": [{"id": str(s.public_id), "name": s.name} for s in others],
        "reachability": list(t.REACHABILITY_CHANNELS.items()),
        "countOps": list(t.COUNT_OPS.items()),
        "consentValues": list(t.CONSENT_VALUES),
    }


def _preview(project, data, actor: Actor) -> dict[str, Any]:
    """Count and sample for the posted rule, or the error that stops it, for the preview partial."""
    result: dict[str, Any] = {"source": data.get("source") or "text", "text": data.get("text") or ""}
    if result["source"] == "text" and not result["text"].strip():
        result["empty"] = True
        return result
    try:
        tree = _read_rule(data)
    except RuleInputError as exc:
        result["error"] = exc.message
        if exc.position is not None:
            text = result["text"]
            result["error_position"] = exc.position
            result["error_context"] = (
                text[: exc.position],
                text[exc.position : exc.position + 1],
                text[exc.position + 1 :],
            )
        return result
    if t.is_group(tree) and not tree.get("children"):
        # An emptied builder empties the text box too.
        result.update(empty=True, sync_text=True, rule_text="")
        return result
    try:
        checked = segments.validate_rule(project, tree)
        result["count"] = segments.count_unsaved(project=project, rule=checked, actor=actor)
    except IncompleteRule as exc:
        result["incomplete"] = exc.message
        result["error_path"] = exc.field or ""
        return result
    except InvalidInput as exc:
        result["error"] = exc.message
        result["error_path"] = exc.field or ""
        return result
    result["rule_json"] = json.dumps(checked)
    result.update(sync_text=True, rule_text=segments.rule_to_text(checked))
    if result["count"]:
        # The sample is a second, lazy request: the count shows as soon as it is known, and the
        # newest matching subscribers follow (together they took twice as long at 1M rows).
        query = urlencode({"rule": result["rule_json"], "count": result["count"]})
        result["sample_url"] = f"{reverse('subscribers:segment_sample', args=[project.slug])}?{query}"
    return result


def _for_row(segment: Segment, now) -> Segment:
    segment.text = _text_of(segment.rule)
    computed = segment.count_computed_at
    segment.counted_just_now = computed is not None and (now - computed).total_seconds() < 60
    return segment


@project_view(section="segments")
def segment_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    items = [_for_row(s, now) for s in Segment.objects.for_project(request.project).order_by("name")]
    return render(
        request,
        "subscribers/segments.html",
        {"segments": items, "can_edit": request.membership.can(Role.MARKETER)},
    )


def _builder(request: HttpRequest, segment: Segment | None) -> HttpResponse:
    project = request.project
    errors: dict[str, str] = {}
    rule_error: RuleInputError | None = None
    if request.method == "POST":
        data = request.POST
        name, description = data.get("name", ""), data.get("description", "")
        text, source = data.get("text", ""), data.get("source") or "text"
        try:
            rule = _read_rule(data)
            saved = segments.save_segment(
                project=project,
                segment=segment,
                name=name,
                description=description,
                rule=rule,
                actor=_actor(request),
            )
        except RuleInputError as exc:
            # Unreadable: the text box keeps what was typed; the builder shows the last good rule.
            rule_error, rule = exc, segment.rule if segment is not None else EMPTY_RULE
        except InvalidInput as exc:
            if exc.field in ("name", "description"):
                errors[exc.field] = exc.message
            else:
                rule_error = RuleInputError(exc.message, path=exc.field)
        else:
            args = {"name": saved.name, "count": number_format(saved.cached_count, force_grouping=True)}
            if segment is None:
                messages.success(request, _("Segment “%(name)s” created: %(count)s subscribers.") % args)
            else:
                messages.success(request, _("Segment “%(name)s” saved: %(count)s subscribers.") % args)
            return redirect("subscribers:segments", project.slug)
    elif segment is not None:
        name, description, rule = segment.name, segment.description, segment.rule
        text, source = _text_of(rule), "builder"
    else:
        name, description, rule, source = "", "", EMPTY_RULE, "builder"
        # "New segment from this text" links (and the API docs) may hand over a rule in text form.
        text = request.GET.get("text", "")
        if text:
            source = "text"
            try:
                rule = segments.parse_rule(text)
            except segments.RuleSyntaxError as exc:
                rule_error = RuleInputError(exc.message, position=exc.position)
    if not t.is_group(rule):
        rule = t.group("and", [rule]) if isinstance(rule, dict) else EMPTY_RULE
    preview = (
        _preview(project, {"source": "builder", "rule": json.dumps(rule)}, _actor(request))
        if rule.get("children")
        else {}
    )
    return render(
        request,
        "subscribers/segment_builder.html",
        {
            "segment": segment,
            "name": name,
            "description": description,
            "rule": rule,
            "text": text,
            "source": source,
            "errors": errors,
            "rule_error": rule_error,
            "schema": _builder_schema(project, exclude=segment),
            "preview": preview or {"empty": True},
            "can_edit": request.membership.can(Role.MARKETER),
        },
        status=422 if request.method == "POST" else 200,
    )


@project_view(section="segments")
def segment_new(request: HttpRequest) -> HttpResponse:
    return _builder(request, None)


@project_view(section="segments")
def segment_edit(request: HttpRequest, segment_id) -> HttpResponse:
    segment = get_object_or_404(Segment.objects.for_project(request.project), public_id=segment_id)
    return _builder(request, segment)


@project_view(section="segments")
@require_GET
def segment_sample(request: HttpRequest) -> HttpResponse:
    """The newest subscribers matching a rule the preview has validated (loaded after the count)."""
    if "rule" not in request.GET:
        return HttpResponse("")  # nothing asked, nothing to show
    try:
        checked = segments.validate_rule(request.project, json.loads(request.GET.get("rule", "")))
        count = int(request.GET.get("count", ""))
    except (ValueError, RecursionError, InvalidInput):  # the URL is anyone's to edit
        return HttpResponse("", status=400)
    sample, reachable = segments.sample(request.project, checked, limit=SAMPLE_SIZE)
    for subscriber in sample:
        subscriber.unreachable = _why_unreachable(subscriber)
    context = {"sample": sample, "count": count, "reachable": reachable}
    return render(request, "subscribers/segment_builder.html#segment-sample", context)


def _why_unreachable(subscriber) -> str:
    """Why a WhatsApp campaign would skip this subscriber ("" when it would not)."""
    if subscriber.whatsapp_consent != ConsentState.OPTED_IN:
        return _("not opted in") if subscriber.whatsapp_consent == ConsentState.UNKNOWN else _("opted out")
    return "" if subscriber.phone else _("no phone number")


@project_view(section="segments")
@require_GET
def segment_preview(request: HttpRequest) -> HttpResponse:
    """The live audience count and sample for the rule being edited (a GET: viewers may explore)."""
    data = request.GET
    preview = _preview(request.project, data, _actor(request)) if data else {"empty": True}
    return render(request, "subscribers/segment_builder.html#segment-preview", {"preview": preview})


@project_view(section="segments")
@require_POST
def segment_delete(request: HttpRequest, segment_id) -> HttpResponse:
    segment = get_object_or_404(Segment.objects.for_project(request.project), public_id=segment_id)
    try:
        segments.delete_segment(segment=segment, actor=_actor(request))
    except InvalidInput as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Segment “%(name)s” deleted.") % {"name": segment.name})
    return redirect("subscribers:segments", request.project.slug)


@project_view(section="segments")
@require_POST
def segment_recount(request: HttpRequest, segment_id) -> HttpResponse:
    """Count a saved segment now and store it; htmx swaps just its row."""
    segment = get_object_or_404(Segment.objects.for_project(request.project), public_id=segment_id)
    error = None
    try:
        segments.refresh_count(segment=segment)
    except InvalidInput as exc:
        error = f"“{segment.name}” cannot be counted: {exc.message}"
    _for_row(segment, timezone.now())
    if request.htmx:
        context = {"segment": segment, "row_error": error, "can_edit": True}
        return render(request, "subscribers/segments.html#segment-row", context)
    if error:
        messages.error(request, error)
    return redirect("subscribers:segments", request.project.slug)


urlpatterns = [
    path("segments/", segment_list, name="segments"),
    path("segments/new/", segment_new, name="segment_new"),
    path("segments/preview/", segment_preview, name="segment_preview"),
    path("segments/preview/sample/", segment_sample, name="segment_sample"),
    path("segments/<uuid:segment_id>/", segment_edit, name="segment_edit"),
    path("segments/<uuid:segment_id>/delete/", segment_delete, name="segment_delete"),
    path("segments/<uuid:segment_id>/count/", segment_recount, name="segment_recount"),
]
