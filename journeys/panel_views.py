"""Journey pages beside the builder: the keyword campaign shortcut, the statistics page, the dry run.

Thin views: resolve the project (``project_view``) -> the journey by public id in this project ->
a form -> a service (``keyword_campaigns``, ``services``, ``dryrun``) -> the page or its partial.
Partials are named like the DOM ids they replace and swapped with ``outerHTML``; every htmx form
has an ``action`` and works as a plain POST that redirects back.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from controlpanel.models import Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from subscribers.models import Subscriber

from . import dryrun, keyword_campaigns, services
from .definition import DefinitionError
from .models import Journey, JourneyRun, JourneyStatus, RunState
from .panel_forms import FireEventForm, KeywordCampaignForm, StartDryRunForm
from .stats import journey_stats, shown_definition
from .steps import Problem

KEYWORD_PAGE = "journeys/keyword.html"
STATS_PAGE = "journeys/stats.html"
DRYRUN_PAGE = "journeys/dryrun.html"
SEARCH_SIZE = 10
# Where a problem of the shortcut's journey belongs in its form (step id -> input).
PROBLEM_FIELDS = {
    keyword_campaigns.REPLY: "reply",
    keyword_campaigns.WAIT: "delay_amount",
    keyword_campaigns.FOLLOW_UP: "template",
}


def _target(request: HttpRequest) -> str:
    htmx = getattr(request, "htmx", None)
    if not htmx or htmx.history_restore_request:
        return ""
    return htmx.target or ""


def _journey(request: HttpRequest, journey_id: uuid.UUID) -> Journey:
    journey = Journey.objects.for_project(request.project).filter(public_id=journey_id).first()
    if journey is None:
        raise Http404("No such journey in this project.")
    return journey


def _actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user)


def _list_url(request: HttpRequest) -> str:
    return reverse("journeys:list", args=[request.project.slug])


def builder_url(slug: str, journey: Journey) -> str:
    """The builder's page for ``journey`` (its own slice names the route)."""
    for name in ("journeys:builder", "journeys:detail", "journeys:edit"):
        try:
            return reverse(name, args=[slug, journey.public_id])
        except NoReverseMatch:
            continue
    return f"/p/{slug}/journeys/{journey.public_id}/"


def problem_text(problem: Problem) -> str:
    field = problem.field or _("journey")
    if problem.step:
        return _("step “%(step)s”, %(field)s: %(message)s") % {
            "step": problem.step,
            "field": field,
            "message": problem.message,
        }
    return f"{field}: {problem.message}" if problem.field else problem.message


# --- keyword campaign shortcut ---------------------------------------------------------------------


def _attach_problems(form: KeywordCampaignForm, problems: list[Problem]) -> None:
    """Each problem next to the input it is about: keyword collisions and bad keywords (the entry)
    on the keywords, a step's problem on that step's input, the rest above the form."""
    for problem in problems:
        if problem.step is None and problem.field.startswith(("entry", "entries")):
            form.add_error("keywords", problem.message)
        elif problem.step is None and problem.field == "name":
            form.add_error("name", problem.message)
        elif problem.step == keyword_campaigns.REPLY and problem.field.startswith("texts."):
            code = problem.field.removeprefix("texts.")
            name = f"reply_{code}" if f"reply_{code}" in form.fields else "reply"
            form.add_error(name, problem.message)
        elif problem.step in PROBLEM_FIELDS:
            form.add_error(PROBLEM_FIELDS[problem.step], f"{problem.field}: {problem.message}")
        else:
            form.add_error(None, problem_text(problem))


def _keyword_context(request: HttpRequest, form: KeywordCampaignForm) -> dict[str, Any]:
    return {
        "form": form,
        "placeholders": form.placeholders(),
        "action_url": reverse("journeys:keyword_new", args=[request.project.slug]),
        "examples": keyword_campaigns.examples(request.project),
    }


