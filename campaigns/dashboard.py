from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

from django.core.cache import cache
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone

from controlpanel import counting
from controlpanel.dashboard import Metric, Series
from controlpanel.models import Project

from .models import Message

CHART_DAYS = 14


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
    # (a cached counter), while every view counts only today's rows.
    key = f"dashboard:messages-per-day:{project.public_id}:{project.time_zone}:{today.isoformat()}"
    past = cache.get(key)
    if past is None:
        past = _per_day(project, tz, first_day, today)
        cache.set(key, past, timeout=24 * 3600)
    per_day = {**past, **_per_day(project, tz, today)}
    points = [
        (first_day + timedelta(days=i), per_day.get(first_day + timedelta(days=i), 0))
        for i in range(CHART_DAYS)
    ]
    last_7 = sum(n for day, n in points if day > today - timedelta(days=7))
    yield Metric(
        "Messages, last 7 days",
        counting.Count(last_7),
        hint=f"in {project.time_zone}",
        url=reverse("campaigns:list", args=[project.slug]),
        order=30,
    )
    yield Series("Messages per day", points)
