"""Campaign counters: every writer of a campaign row's state keeps them, and they equal a recount."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import counters, lifecycle, progress, sending
from campaigns.engagement import record_engagement
from campaigns.models import CampaignCounter, CampaignMinute, CampaignStatus, Message, MessageStatus
from campaigns.services import apply_status, apply_statuses
from campaigns.stats import (
    CampaignStats,
    campaign_stats,
    fold,
    grouped_counts,
    sends_per_minute,
    status_counts,
)
from controlpanel.services import Actor
from subscribers.models import ConsentState, Subscriber
from tests.fakegraph import error_answer, ok_answer
from whatsapp.signals import InboundMessage, StatusUpdate

from .launch_helpers import make_campaign as make_launch_campaign
from .outbox import fill, make_campaign, patch_render

ACTOR = Actor(label="test")


@pytest.fixture
def rendered(monkeypatch):
    return patch_render(monkeypatch)


@pytest.fixture
def fast(account):
    account.throughput_mps = 1000
    account.save()
    return account


def assert_counted(*campaigns) -> None:
    """The counters are exactly what counting the rows gives, and the page's figures agree."""
    ids = [c.pk for c in campaigns]
    assert counters.current(ids) == counters.expected(ids)
    for campaign in campaigns:
        from_rows = CampaignStats()
        fold(grouped_counts(Message.objects.filter(campaign=campaign)), lambda row, into=from_rows: into)
        stats = campaign_stats(campaign)
        assert stats.as_dict() | {"failures": [], "skips": []} == from_rows.as_dict()


def status(message: Message, name: str, *, minutes: int = 0, **kw) -> StatusUpdate:
    return StatusUpdate(
        project_id=message.project_id,
        account_id=message.account_id,
        wamid=message.wamid or "",
        status=name,
        timestamp=timezone.now() + timedelta(minutes=minutes),
        callback_data=message.callback_data,
        **kw,
    )


def inbound(message: Message, **kw) -> InboundMessage:
    defaults = {
        "project_id": message.project_id,
        "account_id": message.account_id,
        "subscriber_id": message.subscriber_id,
        "event_id": 1,
        "message_id": f"wamid.IN{message.pk}",
        "type": "text",
        "text": "thanks",
        "normalized_text": "thanks",
        "button_payload": "",
        "timestamp": timezone.now() + timedelta(seconds=5),
    }
    defaults.update(kw)
    return InboundMessage(**defaults)


def rows_of(campaign, status_: str) -> list[Message]:
    return list(Message.objects.filter(campaign=campaign, status=status_).order_by("pk"))