@project_view(section="journeys", read=Role.MARKETER)
@require_http_methods(["GET", "HEAD", "POST"])
def keyword_new(request: HttpRequest) -> HttpResponse:
    """The shortcut's one form. "Save as draft" creates the journey; "Save and activate" creates and
    activates it in one transaction, or re-renders the form with what blocks activation (keyword
    collisions name the other journey) and writes nothing."""
    project = request.project
    if request.method != "POST":
        form = KeywordCampaignForm(request.GET or None, project=project)
        if _target(request) == "keyword-bindings":
            return render(request, f"{KEYWORD_PAGE}#keyword-bindings", _keyword_context(request, form))
        example = request.GET.get("example", "")
        form = KeywordCampaignForm(
            initial=keyword_campaigns.example_initial(project, example), project=project
        )
        context = _keyword_context(request, form)
        context["chosen_example"] = example
        return render(request, KEYWORD_PAGE, context)
    form = KeywordCampaignForm(request.POST, project=project)
    activate = request.POST.get("action") == "activate"
    if form.is_valid():
        try:
            journey = keyword_campaigns.create_keyword_campaign(
                project=project, spec=form.to_spec(), actor=_actor(request), activate=activate
            )
        except DefinitionError as exc:
            _attach_problems(form, exc.problems)
        except services.JourneyRefused as exc:
            form.add_error(None, exc.message)
        else:
            if activate:
                messages.success(
                    request,
                    _("“%(name)s” is active: it answers its keywords from now on.") % {"name": journey.name},
                )
            else:
                messages.success(request, _("“%(name)s” is saved as a draft.") % {"name": journey.name})
                # What would block activation later (a keyword taken meanwhile, a template not
                # approved yet) is said now, not when the marketer presses Activate.
                blocking = services.validate(journey)
                if blocking:
                    messages.warning(
                        request,
                        _("Before it can be activated: %(problems)s")
                        % {"problems": "; ".join(p.message for p in blocking)},
                    )
            return redirect(_list_url(request))
    return render(request, KEYWORD_PAGE, _keyword_context(request, form), status=400)


@project_view(section="journeys")
@require_POST
def example_new(request: HttpRequest, key: str) -> HttpResponse:
    """A draft journey from a built-in example; what to create first when its template is missing."""
    try:
        journey = keyword_campaigns.create_example(project=request.project, key=key, actor=_actor(request))
    except keyword_campaigns.ExampleUnavailable as exc:
        messages.error(request, exc.message)
        return redirect(_list_url(request))
    except DefinitionError as exc:
        messages.error(
            request,
            _("The example does not fit this project: %(problems)s")
            % {"problems": "; ".join(map(problem_text, exc.problems))},
        )
        return redirect(_list_url(request))
    messages.success(
        request, _("“%(name)s” is saved as a draft: check it, then activate it.") % {"name": journey.name}
    )
    return redirect(builder_url(request.project.slug, journey))


# --- statistics ---------------------------------------------------------------------------------------


@project_view(section="journeys")
@require_safe
def journey_stats_page(request: HttpRequest, journey_id: uuid.UUID) -> HttpResponse:
    """The journey's figures; the ``journey-stats`` partial polls while the journey can still move
    (active or paused runs may still be woken), and stops with 286 once it is a draft or stopped."""
    journey = _journey(request, journey_id)
    slug = request.project.slug
    live = journey.status in (JourneyStatus.ACTIVE, JourneyStatus.PAUSED)
    context = {
        "journey": journey,
        "stats": journey_stats(journey),
        "live": live,
        "url": reverse("journeys:stats", args=[slug, journey.public_id]),
        "builder_url": builder_url(slug, journey),
        "dryrun_url": reverse("journeys:dryrun", args=[slug, journey.public_id]),
    }
    if _target(request) == "journey-stats":
        response = render(request, f"{STATS_PAGE}#journey-stats", context, status=200 if live else 286)
        if request.GET.get("shown", journey.status) != journey.status:
            response["HX-Refresh"] = "true"
    else:
        response = render(request, STATS_PAGE, context)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


# --- dry run ------------------------------------------------------------------------------------------


def _run(request: HttpRequest, journey: Journey, run_id: Any) -> JourneyRun | None:
    try:
        public_id = uuid.UUID(str(run_id))
    except ValueError:
        return None
    return (
        JourneyRun.objects.for_project(request.project)
        .select_related("subscriber")
        .filter(journey=journey, public_id=public_id, dry_run=True)
        .first()
    )


