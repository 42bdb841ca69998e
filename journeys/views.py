"""The journeys list and the actions it offers: new, clone, export, import, pause/resume/stop.

Every action is a plain form that posts and redirects back (the page works without JavaScript);
the service says why an action is refused and the page shows it as a message. The canvas and its
JSON endpoints are in ``builder_views.py``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import messages
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST, require_safe

from controlpanel.models import Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view

from . import services
from .definition import DefinitionError
from .models import Journey, JourneyRun, JourneyStat, JourneyStatus, RunState

LIST_SIZE = 25
MAX_IMPORT_BYTES = 1_000_000
# What a new journey starts as: an API entry (it starts nobody until someone calls the API or
# the marketer picks another entry), no steps yet.
BLANK = {"name": "New journey", "entry": {"type": "api"}, "settings": {"reentry": "after_exit"}, "steps": []}
# list/builder action -> the message once done (the service of the same name does it)
LIFECYCLE = {
    "pause": gettext_lazy("“%(name)s” paused: its subscribers hold where they are."),
    "resume": gettext_lazy("“%(name)s” resumed."),
    "stop": gettext_lazy("“%(name)s” stopped."),
}


def _resumed(activation: services.Activation, name: str) -> str:
    """Say which version subscribers already in the journey walk now (the issue asks the panel to)."""
    if not activation.new_version:
        return str(LIFECYCLE["resume"]) % {"name": name}
    said = _("“%(name)s” resumed as version %(version)s") % {"name": name, "version": activation.version}
    if activation.moved:
        said += "; " + ngettext(
            "%(count)s subscriber in it moved to the new version",
            "%(count)s subscribers in it moved to the new version",
            activation.moved,
        ) % {"count": activation.moved}
    if activation.stayed:
        said += "; " + ngettext(
            "%(count)s stays on the version they started on (their step changed or is gone)",
            "%(count)s stay on the version they started on (their step changed or is gone)",
            activation.stayed,
        ) % {"count": activation.stayed}
    return said + "."


def get_journey(request: HttpRequest, journey_id: uuid.UUID) -> Journey:
    """The project's journey by public id; another project's is "not found" like a missing one."""
    journey = Journey.objects.for_project(request.project).filter(public_id=journey_id).first()
    if journey is None:
        raise Http404("No such journey in this project.")
    return journey


def actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user)


def problem_text(exc: DefinitionError) -> str:
    return describe(exc.problems)


def describe(problems: list[Any]) -> str:
    """The first few problems in words (``Problem`` objects or their dicts)."""
    found = []
    for p in problems[:5]:
        step, message = (p.get("step"), p.get("message")) if isinstance(p, dict) else (p.step, p.message)
        found.append(f"{step + ': ' if step else ''}{message}")
    return " ".join(found)


def _url_or_none(name: str, *args: Any) -> str | None:
    # The keyword shortcut lives in the panel slice's URLs; the list works before they exist.
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


@project_view(section="journeys")
@require_safe
def journey_list(request: HttpRequest) -> HttpResponse:
    """Newest first, keyset-paged by id; two grouped queries for the page's counters."""
    project = request.project
    journeys = Journey.objects.for_project(project)
    before = request.GET.get("before", "")
    if before.isdigit():
        journeys = journeys.filter(pk__lt=int(before))
    page = list(
        journeys.only(
            "id", "public_id", "name", "status", "entry_kinds", "keywords", "version", "updated_at"
        ).order_by("-pk")[: LIST_SIZE + 1]
    )
    rows = page[:LIST_SIZE]
    ids = [j.pk for j in rows]
    totals: dict[int, dict[str, int]] = {pk: {} for pk in ids}
    for stat in JourneyStat.objects.for_project(project).filter(
        journey_id__in=ids, step_id="", key__in=("entered", "converted")
    ):
        totals[stat.journey_id][stat.key] = stat.n
    live = (
        JourneyRun.objects.for_project(project)
        .filter(journey_id__in=ids, dry_run=False)
        .exclude(state=RunState.DONE)
        .values("journey_id")
        .annotate(n=Count("id"))
    )
    for row in live:
        totals[row["journey_id"]]["now"] = row["n"]
    keyword_url = (
        _url_or_none("journeys:keyword_new", project.slug) or f"/p/{project.slug}/journeys/keyword/new/"
    )
    return render(
        request,
        "journeys/list.html",
        {
            "rows": [(j, totals[j.pk]) for j in rows],
            "next_before": rows[-1].pk if len(page) > LIST_SIZE else None,
            "has_any": bool(rows) or before != "",
            "keyword_url": keyword_url,
            "examples": [
                (
                    "promo",
                    _("PROMO keyword"),
                    _("Reply to “PROMO” at once, send an offer template an hour later."),
                ),
                (
                    "hilfe",
                    _("HILFE support menu"),
                    _("Answer “HILFE” with a quick-reply menu and a branch per button."),
                ),
            ],
            "statuses": JourneyStatus,
        },
    )


