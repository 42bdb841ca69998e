"""Writing a campaign in the panel: the composer (new and edit, with a live phone preview), the
preflight page, a test send and the launch.

The composer is one form. Every change posts it to ``composer_preview``, which builds the unsaved
campaign through drafts.build_campaign (the validation the API uses too) and answers the
``composer-live`` partial: three real recipients of the audience as their phones would show the
message, the audience count, the per-field errors and what still stands in the way of a launch.
When the template or its languages changed, the template's inputs (languages, one binding per
placeholder, the header media URL) come along as an out-of-band swap of ``composer-template``.
Without JavaScript the "Preview" button posts the whole page and gets it back with the preview.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, path, reverse
from django.utils.cache import patch_vary_headers
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST

from controlpanel.models import Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from controlpanel.wording import mid_sentence
from subscribers.errors import InvalidInput
from subscribers.models import Subscriber
from subscribers.segments import compiler

from . import drafts, lifecycle
from .forms import CampaignForm
from .models import AudienceKind, Campaign, CampaignRecipient, CampaignStatus
from .preflight import EXCLUSIONS, preflight
from .views import audience_label

PAGE = "campaigns/composer.html"
PREFLIGHT_PAGE = "campaigns/preflight.html"
PREVIEW_COUNT = 3


def _campaign(request: HttpRequest, campaign_id: uuid.UUID) -> Campaign:
    campaign = (
        Campaign.objects.for_project(request.project)
        .select_related("project", "segment", "account")
        .filter(public_id=campaign_id)
        .first()
    )
    if campaign is None:
        raise Http404("No such campaign in this project.")
    return campaign


def _actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user)


def audience_count(campaign: Campaign) -> int | None:
    """How many subscribers the audience holds now, before consent and the other exclusions."""
    project = campaign.project
    kind = campaign.audience_kind
    if kind == AudienceKind.SEGMENT and campaign.segment is not None:
        return compiler.count(project, campaign.segment.rule)
    if kind == AudienceKind.RULE and campaign.rule:
        return compiler.count(project, campaign.rule)
    if kind == AudienceKind.EVERYONE:
        return Subscriber.objects.for_project(project).whatsapp_opted_in().count()
    if kind == AudienceKind.LIST:
        return len(drafts._given_recipients(campaign))
    return None


def _live(form: CampaignForm) -> dict[str, Any]:
    """The unsaved campaign the form describes, previewed; or the form's errors."""
    live: dict[str, Any] = {"previews": [], "problems": [], "audience_count": None, "built": False}
    if not form.is_valid():
        return live
    try:
        campaign = drafts.build_campaign(project=form.project, data=form.to_input(preview=True))
        live["audience_count"] = audience_count(campaign)
        if form.kept_saved_list and campaign.audience_kind == AudienceKind.LIST:
            live["audience_count"] = CampaignRecipient.objects.filter(campaign=form.campaign).count()
        live["previews"] = drafts.preview(campaign, count=PREVIEW_COUNT)
        live["problems"] = drafts.launch_problems(campaign)
    except InvalidInput as err:
        form.add_service_error(err)
        return live
    live["built"] = True
    return live


def _live_saved(campaign: Campaign) -> dict[str, Any]:
    """The live region for a draft as saved (the composer's first render, before any change)."""
    try:
        return {
            "audience_count": audience_count(campaign),
            "previews": drafts.preview(campaign, count=PREVIEW_COUNT),
            "problems": drafts.launch_problems(campaign),
            "built": True,
        }
    except InvalidInput as err:  # e.g. a tag the saved rule names was deleted since
        return {"problems": [err.message]}


def _context(request: HttpRequest, form: CampaignForm, campaign: Campaign | None) -> dict[str, Any]:
    slug = request.project.slug
    return {
        "form": form,
        "campaign": campaign,
        "preview_url": reverse("campaigns:composer_preview", args=[slug]),
        "action_url": (
            reverse("campaigns:edit", args=[slug, campaign.public_id])
            if campaign
            else reverse("campaigns:new", args=[slug])
        ),
        "binding_hint": '{{ tags.first_name | default: "Kunde" }}',
    }


@project_view(section="campaigns", read=Role.MARKETER)
@require_http_methods(["GET", "POST"])
def campaign_new(request: HttpRequest) -> HttpResponse:
    return _composer(request, None)


@project_view(section="campaigns", read=Role.MARKETER)
@require_http_methods(["GET", "POST"])
def campaign_edit(request: HttpRequest, campaign_id: uuid.UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_id)
    if campaign.status != CampaignStatus.DRAFT:
        messages.info(
            request,
            _("“%(name)s” is %(status)s: only drafts change.")
            % {"name": campaign.name, "status": mid_sentence(campaign.get_status_display())},
        )
        return redirect("campaigns:detail", request.project.slug, campaign.public_id)
    return _composer(request, campaign)


def _composer(request: HttpRequest, campaign: Campaign | None) -> HttpResponse:
    project = request.project
    if request.method != "POST":
        form = CampaignForm(project=project, campaign=campaign)
        context = _context(request, form, campaign)
        if campaign is not None:
            context.update(_live_saved(campaign))

        return render(request, PAGE, context)
    form = CampaignForm(request.POST, request.FILES, project=project, campaign=campaign)
    if request.POST.get("action") == "preview":  # the page without JavaScript
        context = _context(request, form, campaign)
        context.update(_live(form))
        return render(request, PAGE, context)
    saved = None
    if form.is_valid():
        try:
            if campaign is None:
                saved = drafts.create_campaign(project=project, actor=_actor(request), data=form.to_input())
            else:
                saved = drafts.update_campaign(campaign=campaign, actor=_actor(request), data=form.to_input())
        except InvalidInput as err:
            form.add_service_error(err)
    if saved is None:
        context = _context(request, form, campaign)
        context["save_failed"] = True
        return render(request, PAGE, context, status=400)
    if request.POST.get("action") == "preflight":
        return redirect("campaigns:preflight", project.slug, saved.public_id)
    messages.success(request, _("Draft “%(name)s” saved.") % {"name": saved.name})
    return redirect("campaigns:edit", project.slug, saved.public_id)