def _field(item: Any, name: str, default: Any = None) -> Any:
    if isinstance(item, dict):
        return item.get(name, default)
    return getattr(item, name, default)


def _visits(run: JourneyRun) -> list[dict[str, Any]]:
    """The run's visits in order, as the template reads them (``timeline`` may give rows or dicts)."""
    visits = []
    for item in dryrun.timeline(run):
        detail = _field(item, "detail") or {}
        visits.append(
            {
                "step_id": _field(item, "step_id", ""),
                "step_type": _field(item, "step_type", ""),
                "entered_at": _field(item, "entered_at"),
                "finished_at": _field(item, "finished_at"),
                "outlet": _field(item, "outlet", ""),
                "detail": detail if isinstance(detail, dict) else {"detail": detail},
                "message": _message_of(detail if isinstance(detail, dict) else {}),
            }
        )
    return visits


MESSAGE_KEYS = ("would_send", "text", "body", "rendered")


def _message_of(detail: dict[str, Any]) -> str:
    """The text a step would have sent, from what the step wrote into its visit's detail."""
    for key in MESSAGE_KEYS:
        value = detail.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, dict):
            nested = _message_of(value)
            if nested:
                return nested
    return ""


def _path(definition: dict[str, Any], run: JourneyRun | None, visits: list[dict[str, Any]]) -> list[dict]:
    """The definition's steps in order, each marked visited / current / not reached, with its ways out."""
    by_step = {v["step_id"]: v for v in visits}
    current = run.step_id if run is not None and run.state != RunState.DONE else None
    path = []
    for step in definition.get("steps") or []:
        if not isinstance(step, dict) or not isinstance(step.get("id"), str):
            continue
        visit = by_step.get(step["id"])
        path.append(
            {
                "id": step["id"],
                "type": str(step.get("type") or ""),
                "visit": visit,
                "current": step["id"] == current,
                "outlets": _outlets(step),
                "buttons": list(step.get("buttons") or {}) if isinstance(step.get("buttons"), dict) else [],
            }
        )
    return path


def _outlets(step: dict[str, Any]) -> list[tuple[str, Any]]:
    """Outlets as ADR 0007 writes them, read from the JSON (the registry may not know the type).

    wait_event's ``timeout`` is its duration: its outlet is ``timeout_next``. A reachability chain
    (ADR 0008) leaves by the name of each listed channel, else ``none``.
    """
    found: list[tuple[str, Any]] = []
    for key in ("next", "outside_window", "yes", "no", "timeout_next", "success", "failure"):
        if key in step:
            found.append((key.removesuffix("_next"), step[key]))
    chain = step.get("channels")
    if isinstance(chain, list) and chain:
        found += [(channel, step.get(channel)) for channel in (*chain, "none") if isinstance(channel, str)]
    for text, target in (step.get("buttons") or {}).items() if isinstance(step.get("buttons"), dict) else []:
        found.append((_("button “%(text)s”") % {"text": text}, target))
    for i, event in enumerate(step.get("events") or []):
        if isinstance(event, dict):
            found.append((f"event{i + 1} ({event.get('event', '')})", event.get("next")))
    for variant in step.get("variants") or []:
        if isinstance(variant, dict):
            found.append((_("variant %(name)s") % {"name": variant.get("name", "")}, variant.get("next")))
    return found


def _run_definition(journey: Journey, run: JourneyRun | None) -> dict[str, Any]:
    """What the run walks: the draft it was started on (kept in its context), else the journey's version."""
    if run is not None and isinstance((run.context or {}).get("definition"), dict):
        return run.context["definition"]
    return shown_definition(journey)


def _handsets(request: HttpRequest) -> list[Subscriber]:
    """Subscribers that are simulator handsets of this project (the phone page's list), when the
    project's number is the built-in simulator."""
    if not settings.SIMULATOR_ENABLED:
        return []
    from whatsapp.simulator import services as simulator

    accounts = list(simulator.simulated_accounts().filter(project=request.project))
    if not accounts:
        return []
    phones = [
        f"+{row['phone']}" for row in simulator.visible_handsets(request.user, accounts, limit=SEARCH_SIZE)
    ]
    return list(Subscriber.objects.for_project(request.project).filter(phone__in=phones)[:SEARCH_SIZE])


