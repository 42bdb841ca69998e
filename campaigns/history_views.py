"""Message history: every outbound message of the project, from campaigns, conversations and the API.

One page, newest first, keyset-paged by (created_at, id) over the ``message_project_time`` index so
the page costs the same at a million messages as at ten. The search box takes a phone number (any
format), an email address, a wamid, our message id or a provider's id (an email's Message-ID, an
FCM message name); filters narrow by campaign, state, channel, marketing or transactional, and a
date range in the project's time zone. Filters live in the URL (shareable); the table is the
``message-history`` partial, swapped by htmx. Email and push rows show their subject or title
from ``content`` (read in SQL: an email's HTML is never loaded for the list).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from controlpanel.models import Project
from controlpanel.tenancy import project_view
from subscribers.errors import InvalidInput
from subscribers.models import Subscriber
from subscribers.phones import normalize_phone

from .conversations import parse_list_cursor
from .models import Campaign, Channel, Message, MessageStatus

PAGE = "campaigns/history.html"
PAGE_SIZE = 50
CAMPAIGN_CHOICES = 200
_PHONEISH = re.compile(r"^[\d\s()+./-]+$")


@dataclass
class HistoryFilters:
    q: str = ""
    campaign: str = ""  # a campaign's public id, or "none" for messages outside campaigns
    state: str = ""
    channel: str = ""
    category: str = ""  # "marketing" | "transactional"
    since: date | None = None
    until: date | None = None
    errors: dict[str, str] | None = None

    def query(self, **extra) -> str:
        from urllib.parse import urlencode

        params = {
            "q": self.q,
            "campaign": self.campaign,
            "state": self.state,
            "channel": self.channel,
            "category": self.category,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            **extra,
        }
        return urlencode({k: v for k, v in params.items() if v})


def _date(raw: str, field: str, errors: dict[str, str]) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[field] = _("Use a date like 2026-12-31.")
        return None


def parse_filters(params) -> HistoryFilters:
    """Read the filters from a query string; bad values are reported per field and ignored."""
    errors: dict[str, str] = {}
    filters = HistoryFilters(
        q=params.get("q", "").strip()[:200],
        campaign=params.get("campaign", "").strip(),
        state=params.get("state", ""),
        channel=params.get("channel", ""),
        category=params.get("category", ""),
        since=_date(params.get("since", ""), "since", errors),
        until=_date(params.get("until", ""), "until", errors),
    )
    if filters.state and filters.state not in MessageStatus.values:
        errors["state"], filters.state = _("Unknown state."), ""
    if filters.channel and filters.channel not in Channel.values:
        errors["channel"], filters.channel = _("Unknown channel."), ""
    if filters.category not in ("", "marketing", "transactional"):
        errors["category"], filters.category = _("Choose marketing or transactional."), ""
    if filters.campaign and filters.campaign != "none":
        try:
            uuid.UUID(filters.campaign)
        except ValueError:
            errors["campaign"], filters.campaign = _("Unknown campaign."), ""
    if filters.since and filters.until and filters.since > filters.until:
        errors["until"] = _("The end date is before the start date.")
    filters.errors = errors
    return filters


def _search(project: Project, rows: QuerySet[Message], q: str) -> QuerySet[Message]:
    """A wamid, our message id, a phone number (any format, or its digits), an email address, or
    a provider's message id."""
    if q.startswith("wamid."):
        return rows.filter(wamid=q)
    with contextlib.suppress(ValueError):
        return rows.filter(public_id=uuid.UUID(q))
    if "@" in q and " " not in q and not q.startswith("<"):
        ids = Subscriber.objects.for_project(project).filter(email__iexact=q).values("pk")
        return rows.filter(subscriber__in=ids) | rows.filter(provider_message_id=q)
    digits = re.sub(r"\D", "", q)
    if _PHONEISH.match(q) and len(digits) >= 6:
        phones = {f"+{digits}"}
        with contextlib.suppress(InvalidInput):
            phones.add(normalize_phone(q, project.default_country, field="q"))
        # The subscriber ids first (the phone index), then their messages (message_subscriber_time).
        ids = Subscriber.objects.for_project(project).filter(phone__in=phones).values("pk")
        return rows.filter(subscriber__in=ids)
    # Anything else is a provider's id (the ``message_provider_id`` index), never a substring scan
    # of a million bodies.
    return rows.filter(provider_message_id=q)


