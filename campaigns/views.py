"""Watching campaigns: the list, the live campaign page, its recipients, the CSV export, pause/resume/cancel.

The campaign page is one template with htmx partials named like the DOM ids they replace:
``campaign-live`` (progress, counters, funnel, chart data, failures, skips; polled every 2 s while
the campaign can still change, stopped with 286 once it cannot) and ``campaign-recipients`` (the
recipient list, filtered by state and keyset-paged by id). Pause, resume and cancel are plain
forms that post and redirect back, so the page works without JavaScript.
"""

from __future__ import annotations

import itertools
import uuid

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from django.views.decorators.http import require_POST, require_safe

from controlpanel.models import Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from subscribers.errors import InvalidInput
from subscribers.exports import csv_lines

from . import lifecycle
from .models import AudienceRow, Campaign, CampaignStatus, Message, MessageStatus
from .stats import campaign_stats, sends_per_minute, status_counts

PAGE = "campaigns/detail.html"
LIST_SIZE = 25
RECIPIENTS_SIZE = 50
# While a campaign can still change, its page polls; a finished one is final except for late reads.
LIVE = {CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED}
CHART_MINUTES = 60


def _campaign(request: HttpRequest, campaign_id: uuid.UUID) -> Campaign:
    campaign = (
        Campaign.objects.for_project(request.project)
        .select_related("segment", "account")
        .filter(public_id=campaign_id)
        .first()
    )
    if campaign is None:
        raise Http404("No such campaign in this project.")
    return campaign


def _target(request: HttpRequest) -> str:
    htmx = getattr(request, "htmx", None)
    if not htmx or htmx.history_restore_request:
        return ""
    return htmx.target or ""


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def audience_label(campaign: Campaign) -> str:
    if campaign.audience_kind == "segment":
        if campaign.segment:
            return _("Segment “%(name)s”") % {"name": campaign.segment.name}
        return _("A deleted segment")
    return campaign.get_audience_kind_display()


@project_view(section="campaigns")
@require_safe
def campaign_list(request: HttpRequest) -> HttpResponse:
    """Newest first, keyset-paged by (created_at, id); one grouped count query for the page."""
    campaigns = Campaign.objects.for_project(request.project).select_related("segment")
    status = request.GET.get("status", "")
    if status in CampaignStatus.values:
        campaigns = campaigns.filter(status=status)
    before = _int(request.GET.get("before"))
    if before is not None:
        campaigns = campaigns.filter(pk__lt=before)
    page = list(campaigns.order_by("-pk")[: LIST_SIZE + 1])
    rows = page[:LIST_SIZE]
    counts = status_counts(rows)
    has_any = bool(rows) or Campaign.objects.for_project(request.project).exists()
    return render(
        request,
        "campaigns/list.html",
        {
            "rows": [(c, counts[c.pk], audience_label(c)) for c in rows],
            "next_before": rows[-1].pk if len(page) > LIST_SIZE else None,
            "status": status,
            "statuses": CampaignStatus.choices,
            "has_any": has_any,
        },
    )


def _recipients(request: HttpRequest, campaign: Campaign) -> dict:
    state = request.GET.get("state", "")
    rows = (
        Message.objects.for_project(request.project)
        .filter(campaign=campaign)
        .select_related("subscriber")
        .only(
            "id",
            "status",
            "reason",
            "error_code",
            "sent_at",
            "delivered_at",
            "read_at",
            "failed_at",
            "replied_at",
            "clicked_at",
            "template_language",
            "subscriber__public_id",
            "subscriber__name",
            "subscriber__phone",
            "subscriber__external_id",
        )
    )
    if state in MessageStatus.values:
        rows = rows.filter(status=state)
    elif state == "replied":
        rows = rows.filter(replied_at__isnull=False)
    elif state == "clicked":
        rows = rows.filter(clicked_at__isnull=False)
    else:
        state = ""
    after = _int(request.GET.get("after"))
    if after is not None:
        rows = rows.filter(pk__gt=after)
    found = list(rows.order_by("pk")[: RECIPIENTS_SIZE + 1])
    return {
        "recipients": found[:RECIPIENTS_SIZE],
        "recipients_next": found[RECIPIENTS_SIZE - 1].pk if len(found) > RECIPIENTS_SIZE else None,
        # Recipients whose outbox row is still to be written (materialize.py): not listed yet.
        "recipients_waiting": AudienceRow.objects.filter(campaign=campaign).exists(),
        "state": state,
        "after": after,
        "states": [
            ("", pgettext("recipient states", "All")),
            *[(s, label) for s, label in MessageStatus.choices],
            ("replied", _("Replied")),
            ("clicked", _("Clicked")),
        ],
    }


