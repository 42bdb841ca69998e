"""The journey builder: a Drawflow canvas over the journey JSON, and the JSON endpoints it calls.

The page hands the canvas everything it draws from in one ``json_script`` (the definition, the
step types of the registry with their fixed outlets and counters, the project's approved templates
with their placeholders and quick-reply buttons, its email and push templates, segments, tags,
events). The canvas turns its state back
into the journey JSON (positions in each step's ``"ui"``) and posts it; every write goes through
``journeys.services``, so the builder, the API and imports share one set of rules. Problems come
back as ``{"step", "field", "message"}`` and are shown on the step and on the field.

An active or stopped journey, or a viewer, gets the canvas read-only: the services refuse edits
of an active journey anyway ("pause it first"); the page says so before anyone tries.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST, require_safe

from campaigns.channel_events import EVENT_NAMES as CHANNEL_EVENT_NAMES
from controlpanel.models import Role
from controlpanel.tenancy import project_view
from mail.models import EmailTemplate
from push.models import PushTemplate
from subscribers.models import EventDefinition, Segment, TagDefinition
from whatsapp import templates_lint as lint
from whatsapp.models import MessageTemplate, TemplateStatus

from . import services, stats, steps
from .definition import DefinitionError
from .models import Journey, JourneyStatus
from .steps import Problem
from .views import actor, get_journey

MAX_BODY_BYTES = 2_000_000
CHANNEL_EVENTS = tuple(CHANNEL_EVENT_NAMES.values())  # EmailOpened, PushOpened... (wait_event, goals)
EDITABLE = (JourneyStatus.DRAFT, JourneyStatus.PAUSED)


def _readonly_reason(request: HttpRequest, journey: Journey) -> str:
    if not request.membership.can(Role.MARKETER):
        return _("You can look at this journey; changing it needs the Marketer role.")
    if journey.status == JourneyStatus.ACTIVE:
        return _("This journey is active: pause it first to edit it.")
    if journey.status == JourneyStatus.STOPPED:
        return _("This journey is stopped and can no longer change; clone it to build on it.")
    return ""


PROBE = "__builder_probe__"


def _outlet_key(kind: steps.StepType, outlet: str) -> str:
    """The JSON key that holds a fixed outlet's target: mostly the outlet's name, but a wait for
    an event keeps its duration in ``timeout`` and the timeout's target in ``timeout_next``. Asked
    of the step type itself, so the canvas never writes a target over a setting."""
    for candidate in (outlet, f"{outlet}_next"):
        try:
            if kind.outlets({candidate: PROBE}).get(outlet) == PROBE:
                return candidate
        except Exception:  # a step module's bug must not take the whole builder down
            break
    return outlet


def _step_types() -> list[dict[str, Any]]:
    """The palette: every registered type with its outlets when nothing is configured yet."""
    found = []
    for kind in steps.types():
        try:
            fixed = list(kind.outlets({}))
        except Exception:  # a step module's bug must not take the whole builder down
            fixed = ["next"]
        found.append(
            {
                "type": kind.type,
                "label": str(kind.label),
                "channel": kind.channel,
                "outlets": fixed,
                "outlet_keys": {name: key for name in fixed if (key := _outlet_key(kind, name)) != name},
                # The counters its node shows besides entered/waiting/converted/exited.
                "counters": [
                    [key, str(label)] for key, label in stats.CHANNEL_COUNTERS.get(kind.channel, ())
                ],
            }
        )
    return sorted(found, key=lambda t: (t["channel"] != "whatsapp", t["type"] == "exit", t["label"]))


def _templates(project) -> list[dict[str, Any]]:
    """Approved templates with what a send step must fill in and the quick replies it can branch on."""
    found = []
    rows = (
        MessageTemplate.objects.for_project(project)
        .filter(status=TemplateStatus.APPROVED)
        .only("name", "language", "category", "parameter_format", "components")
        .order_by("name", "language")
    )
    seen: set[tuple[str, str]] = set()
    for template in rows:
        if (template.name, template.language) in seen:  # the same template on two accounts
            continue
        seen.add((template.name, template.language))
        components = template.components if isinstance(template.components, list) else []
        placeholders, media = [], ""
        for p in lint.template_parameters(
            components, category=template.category, parameter_format=template.parameter_format
        ):
            if p.component == "header" and p.name in ("image", "video", "document", "location"):
                media = p.name
                continue
            placeholders.append(
                {
                    "key": f"{p.component}.{p.name}",
                    "label": f"{p.label} {{{{{p.name}}}}}",
                    "example": p.example,
                }
            )
        buttons = []
        for component in components:
            if isinstance(component, dict) and str(component.get("type", "")).upper() == "BUTTONS":
                for button in component.get("buttons") or []:
                    if isinstance(button, dict) and str(button.get("type", "")).upper() == "QUICK_REPLY":
                        buttons.append(str(button.get("text") or ""))
        body = next(
            (
                c.get("text", "")
                for c in components
                if isinstance(c, dict) and str(c.get("type", "")).upper() == "BODY"
            ),
            "",
        )
        found.append(
            {
                "name": template.name,
                "language": template.language,
                "category": template.category,
                "placeholders": placeholders,
                "media": media,
                "buttons": [b for b in buttons if b],
                "body": str(body)[:300],
            }
        )
    return found


def _channel_templates(project) -> dict[str, list[dict[str, Any]]]:
    """The project's email and push templates for the send steps' pickers (the step keeps the
    public id: a renamed template stays chosen)."""
    return {
        "email": [
            {"id": str(t.public_id), "name": t.name, "marketing": t.marketing, "preview": t.subject[:200]}
            for t in EmailTemplate.objects.for_project(project).only(
                "public_id", "name", "marketing", "subject"
            )
        ],
        "push": [
            {"id": str(t.public_id), "name": t.name, "marketing": t.marketing, "preview": t.title[:200]}
            for t in PushTemplate.objects.for_project(project).only("public_id", "name", "marketing", "title")
        ],
    }


def _builder_data(request: HttpRequest, journey: Journey) -> dict[str, Any]:
    project = request.project
    slug = project.slug
    args = [slug, journey.public_id]
    return {
        "journey": {
            "id": str(journey.public_id),
            "name": journey.name,
            "status": journey.status,
            "version": journey.version,
            "definition": journey.definition,
        },
        "readonly": _readonly_reason(request, journey),
        "types": _step_types(),
        "templates": _templates(project),
        "channel_templates": _channel_templates(project),
        "channels": [[channel, str(label)] for channel, label in stats.CHANNEL_LABELS.items()],
        "segments": [
            {"id": str(s.public_id), "name": s.name}
            for s in Segment.objects.for_project(project).only("public_id", "name").order_by("name")
        ],
        "tags": list(
            TagDefinition.objects.for_project(project).order_by("name").values_list("name", flat=True)
        ),
        "events": sorted(
            {
                "WhatsAppReceived",
                "WhatsAppDelivered",
                "WhatsAppRead",
                "WhatsAppFailed",
                "WhatsAppButtonClicked",
                *CHANNEL_EVENTS,
            }
            | set(EventDefinition.objects.for_project(project).values_list("name", flat=True))
        ),
        "urls": {
            "save": reverse("journeys:builder_save", args=args),
            "validate": reverse("journeys:builder_validate", args=args),
            "activate": reverse("journeys:builder_activate", args=args),
            "counts": reverse("journeys:builder_counts", args=args),
        },
        "counts": stats.step_counts(journey),
    }


@project_view(section="journeys")
@require_safe
def builder(request: HttpRequest, journey_id: uuid.UUID) -> HttpResponse:
    journey = get_journey(request, journey_id)
    data = _builder_data(request, journey)
    return render(
        request, "journeys/builder.html", {"journey": journey, "data": data, "readonly": data["readonly"]}
    )


def _problems(problems: list[Problem]) -> list[dict[str, Any]]:
    return [p.as_dict() for p in problems]


def _posted_definition(request: HttpRequest) -> dict[str, Any] | JsonResponse:
    """The definition the canvas posted, or the 400 answer that says what is wrong with the body."""
    if len(request.body) > MAX_BODY_BYTES:
        return JsonResponse({"message": _("The journey is too large to save (2 MB at most).")}, status=400)
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # nested past the decoder's limit
        return JsonResponse({"message": _("The builder sent something that is not JSON.")}, status=400)
    if not isinstance(body, dict) or not isinstance(body.get("definition"), dict):
        return JsonResponse({"message": _('Send {"definition": {...}}.')}, status=400)
    return body["definition"]


def _save(request: HttpRequest, journey: Journey) -> tuple[Journey, JsonResponse | None]:
    """Save what the canvas posted; the error answer when it cannot be (refused, not JSON, problems)."""
    data = _posted_definition(request)
    if isinstance(data, JsonResponse):
        return journey, data
    if data == journey.definition:  # nothing changed: also lets "Activate" run on an active journey
        return journey, None
    try:
        journey = services.update_journey(journey=journey, data=data, actor=actor(request))
    except services.JourneyRefused as exc:
        return journey, JsonResponse({"message": exc.message, "status": journey.status}, status=409)
    except DefinitionError as exc:
        return journey, JsonResponse(
            {"message": _("Not saved: fix the problems marked in red."), "problems": _problems(exc.problems)},
            status=422,
        )
    return journey, None


def _validate(journey: Journey) -> tuple[list[Problem], list[Any]]:
    # The definition slice adds warnings (a contains/regex keyword that would also catch another
    # journey's keyword); until it lands there are only problems.
    with_warnings = getattr(services, "validate_with_warnings", None)
    if with_warnings is not None:
        problems, warnings = with_warnings(journey)
        return list(problems), list(warnings)
    return services.validate(journey), []


def _warning_dict(warning: Any) -> dict[str, Any]:
    if isinstance(warning, Problem):
        return warning.as_dict()
    if isinstance(warning, dict):
        return warning
    return {"step": None, "field": "", "message": str(warning)}


@project_view(section="journeys")
@require_POST
def builder_save(request: HttpRequest, journey_id: uuid.UUID) -> JsonResponse:
    journey, failed = _save(request, get_journey(request, journey_id))
    if failed:
        return failed
    return JsonResponse({"saved": True, "name": journey.name, "status": journey.status})


@project_view(section="journeys")
@require_POST
def builder_validate(request: HttpRequest, journey_id: uuid.UUID) -> JsonResponse:
    """Save, then everything that would block activation (strict checks, collisions, templates)."""
    journey, failed = _save(request, get_journey(request, journey_id))
    if failed:
        return failed
    problems, warnings = _validate(journey)
    return JsonResponse(
        {
            "saved": True,
            "problems": _problems(problems),
            "warnings": [_warning_dict(w) for w in warnings],
            "message": _("Ready to activate.")
            if not problems
            else ngettext(
                "%(count)s problem blocks activation.", "%(count)s problems block activation.", len(problems)
            )
            % {"count": len(problems)},
        }
    )


@project_view(section="journeys")
@require_POST
def builder_activate(request: HttpRequest, journey_id: uuid.UUID) -> JsonResponse:
    journey, failed = _save(request, get_journey(request, journey_id))
    if failed:
        return failed
    try:
        journey = services.activate(journey=journey, actor=actor(request))
    except services.JourneyRefused as exc:
        return JsonResponse({"message": exc.message, "status": journey.status}, status=409)
    except DefinitionError as exc:
        return JsonResponse(
            {
                "message": _("Not activated: fix the problems marked in red."),
                "problems": _problems(exc.problems),
            },
            status=422,
        )
    return JsonResponse({"saved": True, "status": journey.status, "version": journey.version, "reload": True})


@project_view(section="journeys")
@require_safe
def builder_counts(request: HttpRequest, journey_id: uuid.UUID) -> JsonResponse:
    """The canvas's live numbers: per step (and per outlet), plus the journey's status."""
    journey = get_journey(request, journey_id)
    response = JsonResponse({"status": journey.status, "counts": stats.step_counts(journey)})
    response["Cache-Control"] = "no-store"
    return response