@project_view(section="journeys", read=Role.MARKETER)  # POST only: nothing here for a viewer
@require_POST
def journey_new(request: HttpRequest) -> HttpResponse:
    name = (request.POST.get("name") or "").strip()[:200] or _("New journey")
    journey = services.create_journey(
        project=request.project, data={**BLANK, "name": name}, actor=actor(request)
    )
    return redirect("journeys:builder", request.project.slug, journey.public_id)


@project_view(section="journeys")
@require_POST
def journey_action(request: HttpRequest, journey_id: uuid.UUID, action: str) -> HttpResponse:
    """Pause, resume or stop, from the list or the builder (``next`` says where to go back to)."""
    journey = get_journey(request, journey_id)
    if action not in LIFECYCLE:
        raise Http404("No such action.")
    try:
        if action == "resume":
            # With move_runs, subscribers already in the journey go on in the edited version
            # where their step is still there; otherwise they finish on the version they began.
            done = _resumed(
                services.resume_journey(
                    journey=journey, actor=actor(request), move_runs=bool(request.POST.get("move_runs"))
                ),
                journey.name,
            )
        else:
            getattr(services, action)(journey=journey, actor=actor(request))
            done = str(LIFECYCLE[action]) % {"name": journey.name}
    except services.JourneyRefused as exc:
        messages.error(request, exc.message)
    except DefinitionError as exc:  # resuming an edited journey validates it first
        messages.error(
            request,
            _("“%(name)s” cannot resume: %(problems)s")
            % {"name": journey.name, "problems": problem_text(exc)},
        )
    else:
        messages.success(request, done)
    if request.POST.get("next") == "builder":
        return redirect("journeys:builder", request.project.slug, journey.public_id)
    return redirect("journeys:list", request.project.slug)


@project_view(section="journeys")
@require_POST
def journey_clone(request: HttpRequest, journey_id: uuid.UUID) -> HttpResponse:
    journey = get_journey(request, journey_id)
    copy = services.clone_journey(journey=journey, actor=actor(request))
    messages.success(
        request, _("“%(copy)s” is a draft copy of “%(name)s”.") % {"copy": copy.name, "name": journey.name}
    )
    return redirect("journeys:builder", request.project.slug, copy.public_id)


@project_view(section="journeys")
@require_safe
def journey_export(request: HttpRequest, journey_id: uuid.UUID) -> HttpResponse:
    journey = get_journey(request, journey_id)
    response = JsonResponse(
        services.export_journey(journey), json_dumps_params={"indent": 2, "ensure_ascii": False}
    )
    filename = f"journey-{slugify(journey.name) or 'export'}.json"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@project_view(section="journeys", read=Role.MARKETER)  # POST only: nothing here for a viewer
@require_POST
def journey_import(request: HttpRequest) -> HttpResponse:
    """A JSON file exported from this or another project becomes a draft here."""
    back = redirect("journeys:list", request.project.slug)
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, _("Choose a journey JSON file to import."))
        return back
    if upload.size > MAX_IMPORT_BYTES:
        messages.error(request, _("That file is larger than 1 MB; a journey export is much smaller."))
        return back
    try:
        data = json.loads(upload.read().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # nested past the decoder's limit
        messages.error(request, _("“%(file)s” is not a JSON file.") % {"file": upload.name})
        return back
    try:
        imported = services.import_journey(project=request.project, data=data, actor=actor(request))
    except DefinitionError as exc:
        messages.error(
            request,
            _("“%(file)s” is not a journey we can import: %(problems)s")
            % {"file": upload.name, "problems": problem_text(exc)},
        )
        return back
    # The service may hand back what it could not resolve in this project (segments, templates)
    # along with the draft: the marketer fixes those in the builder.
    journey, missing = imported if isinstance(imported, tuple) else (imported, [])
    messages.success(request, _("Imported “%(name)s” as a draft.") % {"name": journey.name})
    if missing:
        messages.warning(
            request, _("To fix before activating: %(problems)s") % {"problems": describe(list(missing))}
        )
    return redirect("journeys:builder", request.project.slug, journey.public_id)
