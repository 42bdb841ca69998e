from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

from django.core.cache import cache
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from controlpanel import counting
from controlpanel.dashboard import Alert, Metric, Series
from controlpanel.models import Project

from .models import Campaign, CampaignStatus, Message
from .stats import CampaignStats, fold, grouped_counts

CHART_DAYS = 14
# The month's earlier days change only by late delivered/read statuses: recounted every few minutes.
PAST_DAYS_TTL = 600
TODAY_TTL = 60


def _per_day(
    project: Project, tz: zoneinfo.ZoneInfo, since: date, until: date | None = None
) -> dict[date, int]:
    """Messages per local day from ``since`` (to before ``until``), newest rows only.

    COUNT(*) over (project, created_at) only: an index-only scan of message_project_time.
    COUNT("id") would fetch every row of the range from the heap (wide rows: components,
    history): twice the time at a million messages.
    """
    rows = Message.objects.for_project(project).filter(created_at__gte=datetime.combine(since, time.min, tz))
    if until is not None:
        rows = rows.filter(created_at__lt=datetime.combine(until, time.min, tz))
    grouped = rows.annotate(day=TruncDate("created_at", tzinfo=tz)).values("day").annotate(n=Count("*"))
    return {row["day"]: row["n"] for row in grouped.order_by()}


def messaging_provider(project: Project) -> Iterable[Metric | Series]:
    tz = zoneinfo.ZoneInfo(project.time_zone)
    today = timezone.now().astimezone(tz).date()
    first_day = today - timedelta(days=CHART_DAYS - 1)
    # A message is created at "now", so the days before today are final: counted once a day
    # (a cached counter); today's rows at most once a minute, like today's outcomes below (a
    # project sending a million a day would count a million rows on every view).
    zone_day = f"{project.public_id}:{project.time_zone}:{today.isoformat()}"
    past = cache.get(f"dashboard:messages-per-day:{zone_day}")
    if past is None:
        past = _per_day(project, tz, first_day, today)
        cache.set(f"dashboard:messages-per-day:{zone_day}", past, timeout=24 * 3600)
    todays = cache.get(f"dashboard:messages-today:{zone_day}")
    if todays is None:
        todays = _per_day(project, tz, today)
        cache.set(f"dashboard:messages-today:{zone_day}", todays, timeout=TODAY_TTL)
    per_day = {**past, **todays}
    points = [
        (first_day + timedelta(days=i), per_day.get(first_day + timedelta(days=i), 0))
        for i in range(CHART_DAYS)
    ]
    last_7 = sum(n for day, n in points if day > today - timedelta(days=7))
    yield Metric(
        _("Messages, last 7 days"),
        counting.Count(last_7),
        hint=_("in %(zone)s") % {"zone": project.time_zone},
        url=reverse("campaigns:list", args=[project.slug]),
        order=30,
    )
    yield Series(_("Messages per day"), points)


def _outcomes(project: Project, since: datetime, until: datetime | None = None) -> CampaignStats:
    """Messages created in [since, until) by state, and the billable ones per pricing category."""
    rows = Message.objects.for_project(project).filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    outcome = CampaignStats()
    fold(grouped_counts(rows), lambda row: outcome)
    return outcome


def _merged(a: CampaignStats, b: CampaignStats) -> CampaignStats:
    merged = CampaignStats()
    for source in (a, b):
        for key, n in source.by_status.items():
            merged.by_status[key] = merged.by_status.get(key, 0) + n
        for key, n in source.billable.items():
            merged.billable[key] = merged.billable.get(key, 0) + n
    return merged


def _rates(outcome: CampaignStats) -> str:
    if not outcome.sent:
        return _("nothing sent")
    delivered = f"{number_format(outcome.delivery_rate)} %" if outcome.delivery_rate is not None else "—"
    read = f"{number_format(outcome.read_rate)} %" if outcome.read_rate is not None else "—"
    return _("delivered %(delivered)s · read %(read)s") % {"delivered": delivered, "read": read}


def sending_provider(project: Project) -> Iterable[Metric | Alert]:
    """Today's and this month's sends with delivery and read rates, billable messages, paused campaigns."""
    tz = zoneinfo.ZoneInfo(project.time_zone)
    today = timezone.now().astimezone(tz).date()
    midnight = datetime.combine(today, time.min, tz)
    month_start = datetime.combine(today.replace(day=1), time.min, tz)
    key = f"dashboard:month-outcomes:{project.public_id}:{project.time_zone}:{today.isoformat()}"
    earlier = cache.get(key)
    if earlier is None:
        earlier = _outcomes(project, month_start, midnight) if month_start < midnight else CampaignStats()
        cache.set(key, earlier, timeout=PAST_DAYS_TTL)
    # Today's rows are recounted at most once a minute: a big campaign day is a million rows to
    # group, and the overview does not need second-fresh rates (the campaign page has those).
    today_key = f"dashboard:today-outcomes:{project.public_id}:{project.time_zone}:{today.isoformat()}"
    todays = cache.get(today_key)
    if todays is None:
        todays = _outcomes(project, midnight)
        cache.set(today_key, todays, timeout=TODAY_TTL)
    month = _merged(earlier, todays)
    messages_url = reverse("campaigns:messages", args=[project.slug])
    yield Metric(
        _("Sent today"),
        todays.sent,
        hint=_("%(rates)s (updated every minute)") % {"rates": _rates(todays)},
        url=messages_url,
        order=31,
    )
    yield Metric(
        _("Sent in %(month)s") % {"month": dateformat.format(today, "F")},
        month.sent,
        hint=_rates(month),
        url=f"{messages_url}?since={month_start.date().isoformat()}",
        order=32,
    )
    billable = " · ".join(f"{category} {n}" for category, n in sorted(month.billable.items()))
    yield Metric(
        _("Billable in %(month)s") % {"month": dateformat.format(today, "F")},
        sum(month.billable.values()),
        hint=billable or _("no billable messages"),
        order=33,
    )
    paused = (
        Campaign.objects.for_project(project)
        .filter(status=CampaignStatus.PAUSED)
        .exclude(status_reason="")
        .order_by("-paused_at", "-pk")
        .only("public_id", "name", "status_reason")[:5]
    )
    for campaign in paused:
        yield Alert(
            title=_("Campaign “%(name)s” paused itself") % {"name": campaign.name},
            text=campaign.status_reason,
            url=reverse("campaigns:detail", args=[project.slug, campaign.public_id]),
        )