def headline() -> Coalesce:
    """An email's subject or a push's title, read from ``content`` in SQL (not its HTML)."""
    return Coalesce(KT("content__subject"), KT("content__title"))


def history_rows(project: Project, filters: HistoryFilters) -> QuerySet[Message]:
    rows = Message.objects.for_project(project)
    if filters.q:
        rows = _search(project, rows, filters.q)
    if filters.campaign == "none":
        rows = rows.filter(campaign__isnull=True)
    elif filters.campaign:
        rows = rows.filter(campaign__public_id=filters.campaign, campaign__project=project)
    if filters.state:
        rows = rows.filter(status=filters.state)
    if filters.channel:
        rows = rows.filter(channel=filters.channel)
    if filters.category:
        rows = rows.filter(marketing=filters.category == "marketing")
    tz = timezone.get_current_timezone()
    if filters.since:
        rows = rows.filter(created_at__gte=datetime.combine(filters.since, time.min, tz))
    if filters.until:
        rows = rows.filter(created_at__lt=datetime.combine(filters.until + timedelta(days=1), time.min, tz))
    return rows


def history_page(project: Project, filters: HistoryFilters, after: str | None = None):
    """One page of messages, newest first, and the cursor of the next page (None at the end)."""
    rows = history_rows(project, filters)
    cursor = parse_list_cursor(after)  # "time|id", as the conversation list pages
    if cursor is not None:
        at, pk = cursor
        rows = rows.filter(Q(created_at__lt=at) | Q(created_at=at, pk__lt=pk))
    found = list(
        rows.select_related("subscriber", "campaign")
        .annotate(
            headline=headline(),
            summary=Coalesce(KT("content__preheader"), KT("content__body")),
            from_journey=KT("content__origin__journey"),
        )
        .only(
            "public_id",
            "created_at",
            "channel",
            "status",
            "kind",
            "template_name",
            "template_language",
            "body",
            "marketing",
            "wamid",
            "provider_message_id",
            "opened_at",
            "clicked_at",
            "reason",
            "error_code",
            "error_title",
            "pricing_category",
            "subscriber__public_id",
            "subscriber__name",
            "subscriber__phone",
            "subscriber__email",
            "subscriber__external_id",
            "campaign__public_id",
            "campaign__name",
        )
        .order_by("-created_at", "-pk")[: PAGE_SIZE + 1]
    )
    page = found[:PAGE_SIZE]
    next_cursor = f"{page[-1].created_at.isoformat()}|{page[-1].pk}" if len(found) > PAGE_SIZE else None
    return page, next_cursor


@project_view(section="messages")
@require_safe
def message_history(request: HttpRequest) -> HttpResponse:
    project = request.project
    filters = parse_filters(request.GET)
    after = request.GET.get("after") or None
    rows, next_cursor = history_page(project, filters, after)
    url = reverse("campaigns:messages", args=[project.slug])
    context = {
        "filters": filters,
        "rows": rows,
        "after": after,
        "url": url,
        "next_url": f"{url}?{filters.query(after=next_cursor)}" if next_cursor else "",
        "first_url": f"{url}?{filters.query()}" if after else "",
        "states": MessageStatus.choices,
        "channels": Channel.choices,
    }
    htmx = getattr(request, "htmx", None)
    if htmx and htmx.target == "message-history" and not htmx.history_restore_request:
        response = render(request, f"{PAGE}#message-history", context)
    else:
        # The campaign choices only on a full page: the table partial does not need them.
        context["campaigns"] = list(
            Campaign.objects.for_project(project)
            .order_by("-pk")
            .values("public_id", "name")[:CAMPAIGN_CHOICES]
        )
        response = render(request, PAGE, context)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


urlpatterns = [
    path("messages/", message_history, name="messages"),
]