def test_a_whole_campaign_keeps_counters_equal_to_a_recount(fast, graph, rendered, settings):
    """Fan-out, sends with failures, a killed worker, the sweeper, webhooks, replies and clicks,
    a 131049 retry, a resend of unknown rows and cancel: the counters follow every step."""
    project = fast.project
    people = [
        Subscriber.objects.create(
            project=project, phone=f"+4917000000{i:02d}", whatsapp_consent=ConsentState.OPTED_IN
        )
        for i in range(40)
    ]
    Subscriber.objects.create(project=project, phone="+491700000099", whatsapp_consent=ConsentState.OPTED_OUT)
    campaign = make_launch_campaign(fast, status=CampaignStatus.SCHEDULED, launched_at=timezone.now())
    assert lifecycle.start_due() == 1
    other = make_campaign(fast)
    fill(other, 3)
    counters.recount([other.pk])
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    assert campaign_stats(campaign).queued == 40 and campaign_stats(campaign).skipped == 1
    assert_counted(campaign, other)

    # Sends: two numbers are invalid (permanent), one gets a transient error (queued again).
    bad = {people[0].phone.lstrip("+"), people[1].phone.lstrip("+")}
    flaky = people[2].phone.lstrip("+")

    def answer(body):
        if body.get("to") in bad:
            return error_answer(131026)(body)
        if body.get("to") == flaky:
            return error_answer(131000, status=500)(body)
        return ok_answer(body)

    graph.answer = answer
    queued = [m.pk for m in rows_of(campaign, MessageStatus.QUEUED)]
    assert sending.send_batch(queued[:20]) == {"sent": 17, "failed": 2, "requeued": 1}
    assert_counted(campaign, other)

    # A worker killed after its claim: rows stay sending, the sweeper makes them unknown.
    now = timezone.now()
    killed = sending._claim(queued[20:26], now, None)
    assert len(killed) == 6
    assert_counted(campaign)
    Message.objects.filter(pk__in=killed).update(sending_at=now - timedelta(minutes=30))
    assert sending.sweep_stuck() == 6
    assert_counted(campaign)

    # Status webhooks: delivered and read with pricing (one free), one of the unknown rows settled
    # by its sent webhook, a 131049 failure queued for a retry, one row by the one-at-a-time path.
    sent = rows_of(campaign, MessageStatus.SENT)
    pricing = {"billable": True, "category": "marketing", "type": "regular"}
    free = {"billable": False, "category": "service", "type": "free_customer_service"}
    updates = [status(m, "delivered", pricing=pricing) for m in sent[:10]]
    updates += [status(m, "read", minutes=1, pricing=pricing) for m in sent[:5]]
    updates += [status(sent[10], "delivered", pricing=free)]
    unknown = rows_of(campaign, MessageStatus.UNKNOWN)
    updates += [status(unknown[0], "sent", pricing=pricing)]
    updates += [status(sent[11], "failed", errors=({"code": 131049, "title": "Ecosystem"},))]
    apply_statuses(updates)
    apply_status(status(sent[12], "delivered", pricing=pricing))
    assert_counted(campaign)

    # Replies and clicks.
    delivered = rows_of(campaign, MessageStatus.DELIVERED)
    assert record_engagement(inbound(delivered[0])) == 1
    press = inbound(
        delivered[0],
        type="button",
        button_payload="m:x",
        context_message_id=delivered[0].wamid,
        message_id="B1",
    )
    assert record_engagement(press) == 1
    read = rows_of(campaign, MessageStatus.READ)
    assert record_engagement(inbound(read[0], message_id="wamid.R1")) == 1
    assert_counted(campaign)
    # A replied row moving on takes its reply along.
    apply_statuses([status(delivered[0], "read", minutes=2)])
    assert_counted(campaign)

    # Unknown rows no webhook settled go back to the queue after UNKNOWN_RESEND_AFTER.
    settings.UNKNOWN_RESEND_AFTER = 60
    Message.objects.filter(status=MessageStatus.UNKNOWN).update(
        sending_at=timezone.now() - timedelta(hours=1)
    )
    assert sending.resend_unknown() == 5
    assert_counted(campaign)

    # The next batch sends some, then cancel skips what is left.
    queued = [m.pk for m in rows_of(campaign, MessageStatus.QUEUED)]
    sending.send_batch(queued[:8])
    assert_counted(campaign)
    lifecycle.cancel(campaign=campaign, actor=ACTOR)
    stats = campaign_stats(campaign)
    assert stats.queued == 0 and stats.total == 41
    assert stats.skipped > 1 and stats.failed == 2 and stats.replied == 2 and stats.clicked == 1
    assert stats.billable == {"marketing": 12}
    assert_counted(campaign, other)
    assert counters.recount([campaign.pk, other.pk]) == 0  # nothing to correct


def test_sends_per_minute_come_from_the_minute_counters(fast, graph, rendered):
    campaign = make_campaign(fast)
    rows = fill(campaign, 5)
    counters.recount([campaign.pk])
    assert sending.send_batch([r.pk for r in rows]) == {"sent": 5}
    now = timezone.now()
    points = sends_per_minute(campaign, minutes=3, now=now)
    assert [n for _, n in points] == [0, 0, 5]
    assert CampaignMinute.objects.get(campaign=campaign).n == 5
    # The chart reads the counter, not the rows: a counter says what it says.
    CampaignMinute.objects.filter(campaign=campaign).update(n=7)
    assert sends_per_minute(campaign, minutes=3, now=now)[-1][1] == 7


def test_campaign_stats_reads_counters_in_a_fixed_number_of_queries(fast):
    campaign = make_campaign(fast)
    CampaignCounter.objects.create(
        campaign=campaign, status="read", pricing_category="marketing", n=700, replied=9
    )
    CampaignCounter.objects.create(
        campaign=campaign, status="delivered", pricing_category="utility", free=True, n=300
    )
    CampaignCounter.objects.create(campaign=campaign, status="queued", n=1000, clicked=2)
    with CaptureQueriesContext(connection) as queries:
        stats = campaign_stats(campaign)
    assert len(queries) == 3  # counters, failures, skips
    assert (stats.total, stats.read, stats.delivered, stats.queued) == (2000, 700, 1000, 1000)
    assert (stats.replied, stats.clicked) == (9, 2)
    assert stats.billable == {"marketing": 700}  # the free ones are not charged
    other = make_campaign(fast)
    with CaptureQueriesContext(connection) as queries:
        both = status_counts([campaign, other])
    assert len(queries) == 1
    assert both[campaign.pk].total == 2000 and both[other.pk].total == 0