def _search(request: HttpRequest) -> list[Subscriber]:
    query = request.GET.get("q", "").strip()
    found = Subscriber.objects.for_project(request.project).order_by("-updated_at")
    if query:
        found = found.filter(
            Q(name__icontains=query)
            | Q(phone__contains=query.replace(" ", ""))
            | Q(external_id__icontains=query)
            | Q(email__icontains=query)
        )
    return list(found.only("public_id", "name", "phone", "external_id")[:SEARCH_SIZE])


def _clock(run: JourneyRun | None) -> datetime | None:
    """The run's simulated clock (``context["clock"]``, ISO text), for showing in the project's zone."""
    raw = (run.context or {}).get("clock") if run is not None else None
    if isinstance(raw, datetime):
        return raw
    try:
        return datetime.fromisoformat(str(raw)) if raw else None
    except ValueError:
        return None


def entry_event(definition: dict[str, Any]) -> tuple[str, str]:
    """The event a dry run enters with by default: the journey's first event entry, its attributes
    from its conditions (a keyword journey: ``text=<first keyword>``); ("", "") for other entries."""
    entries = definition.get("entries")
    entries = entries if isinstance(entries, list) else [definition.get("entry")]
    for entry in entries:
        if (
            not isinstance(entry, dict)
            or entry.get("type") != "event"
            or not isinstance(entry.get("event"), str)
        ):
            continue
        lines = []
        for condition in entry.get("conditions") or []:
            if not isinstance(condition, dict) or condition.get("op") not in (
                "eq",
                "keyword",
                "contains",
                "starts_with",
            ):
                continue
            value = condition.get("value")
            value = value[0] if isinstance(value, list) and value else value
            if isinstance(value, str | int | float) and isinstance(condition.get("attribute"), str):
                lines.append(f"{condition['attribute']}={value}")
        return entry["event"], "\n".join(lines)
    return "", ""


def _dryrun_context(
    request: HttpRequest, journey: Journey, run: JourneyRun | None, fire_form: FireEventForm | None = None
) -> dict[str, Any]:
    slug = request.project.slug
    visits = _visits(run) if run is not None else []
    event_name, event_attributes = entry_event(
        journey.definition if isinstance(journey.definition, dict) else {}
    )
    return {
        "event_name": event_name,
        "event_attributes": event_attributes,
        "journey": journey,
        "run": run,
        "visits": visits,
        "path": _path(_run_definition(journey, run), run, visits),
        "clock": _clock(run),
        "fire_form": fire_form or FireEventForm(initial={"run": run.public_id if run else None}),
        "url": reverse("journeys:dryrun", args=[slug, journey.public_id]),
        "start_url": reverse("journeys:dryrun_start", args=[slug, journey.public_id]),
        "forward_url": reverse("journeys:dryrun_forward", args=[slug, journey.public_id]),
        "fire_url": reverse("journeys:dryrun_fire", args=[slug, journey.public_id]),
        "builder_url": builder_url(slug, journey),
        "stats_url": reverse("journeys:stats", args=[slug, journey.public_id]),
        "has_version": bool(journey.version),
    }


def _dryrun_answer(
    request: HttpRequest, journey: Journey, run: JourneyRun, *, notice: str = "", **extra: Any
) -> HttpResponse:
    """htmx: the run's partial; a plain POST: back to the page showing the run."""
    if _target(request) == "dryrun-run":
        context = _dryrun_context(request, journey, run, **extra)
        context["notice"] = notice
        return render(request, f"{DRYRUN_PAGE}#dryrun-run", context, status=200)
    if notice:
        messages.info(request, notice)
    if extra.get("fire_form") is not None:
        context = _dryrun_context(request, journey, run, **extra)
        context.update(subscribers=_search(request), handsets=_handsets(request), query="")
        return render(request, DRYRUN_PAGE, context, status=400)
    url = reverse("journeys:dryrun", args=[request.project.slug, journey.public_id])
    return redirect(f"{url}?run={run.public_id}")


