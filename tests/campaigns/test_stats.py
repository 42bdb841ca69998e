"""Campaign statistics: counts per state, funnel, failures by code, skips by reason, sends per minute."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import counters
from campaigns.models import Campaign, Message
from campaigns.stats import campaign_stats, sends_per_minute, status_counts
from tests.factories import ProjectFactory, SubscriberFactory


def make_campaign(project, **kw) -> Campaign:
    return Campaign.objects.create(project=project, name=kw.pop("name", "Spring sale"), **kw)


def add(campaign, status: str, n: int = 1, **kw) -> list[Message]:
    rows = [
        Message.objects.create(
            project=campaign.project,
            subscriber=SubscriberFactory(project=campaign.project),
            campaign=campaign,
            status=status,
            **kw,
        )
        for _ in range(n)
    ]
    # Rows written here, not by the send path: the counters the page reads are rebuilt from them.
    counters.recount([campaign.pk])
    return rows


@pytest.fixture
def campaign(db):
    return make_campaign(ProjectFactory())


def test_counts_per_state_and_cumulative_funnel(campaign):
    add(campaign, "queued", 3)
    add(campaign, "sending", 1)
    add(campaign, "sent", 2)
    add(campaign, "delivered", 2, replied_at=timezone.now())
    add(campaign, "read", 1, clicked_at=timezone.now(), replied_at=timezone.now())
    add(campaign, "failed", 1, error_code=131026)
    add(campaign, "skipped", 2, reason="No WhatsApp opt-in")
    add(campaign, "unknown", 1)
    # Another campaign's rows are not counted.
    add(make_campaign(campaign.project, name="Other"), "read", 4)

    stats = campaign_stats(campaign)

    assert (stats.queued, stats.sending, stats.unknown) == (3, 1, 1)
    assert (stats.sent, stats.delivered, stats.read) == (5, 3, 1)  # read was delivered and sent too
    assert (stats.replied, stats.clicked) == (3, 1)
    assert (stats.failed, stats.skipped, stats.total) == (1, 2, 13)
    assert stats.processed == 8
    assert stats.delivery_rate == 60.0 and stats.read_rate == 33.3
    assert [s for s, *_ in stats.bar] == [
        "read",
        "delivered",
        "sent",
        "unknown",
        "sending",
        "queued",
        "failed",
        "skipped",
    ]
    assert sum(pct for _, _, pct, _ in stats.bar) == pytest.approx(100)
    data = stats.as_dict()
    assert data["sent"] == 5 and data["total"] == 13 and data["clicked"] == 1


def test_an_empty_campaign_has_no_rates(campaign):
    stats = campaign_stats(campaign)
    assert stats.total == 0 and stats.delivery_rate is None and stats.read_rate is None
    assert stats.bar == [] and stats.progress == 0.0


def test_failures_grouped_by_code_with_explanation_and_what_to_do(campaign):
    add(campaign, "failed", 3, error_code=131026, error_title="Message undeliverable")
    add(campaign, "failed", 1, error_code=132001)
    add(campaign, "failed", 1, error_code=999999, error_title="Something new")
    add(campaign, "failed", 1, reason="The template was deleted before sending.")

    failures = campaign_stats(campaign).failures

    assert [(f.code, f.count) for f in failures] == [(131026, 3), (132001, 1), (999999, 1), (None, 1)]
    by_code = {f.code: f for f in failures}
    assert "not on WhatsApp" in by_code[131026].explanation
    assert by_code[131026].what_to_do.startswith("Not retried")
    assert by_code[132001].kind == "account" and "pauses itself" in by_code[132001].what_to_do
    assert by_code[999999].explanation == "Something new"  # Meta's title when we have no words of our own
    assert by_code[None].explanation == "The template was deleted before sending."


def test_skips_grouped_by_reason_biggest_first(campaign):
    add(campaign, "skipped", 1, reason="Opted out")
    add(campaign, "skipped", 3, reason="No WhatsApp opt-in")
    add(campaign, "skipped", 1, reason="")
    skips = campaign_stats(campaign).skips
    assert [(s.reason, s.count) for s in skips] == [
        ("No WhatsApp opt-in", 3),
        ("No reason recorded.", 1),
        ("Opted out", 1),
    ]


def test_billable_counts_per_pricing_category(campaign):
    add(campaign, "delivered", 2, pricing_category="marketing", billable=True)
    add(campaign, "read", 1, pricing_category="marketing")
    add(campaign, "delivered", 1, pricing_category="service", billable=False)  # free
    add(campaign, "failed", 1, pricing_category="marketing")  # not charged
    assert campaign_stats(campaign).billable == {"marketing": 3}


def test_campaign_stats_runs_a_fixed_number_of_queries(campaign):
    add(campaign, "failed", 2, error_code=131026)
    with CaptureQueriesContext(connection) as small:
        campaign_stats(campaign)
    add(campaign, "failed", 5, error_code=131047)
    add(campaign, "skipped", 5, reason="Capped")
    with CaptureQueriesContext(connection) as large:
        campaign_stats(campaign)
    assert len(small) == len(large) == 3


def test_status_counts_for_a_page_of_campaigns_in_one_query(campaign):
    other = make_campaign(campaign.project, name="Other")
    add(campaign, "sent", 2)
    add(other, "read", 1, pricing_category="marketing")
    with CaptureQueriesContext(connection) as queries:
        counts = status_counts([campaign, other])
    assert len(queries) == 1
    assert counts[campaign.pk].sent == 2 and counts[other.pk].read == 1
    assert counts[other.pk].billable == {"marketing": 1} and counts[campaign.pk].billable == {}


def test_sends_per_minute_counts_by_sent_time_with_zeros(campaign):
    now = timezone.now().replace(second=30, microsecond=0)
    add(campaign, "delivered", 2, sent_at=now - timedelta(minutes=2))
    add(campaign, "read", 1, sent_at=now - timedelta(minutes=2, seconds=20))  # :10 of the same minute
    add(campaign, "sent", 1, sent_at=now - timedelta(minutes=3, seconds=1))
    add(campaign, "sent", 1, sent_at=now)
    add(campaign, "sent", 1, sent_at=now - timedelta(minutes=90))  # outside the window
    add(campaign, "queued", 1)

    points = sends_per_minute(campaign, minutes=5, now=now)

    minute = now.replace(second=0)
    assert [at for at, _ in points] == [minute - timedelta(minutes=4 - i) for i in range(5)]
    assert [n for _, n in points] == [0, 1, 3, 0, 1]