def test_delta_adds_to_existing_groups_and_skips_zero_ones(fast):
    campaign = make_campaign(fast)
    minute = datetime(2026, 12, 6, 12, 30, tzinfo=UTC)
    for _ in range(2):
        delta = counters.Delta()
        delta.add(campaign.pk, "sent", "marketing", n=3, replied=1)
        delta.add(campaign.pk, "queued", n=-3)
        delta.add(campaign.pk, "failed", n=0)  # nothing: no row written
        delta.add_minute(campaign.pk, minute, 3)
        delta.apply()
    got = {(c.status, c.pricing_category): (c.n, c.replied) for c in CampaignCounter.objects.all()}
    assert got == {("sent", "marketing"): (6, 2), ("queued", ""): (-6, 0)}
    assert CampaignMinute.objects.get().n == 6
    assert not counters.Delta()  # an empty delta is falsy: writers skip the statement


def test_a_move_carries_the_rows_reply_and_click_along(fast):
    campaign = make_campaign(fast)
    before = counters.RowState(campaign.pk, "delivered", "marketing", replied=True, clicked=True)
    after = counters.RowState(campaign.pk, "read", "marketing", replied=True, clicked=True)
    counters.apply_moves([(before, after), (after, after)])  # the second changes nothing
    got = {c.status: (c.n, c.replied, c.clicked) for c in CampaignCounter.objects.all()}
    assert got == {"delivered": (-1, -1, -1), "read": (1, 1, 1)}


def test_recount_repairs_drift_and_drops_empty_groups(fast):
    campaign = make_campaign(fast)
    fill(campaign, 4)
    assert counters.recount([campaign.pk]) == 1
    CampaignCounter.objects.filter(campaign=campaign).update(n=99)
    CampaignCounter.objects.create(campaign=campaign, status="read", n=0)
    CampaignMinute.objects.create(campaign=campaign, minute=timezone.now(), n=3)
    assert counters.recount([campaign.pk]) == 2
    assert list(CampaignCounter.objects.values_list("status", "n")) == [("queued", 4)]
    assert not CampaignMinute.objects.exists()
    assert counters.recount([campaign.pk]) == 0


def test_recount_command_rebuilds_every_campaign(fast):
    one, two = make_campaign(fast), make_campaign(fast)
    fill(one, 2)
    fill(two, 3)
    out = StringIO()
    call_command("recount_campaigns", stdout=out)
    assert "Recounted 2 campaigns: 2 counter groups corrected." in out.getvalue()
    assert campaign_stats(one).total == 2 and campaign_stats(two).total == 3
    call_command("recount_campaigns", str(one.pk), stdout=out)
    assert out.getvalue().endswith("Recounted 1 campaigns: 0 counter groups corrected.\n")


def test_completing_a_campaign_recounts_it(fast):
    campaign = make_campaign(fast)
    rows = fill(campaign, 2, sent_at=timezone.now())
    Message.objects.filter(pk__in=[r.pk for r in rows]).update(status=MessageStatus.SENT)
    assert campaign_stats(campaign).total == 0  # written behind the counters' back
    assert progress.complete_finished([campaign.pk]) == 1
    assert campaign_stats(campaign).sent == 2
    assert counters.current([campaign.pk]) == counters.expected([campaign.pk])


def test_cancel_moves_queued_counters_to_skipped(fast):
    campaign = make_campaign(fast)
    fill(campaign, 5)
    fill(
        campaign, 1, pricing_category="marketing", billable=False, replied_at=timezone.now()
    )  # a 131049 retry
    claimed = fill(campaign, 2)
    Message.objects.filter(pk__in=[r.pk for r in claimed]).update(status=MessageStatus.SENDING)
    counters.recount([campaign.pk])
    lifecycle.cancel(campaign=campaign, actor=ACTOR)
    stats = campaign_stats(campaign)
    assert (stats.queued, stats.skipped, stats.sending, stats.replied) == (0, 6, 2, 1)
    assert counters.current([campaign.pk]) == counters.expected([campaign.pk])


def test_single_sends_have_no_counters(fast, graph, subscriber, template):
    from campaigns.services import send_whatsapp

    from .conftest import params

    message = send_whatsapp(project=fast.project, subscriber=subscriber, actor=ACTOR, template=template,
                            components=params("a", "b"))  # fmt: skip
    sending.send_one(message.pk)
    message.refresh_from_db()
    apply_statuses([status(message, "delivered")])
    record_engagement(inbound(message))
    assert not CampaignCounter.objects.exists() and not CampaignMinute.objects.exists()