@project_view(section="campaigns", read=Role.MARKETER)
@require_POST
def composer_preview(request: HttpRequest) -> HttpResponse:
    """The live region of the composer for what the form says now; nothing is saved.

    A draft's saved phone list is kept when no new list is typed, so the form names the draft."""
    campaign = None
    if raw := request.POST.get("campaign"):
        try:
            campaign = _campaign(request, uuid.UUID(raw))
        except ValueError:
            raise Http404("No such campaign in this project.") from None
    form = CampaignForm(request.POST, request.FILES, project=request.project, campaign=campaign)
    context = _context(request, form, campaign)
    context.update(_live(form))
    context["redraw_template"] = request.POST.get("fields_for", "") != form.fields_key
    response = render(request, f"{PAGE}#composer-live", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- preflight, test send, launch ----------------------------------------------------------------


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return _("unknown")
    if seconds < 60:
        seconds = max(seconds, 1)
        return ngettext("about %(n)s second", "about %(n)s seconds", seconds) % {"n": seconds}
    minutes = round(seconds / 60)
    if minutes < 90:
        return ngettext("about %(n)s minute", "about %(n)s minutes", minutes) % {"n": minutes}
    return _("about %(n)s hours") % {"n": number_format(seconds / 3600, decimal_pos=1)}


def _preflight_context(request: HttpRequest, campaign: Campaign, **extra: Any) -> dict[str, Any]:
    problems = drafts.launch_problems(campaign)
    context: dict[str, Any] = {
        "campaign": campaign,
        "audience": audience_label(campaign),
        "problems": problems,
        "check": None,
        "previews": [],
        "test_phone": "",
        "test_error": "",
        "launch_errors": [],
        "last_test": None,
        "simulator": settings.SIMULATOR_ENABLED,
    }
    try:
        check = preflight(campaign)
        context["previews"] = drafts.preview(campaign, count=PREVIEW_COUNT)
    except InvalidInput as err:
        context["problems"] = [*problems, err.message]
    else:
        context["check"] = check
        context["excluded"] = [
            (code, label, check.excluded.get(code, 0)) for code, label in EXCLUSIONS.items()
        ]
        context["duration"] = _duration(check.estimated_seconds)
    context.update(extra)
    return context


@project_view(section="campaigns")
@require_http_methods(["GET"])
def campaign_preflight(request: HttpRequest, campaign_id: uuid.UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_id)
    if campaign.status != CampaignStatus.DRAFT:
        return redirect("campaigns:detail", request.project.slug, campaign.public_id)
    last_test = request.session.pop("campaign_test", None)
    return render(request, PREFLIGHT_PAGE, _preflight_context(request, campaign, last_test=last_test))


def _handset_url(campaign: Campaign, phone: str) -> str:
    if not settings.SIMULATOR_ENABLED or campaign.account is None:
        return ""
    try:
        return reverse("simulator:chat", args=[phone.lstrip("+"), campaign.account.phone_number_id])
    except NoReverseMatch:
        return ""


@project_view(section="campaigns")
@require_POST
def campaign_test_send(request: HttpRequest, campaign_id: uuid.UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_id)
    phone = request.POST.get("phone", "").strip()
    try:
        message = lifecycle.test_send(campaign=campaign, phone=phone, actor=_actor(request))
    except InvalidInput as err:
        context = _preflight_context(request, campaign, test_phone=phone, test_error=err.message)
        return render(request, PREFLIGHT_PAGE, context, status=400)
    e164 = message.subscriber.phone
    messages.success(request, _("Test message sent to %(phone)s.") % {"phone": e164})
    request.session["campaign_test"] = {"phone": e164, "handset": _handset_url(campaign, e164)}
    return redirect("campaigns:preflight", request.project.slug, campaign.public_id)


@project_view(section="campaigns")
@require_POST
def campaign_launch(request: HttpRequest, campaign_id: uuid.UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_id)
    try:
        launched = lifecycle.launch(campaign=campaign, actor=_actor(request))
    except InvalidInput as err:
        context = _preflight_context(request, campaign, launch_errors=[err.message])
        return render(request, PREFLIGHT_PAGE, context, status=400)
    messages.success(
        request,
        _("“%(name)s” is launched. Sending starts in a moment.") % {"name": launched.name}
        if launched.schedule_kind == "now"
        else _("“%(name)s” is launched. It will send at its time.") % {"name": launched.name},
    )
    return redirect("campaigns:detail", request.project.slug, launched.public_id)


urlpatterns = [
    path("campaigns/new/", campaign_new, name="new"),
    path("campaigns/compose/preview/", composer_preview, name="composer_preview"),
    path("campaigns/<uuid:campaign_id>/edit/", campaign_edit, name="edit"),
    path("campaigns/<uuid:campaign_id>/preflight/", campaign_preflight, name="preflight"),
    path("campaigns/<uuid:campaign_id>/test-send/", campaign_test_send, name="test_send"),
    path("campaigns/<uuid:campaign_id>/launch/", campaign_launch, name="launch"),
]
