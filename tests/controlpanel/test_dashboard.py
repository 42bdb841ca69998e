"""The dashboard and the tags page count whole tables: exactly while small, estimated beyond."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import dashboard as campaigns_dashboard
from campaigns.dashboard import messaging_provider
from campaigns.models import Message
from controlpanel import counting
from controlpanel.dashboard import Series
from subscribers.models import TagDefinition, TagValue
from tests.factories import ProjectFactory, SubscriberFactory

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="estimates need PostgreSQL")


def metrics(html: str) -> list[str]:
    return re.findall(r'data-testid="metric-\d+">([^<]*)<', html)


def usage(html: str, tag: str) -> str:
    row = re.search(rf"<td[^>]*>\s*(?:<[^>]+>)*{re.escape(tag)}\b.*?</tr>", html, re.S).group(0)
    return re.search(r'data-testid="usage">([^<]*)<', row).group(1)


@pytest.fixture
def audience(project):
    city = TagDefinition.objects.create(project=project, name="city", type="string")
    interests = TagDefinition.objects.create(project=project, name="interests", type="list")
    for n in range(8):
        s = SubscriberFactory(project=project, whatsapp_consent="opted_in" if n < 6 else "unknown")
        TagValue.objects.create(project=project, subscriber=s, tag=city, value_text="Berlin")
        for item in ("food", "music"):
            TagValue.objects.create(project=project, subscriber=s, tag=interests, value_text=item)
    return project


def test_small_project_shows_exact_counts(owner_client, audience):
    html = owner_client.get(f"/p/{audience.slug}/").content.decode()
    assert metrics(html)[:2] == ["8", "6"]
    tags = owner_client.get(f"/p/{audience.slug}/subscribers/tags/").content.decode()
    assert "about" not in tags
    assert usage(tags, "city") == "8" and usage(tags, "WhatsApp opt-in") == "6"
    assert usage(tags, "interests") == "8"


def whole_counts(queries) -> list[str]:
    """Queries that count the audience tables without a LIMIT: what a large project must not run."""
    tables = ('"subscribers_subscriber"', '"subscribers_tagvalue"')
    return [
        q["sql"]
        for q in queries
        if "COUNT(" in q["sql"] and "LIMIT" not in q["sql"] and any(t in q["sql"] for t in tables)
    ]


@postgres_only
def test_large_project_shows_estimates_marked_about(owner_client, audience, monkeypatch):
    monkeypatch.setattr(counting, "EXACT_UP_TO", 5)
    with connection.cursor() as cur:
        cur.execute("ANALYZE subscribers_subscriber")
        cur.execute("ANALYZE subscribers_tagvalue")
    with CaptureQueriesContext(connection) as queries:
        html = owner_client.get(f"/p/{audience.slug}/").content.decode()
    assert all(m.startswith("about ") for m in metrics(html)[:2]), metrics(html)
    assert whole_counts(queries) == []
    with CaptureQueriesContext(connection) as queries:
        tags = owner_client.get(f"/p/{audience.slug}/subscribers/tags/").content.decode()
    assert whole_counts(queries) == []
    assert usage(tags, "city").startswith("about ") and usage(tags, "Phone").startswith("about ")
    assert usage(tags, "interests") == "about 8"  # people, not their 16 list items


@postgres_only
def test_tag_estimates_stay_right_with_another_project_in_the_table(owner_client, audience, monkeypatch):
    monkeypatch.setattr(counting, "EXACT_UP_TO", 5)
    other = ProjectFactory()
    city = TagDefinition.objects.create(project=other, name="city", type="string")
    for _ in range(24):
        s = SubscriberFactory(project=other)
        TagValue.objects.create(project=other, subscriber=s, tag=city, value_text="Wien")
    with connection.cursor() as cur:
        cur.execute("ANALYZE subscribers_tagvalue")
    tags = owner_client.get(f"/p/{audience.slug}/subscribers/tags/").content.decode()
    # "project = p AND tag = t" estimated as independent conditions would say about 3.
    assert usage(tags, "city") == "about 8"


def test_sqlite_has_no_estimates_and_counts_exactly(owner_client, audience, monkeypatch):
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL estimates: test_large_project_shows_estimates_marked_about")
    monkeypatch.setattr(counting, "EXACT_UP_TO", 5)
    assert metrics(owner_client.get(f"/p/{audience.slug}/").content.decode())[:2] == ["8", "6"]


@pytest.mark.parametrize(
    ("value", "text"), [(999_870, "about 1,000,000"), (596_210, "about 600,000"), (42, "about 42")]
)
def test_estimates_are_rounded_to_two_significant_digits(value, text):
    assert str(counting.Count(value, estimated=True)) == text
    assert str(counting.Count(value)) == f"{value:,}"


def chart(project) -> Series:
    return next(item for item in messaging_provider(project) if isinstance(item, Series))


def test_chart_counts_messages_per_local_day_from_the_index(project):
    project.time_zone = "Europe/Berlin"
    project.save()
    tz = ZoneInfo("Europe/Berlin")
    subscriber = SubscriberFactory(project=project)
    today = timezone.now().astimezone(tz).date()
    first_day = today - timedelta(days=13)
    midnight = datetime(first_day.year, first_day.month, first_day.day, tzinfo=tz)
    for at in [midnight - timedelta(seconds=1), midnight, midnight + timedelta(hours=23, minutes=59)]:
        message = Message.objects.create(project=project, subscriber=subscriber)
        Message.objects.filter(pk=message.pk).update(created_at=at)
    with CaptureQueriesContext(connection) as queries:
        points = chart(project).points
    assert points[0] == (first_day, 2)  # the message a second before midnight is not in the chart
    sql = next(q["sql"] for q in queries if "campaigns_message" in q["sql"])
    # Only columns of message_project_time (project_id, created_at): an index-only scan.
    assert "COUNT(*)" in sql and '"campaigns_message"."id"' not in sql
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            # A three-row table gives the planner no reason to prefer any index: leave it only the
            # scans that read nothing but an index, and see that this index can answer alone.
            for scan in ("seqscan", "indexscan", "bitmapscan"):
                cur.execute(f"SET LOCAL enable_{scan} = off")
            cur.execute("EXPLAIN " + sql.replace("%", "%%"))
            plan = "\n".join(row[0] for row in cur.fetchall())
        assert "Index Only Scan using message_project_time" in plan, plan


def test_later_views_count_only_todays_messages(project, monkeypatch):
    monkeypatch.setattr(campaigns_dashboard, "TODAY_TTL", 0)  # today's bar uncached here
    subscriber = SubscriberFactory(project=project)
    old = Message.objects.create(project=project, subscriber=subscriber)
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    assert sum(n for _, n in chart(project).points) == 1
    Message.objects.create(project=project, subscriber=subscriber)  # sent just now
    with CaptureQueriesContext(connection) as queries:
        points = chart(project).points
    assert points[-1][1] == 1 and sum(n for _, n in points) == 2
    counted = [q["sql"] for q in queries if "campaigns_message" in q["sql"]]
    tz = ZoneInfo(project.time_zone)
    today = timezone.now().astimezone(tz).date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=tz)
    # As the databases print it: PostgreSQL in local time, SQLite in UTC.
    bounds = {f"{m:%Y-%m-%d %H:%M:%S}" for m in (midnight, midnight.astimezone(ZoneInfo("UTC")))}
    # One query, over today's rows only: the past days come from the cached counts.
    assert len(counted) == 1 and any(b in counted[0] for b in bounds), counted


def test_todays_bar_is_counted_at_most_once_a_minute(project):
    subscriber = SubscriberFactory(project=project)
    Message.objects.create(project=project, subscriber=subscriber)
    assert chart(project).points[-1][1] == 1
    Message.objects.create(project=project, subscriber=subscriber)
    with CaptureQueriesContext(connection) as queries:
        points = chart(project).points
    assert points[-1][1] == 1  # the count of a moment ago (TODAY_TTL)
    assert not [q["sql"] for q in queries if "campaigns_message" in q["sql"]]