def _live(campaign: Campaign) -> dict:
    stats = campaign_stats(campaign)
    per_minute = sends_per_minute(campaign, CHART_MINUTES)
    return {
        "stats": stats,
        "live": campaign.status in LIVE,
        "chart": {
            "labels": [timezone.localtime(at).strftime("%H:%M") for at, _ in per_minute],
            "data": [n for _, n in per_minute],
        },
        "chart_has_data": any(n for _, n in per_minute),
    }


def _context(request: HttpRequest, campaign: Campaign) -> dict:
    slug = request.project.slug
    return {
        "campaign": campaign,
        "audience": audience_label(campaign),
        "url": reverse("campaigns:detail", args=[slug, campaign.public_id]),
        "can_pause": campaign.status in (CampaignStatus.RUNNING, CampaignStatus.SCHEDULED),
        "can_resume": campaign.status == CampaignStatus.PAUSED,
        "can_cancel": campaign.status in LIVE,
    }


@project_view(section="campaigns")
@require_safe
def campaign_detail(request: HttpRequest, campaign_id: uuid.UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_id)
    context = _context(request, campaign)
    target = _target(request)
    if target == "campaign-live":
        context.update(_live(campaign))
        # Status 286 stops htmx polling; the last render still swaps in.
        response = render(request, f"{PAGE}#campaign-live", context, status=200 if context["live"] else 286)
        if request.GET.get("shown", campaign.status) != campaign.status:
            # Launched, paused by an error, completed: the heading's badge and buttons outside this
            # part are stale, so the whole page reloads (htmx honours HX-Refresh on any status).
            response["HX-Refresh"] = "true"
    elif target == "campaign-recipients":
        context.update(_recipients(request, campaign))
        response = render(request, f"{PAGE}#campaign-recipients", context)
    else:
        context.update(_live(campaign))
        context.update(_recipients(request, campaign))
        response = render(request, PAGE, context)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


CSV_COLUMNS = [
    "phone",
    "external_id",
    "name",
    "status",
    "reason",
    "error_code",
    "language",
    "wamid",
    "pricing_category",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "replied_at",
    "clicked_at",
]


@project_view(section="campaigns", read=Role.MARKETER)
@require_safe
def campaign_export(request: HttpRequest, campaign_id: uuid.UUID) -> StreamingHttpResponse:
    """Every recipient of the campaign as CSV, streamed in id order: memory stays flat at 1M rows."""
    campaign = _campaign(request, campaign_id)
    rows = (
        Message.objects.for_project(request.project)
        .filter(campaign=campaign)
        .order_by("pk")
        .values_list(
            "subscriber__phone",
            "subscriber__external_id",
            "subscriber__name",
            "status",
            "reason",
            "error_code",
            "template_language",
            "wamid",
            "pricing_category",
            "sent_at",
            "delivered_at",
            "read_at",
            "failed_at",
            "replied_at",
            "clicked_at",
        )
    )
    # The subscriber export's encoder: formulas neutralised, phone numbers kept as data.
    lines = csv_lines(itertools.chain([CSV_COLUMNS], rows.iterator(chunk_size=2000)))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.public_id}-recipients.csv"'
    return response


def _lifecycle(request: HttpRequest, campaign_id: uuid.UUID, action: str, done: str) -> HttpResponse:
    campaign = _campaign(request, campaign_id)
    try:
        getattr(lifecycle, action)(campaign=campaign, actor=Actor(user=request.user))
    except InvalidInput as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done % {"name": campaign.name})
    return redirect("campaigns:detail", request.project.slug, campaign.public_id)


@project_view(section="campaigns")
@require_POST
def campaign_pause(request: HttpRequest, campaign_id: uuid.UUID) -> HttpResponse:
    return _lifecycle(
        request, campaign_id, "pause", _("“%(name)s” is paused: nothing more is sent until you resume.")
    )


@project_view(section="campaigns")
@require_POST
def campaign_resume(request: HttpRequest, campaign_id: uuid.UUID) -> HttpResponse:
    return _lifecycle(request, campaign_id, "resume", _("“%(name)s” resumes sending."))


@project_view(section="campaigns")
@require_POST
def campaign_cancel(request: HttpRequest, campaign_id: uuid.UUID) -> HttpResponse:
    return _lifecycle(
        request, campaign_id, "cancel", _("“%(name)s” is cancelled: queued messages will not be sent.")
    )


urlpatterns = [
    path("campaigns/", campaign_list, name="list"),
    path("campaigns/<uuid:campaign_id>/", campaign_detail, name="detail"),
    path("campaigns/<uuid:campaign_id>/recipients.csv", campaign_export, name="export"),
    path("campaigns/<uuid:campaign_id>/pause/", campaign_pause, name="pause"),
    path("campaigns/<uuid:campaign_id>/resume/", campaign_resume, name="resume"),
    path("campaigns/<uuid:campaign_id>/cancel/", campaign_cancel, name="cancel"),
]