@project_view(section="journeys")
@require_safe
def dryrun_page(request: HttpRequest, journey_id: uuid.UUID) -> HttpResponse:
    journey = _journey(request, journey_id)
    run = _run(request, journey, request.GET["run"]) if request.GET.get("run") else None
    if _target(request) == "dryrun-subscribers":
        context = {"subscribers": _search(request), "query": request.GET.get("q", "")}
        response = render(request, f"{DRYRUN_PAGE}#dryrun-subscribers", context)
    elif _target(request) == "dryrun-run":
        response = render(request, f"{DRYRUN_PAGE}#dryrun-run", _dryrun_context(request, journey, run))
    else:
        context = _dryrun_context(request, journey, run)
        context.update(
            subscribers=_search(request), handsets=_handsets(request), query=request.GET.get("q", "")
        )
        response = render(request, DRYRUN_PAGE, context)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


def _start_refused(request: HttpRequest, journey: Journey, problem: str) -> HttpResponse:
    if _target(request) == "dryrun-run":
        context = _dryrun_context(request, journey, None)
        context["start_error"] = problem
        return render(request, f"{DRYRUN_PAGE}#dryrun-run", context)
    messages.error(request, problem)
    return redirect(reverse("journeys:dryrun", args=[request.project.slug, journey.public_id]))


@project_view(section="journeys")
@require_POST
def dryrun_start(request: HttpRequest, journey_id: uuid.UUID) -> HttpResponse:
    """Start a dry run for one subscriber of this project, on the saved draft or the active version,
    entering with the given event (prefilled from the journey's event entry)."""
    journey = _journey(request, journey_id)
    form = StartDryRunForm(request.POST)
    subscriber = None
    if form.is_valid():
        subscriber = (
            Subscriber.objects.for_project(request.project)
            .filter(public_id=form.cleaned_data["subscriber"])
            .first()
        )
        if subscriber is None:
            form.add_error("subscriber", _("Pick a subscriber of this project to run the journey for."))
    if not form.is_valid() or subscriber is None:
        return _start_refused(request, journey, " ".join(m for ms in form.errors.values() for m in ms))
    use_draft = form.cleaned_data["source"] != "active" or not journey.version
    try:
        run = dryrun.start(
            journey=journey,
            subscriber=subscriber,
            definition=journey.definition if use_draft else None,
            event=form.event,
        )
    except DefinitionError as exc:
        return _start_refused(
            request,
            journey,
            _("The journey cannot run yet: %(problems)s")
            % {"problems": "; ".join(map(problem_text, exc.problems))},
        )
    return _dryrun_answer(request, journey, run)


def _posted_run(request: HttpRequest, journey: Journey) -> JourneyRun:
    run = _run(request, journey, request.POST.get("run", ""))
    if run is None:
        raise Http404("No such dry run of this journey.")
    return run


@project_view(section="journeys")
@require_POST
def dryrun_forward(request: HttpRequest, journey_id: uuid.UUID) -> HttpResponse:
    """Move the run's simulated clock to its next wake and advance it."""
    journey = _journey(request, journey_id)
    run = _posted_run(request, journey)
    moved = dryrun.fast_forward(run)
    run.refresh_from_db()
    notice = "" if moved else _("Nothing to fast-forward: the run waits for an event, or it is done.")
    return _dryrun_answer(request, journey, run, notice=notice)


@project_view(section="journeys")
@require_POST
def dryrun_fire(request: HttpRequest, journey_id: uuid.UUID) -> HttpResponse:
    """Deliver an event (name + attributes) to the dry run, as if the subscriber did it now."""
    journey = _journey(request, journey_id)
    run = _posted_run(request, journey)
    form = FireEventForm(request.POST)
    if not form.is_valid():
        return _dryrun_answer(request, journey, run, fire_form=form)
    name = form.cleaned_data["name"]
    moved = dryrun.fire(run, name, form.cleaned_data["attributes"])
    run.refresh_from_db()
    notice = ""
    if not moved:
        waits_for = ", ".join(run.waiting_events or []) or _("no event")
        notice = _("%(event)s moved nothing: the run waits for %(events)s (and the step's conditions).") % {
            "event": name,
            "events": waits_for,
        }
    return _dryrun_answer(request, journey, run, notice=notice)
