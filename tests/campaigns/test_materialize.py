"""The audience snapshot's narrow rows become outbox rows in chunks (materialize.py, ADR 0009).

Chunks of two here, so a campaign of seven recipients takes the path of a million: the snapshot
writes the first rows itself and the start-due tick the rest, while the counters, the audience
size, the cost estimate and completion see the whole audience from the snapshot on.
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.db.models import Sum
from django.utils import timezone

from campaigns import counters, fanout, lifecycle, materialize, progress, sendpolicy
from campaigns.launch_actors import start_due_campaigns
from campaigns.models import (
    AudienceRow,
    Campaign,
    CampaignCounter,
    CampaignStatus,
    Message,
    MessageStatus,
)
from controlpanel.services import Actor
from subscribers.models import ConsentState, Subscriber
from tests.factories import SubscriberFactory, UserFactory

from .launch_helpers import make_campaign, rows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(materialize, "INLINE_ROWS", 2)
    monkeypatch.setattr(materialize, "CHUNK", 2)


@pytest.fixture
def people(account):
    project = account.project
    opted_in = SubscriberFactory.create_batch(5, project=project, whatsapp_consent=ConsentState.OPTED_IN)
    return {
        "in": opted_in,
        "unknown": SubscriberFactory(project=project, whatsapp_consent=ConsentState.UNKNOWN),
        "out": SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_OUT),
    }


def started(account, **kw) -> Campaign:
    """A campaign through the scheduler's start, as a "send now" launch gets it."""
    campaign = make_campaign(account, **kw)
    scheduled = {"status": CampaignStatus.SCHEDULED, "launched_at": timezone.now()}
    Campaign.objects.filter(pk=campaign.pk).update(**scheduled)
    assert lifecycle.start_due() == 1
    campaign.refresh_from_db()
    return campaign


def counted(campaign: Campaign) -> dict[str, int]:
    groups = CampaignCounter.objects.filter(campaign=campaign).values_list("status").annotate(n=Sum("n"))
    return {status: n for status, n in groups if n}


def assert_counters_match_rows(campaign: Campaign) -> None:
    have, _ = counters.current([campaign.pk])
    want, _ = counters.expected([campaign.pk])
    assert have == want


def test_the_whole_audience_is_counted_at_the_snapshot_and_written_in_chunks(account, people):
    campaign = started(account)

    assert Message.objects.filter(campaign=campaign).count() == 2  # the snapshot's own chunk
    assert AudienceRow.objects.filter(campaign=campaign).count() == 5
    assert campaign.audience_size == 7
    assert counted(campaign) == {"queued": 5, "skipped": 2}
    assert_counters_match_rows(campaign)

    assert materialize.pending() == 5

    assert not AudienceRow.objects.filter(campaign=campaign).exists()
    got = rows(campaign)
    assert {pk for pk, m in got.items() if m.status == MessageStatus.QUEUED} == {s.pk for s in people["in"]}
    assert (got[people["unknown"].pk].status, got[people["unknown"].pk].reason) == (
        MessageStatus.SKIPPED,
        sendpolicy.NO_OPT_IN,
    )
    assert got[people["out"].pk].reason == sendpolicy.OPTED_OUT
    assert all(m.history[0]["note"] == "campaign launch" for m in got.values())
    assert {m.history[0]["at"] for m in got.values()} == {campaign.snapshot_at.isoformat()}
    assert all(m.created_at >= campaign.snapshot_at for m in got.values())
    assert len({m.public_id for m in got.values()}) == 7
    assert counted(campaign) == {"queued": 5, "skipped": 2}
    assert_counters_match_rows(campaign)
    assert materialize.pending() == 0


def test_the_start_due_tick_writes_the_rest(account, people):
    campaign = started(account)
    start_due_campaigns.fn()
    assert Message.objects.filter(campaign=campaign).count() == 7
    assert materialize.pending_campaigns() == []


def test_a_campaign_is_not_complete_while_recipients_wait_for_their_row(account, people):
    campaign = started(account)
    Message.objects.filter(campaign=campaign).update(status=MessageStatus.SENT)

    assert progress.complete_finished() == 0

    materialize.pending()
    Message.objects.filter(campaign=campaign, status=MessageStatus.QUEUED).update(status=MessageStatus.SENT)
    assert progress.complete_finished() == 1


def test_a_running_campaign_is_written_only_a_minute_of_sending_ahead(account, people, monkeypatch):
    monkeypatch.setattr(materialize, "AHEAD", 3)
    campaign = started(account)  # two due queued rows

    assert materialize.step(campaign.pk) == 1  # up to three due
    assert materialize.step(campaign.pk) == 0

    Message.objects.filter(campaign=campaign, status=MessageStatus.QUEUED).update(status=MessageStatus.SENT)
    assert materialize.step(campaign.pk) == 2
    # Rows held for later (a local time, quiet hours) do not count as ready.
    later = timezone.now() + timezone.timedelta(hours=3)
    Message.objects.filter(campaign=campaign, status=MessageStatus.QUEUED).update(send_after=later)
    assert materialize.step(campaign.pk) == 2


def test_a_cancelled_campaign_writes_its_waiting_recipients_as_skipped(account, people):
    campaign = started(account)
    lifecycle.cancel(campaign=campaign, actor=Actor(user=UserFactory()))

    assert materialize.pending() == 5

    got = rows(campaign)
    assert {m.status for m in got.values()} == {MessageStatus.SKIPPED}
    reasons = Counter(m.reason for m in got.values())
    assert reasons == {sendpolicy.CANCELLED: 5, sendpolicy.NO_OPT_IN: 1, sendpolicy.OPTED_OUT: 1}
    waited = [m for m in got.values() if m.reason == sendpolicy.CANCELLED and len(m.history) == 2]
    assert [m.history[-1]["note"] for m in waited] == ["campaign cancelled"] * len(waited)
    assert counted(campaign) == {"skipped": 7}
    assert_counters_match_rows(campaign)


def test_a_subscriber_deleted_before_their_row_is_written_is_left_out(account, people):
    campaign = started(account)
    waiting = AudienceRow.objects.filter(campaign=campaign, reason="").order_by("subscriber_id").last()
    Subscriber.objects.filter(pk=waiting.subscriber_id).delete()

    materialize.pending()

    assert waiting.subscriber_id not in rows(campaign)
    assert counted(campaign) == {"queued": 4, "skipped": 2}
    assert_counters_match_rows(campaign)


def test_a_rerun_adds_nobody_whether_rows_wait_or_were_written(account, people):
    campaign = started(account)
    assert fanout.snapshot(campaign) == 0
    materialize.pending()
    assert fanout.snapshot(campaign) == 0
    SubscriberFactory(project=account.project, whatsapp_consent=ConsentState.OPTED_IN)
    assert fanout.snapshot(campaign) == 1
    assert counted(campaign) == {"queued": 6, "skipped": 2}


def test_the_cost_estimate_counts_the_waiting_recipients(account, people, monkeypatch):
    chunked = started(account)
    monkeypatch.setattr(materialize, "INLINE_ROWS", 10_000)
    whole = started(account, name="Everyone at once")

    assert not AudienceRow.objects.filter(campaign=whole).exists()
    assert chunked.estimated_cost == whole.estimated_cost > 0
    assert chunked.audience_size == whole.audience_size == 7


def test_deleting_a_campaign_deletes_its_waiting_rows(account, people):
    campaign = started(account)
    campaign.delete()
    assert not AudienceRow.objects.exists()
