"""Rows left ``unknown`` end terminal: a status webhook settles them, else they are sent again once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import counters, lifecycle, progress, sending
from campaigns.models import CampaignStatus, Message, MessageStatus
from campaigns.sending import RESEND_NOTE, resend_unknown, send_batch, sweep_stuck
from campaigns.services import apply_statuses
from controlpanel.services import Actor
from whatsapp.signals import StatusUpdate

from .outbox import fill, make_campaign, patch_render


@pytest.fixture
def rendered(monkeypatch):
    return patch_render(monkeypatch)


@pytest.fixture
def fast(account):
    account.throughput_mps = 1000
    account.save()
    return account


def killed_worker(campaign, n: int, *, ago: timedelta, settings) -> list[Message]:
    """``n`` rows a worker claimed ``ago`` and died with (some may have been posted): now unknown.

    The sweeper's pass runs with the wait longer than ``ago``, so they stay unknown."""
    settings.UNKNOWN_RESEND_AFTER = ago.total_seconds() + 60
    rows = fill(campaign, n)
    counters.recount([campaign.pk])
    claimed = sending._claim([r.pk for r in rows], timezone.now(), None)
    assert len(claimed) == n
    Message.objects.filter(pk__in=claimed).update(sending_at=timezone.now() - ago)
    assert sweep_stuck() == n
    return list(Message.objects.filter(pk__in=claimed).order_by("pk"))


def statuses(rows) -> list[str]:
    return list(
        Message.objects.filter(pk__in=[r.pk for r in rows]).order_by("pk").values_list("status", flat=True)
    )


def test_unknown_rows_without_a_webhook_are_queued_again_once_after_the_wait(fast, graph, rendered, settings):
    campaign = make_campaign(fast)
    rows = killed_worker(campaign, 3, ago=timedelta(minutes=20), settings=settings)
    settings.UNKNOWN_RESEND_AFTER = 3600
    assert statuses(rows) == ["unknown"] * 3
    # One of them had been posted: its sent webhook settles it within seconds.
    posted = rows[0]
    webhook = StatusUpdate(
        project_id=posted.project_id,
        account_id=fast.pk,
        wamid="wamid.P1",
        status="sent",
        timestamp=timezone.now(),
        callback_data=posted.callback_data,
    )
    apply_statuses([webhook])
    assert resend_unknown() == 0  # within the wait: the others may still get theirs
    assert progress.complete_finished([campaign.pk]) == 0  # and they keep the campaign running

    Message.objects.filter(pk__in=[r.pk for r in rows]).update(
        sending_at=timezone.now() - timedelta(minutes=61)
    )
    assert resend_unknown() == 2
    assert statuses(rows) == ["sent", "queued", "queued"]
    again = Message.objects.get(pk=rows[1].pk)
    assert again.history[-1]["note"] == RESEND_NOTE and again.send_after is None and again.reason == ""
    assert counters.current([campaign.pk]) == counters.expected([campaign.pk])
    assert campaign.__class__.objects.get(pk=campaign.pk).status == CampaignStatus.RUNNING

    # Sent again through the normal path; every recipient ends terminal and the campaign completes.
    assert send_batch([r.pk for r in rows[1:]]) == {"sent": 2}
    assert statuses(rows) == ["sent"] * 3
    assert len(graph.calls) == 2
    assert campaign.__class__.objects.get(pk=campaign.pk).status == CampaignStatus.COMPLETED


def test_a_row_sent_again_is_not_sent_a_third_time(fast, graph, rendered, settings):
    campaign = make_campaign(fast)
    [row] = killed_worker(campaign, 1, ago=timedelta(minutes=20), settings=settings)
    settings.UNKNOWN_RESEND_AFTER = 60
    assert resend_unknown() == 1
    # Claimed again and again the worker dies.
    assert sending._claim([row.pk], timezone.now(), None) == [row.pk]
    Message.objects.filter(pk=row.pk).update(sending_at=timezone.now() - timedelta(minutes=20))
    assert sweep_stuck() == 1
    assert resend_unknown() == 0
    assert statuses([row]) == ["unknown"]
    # It no longer keeps the campaign running: it counts as done, shown as unknown.
    assert progress.complete_finished([campaign.pk]) == 1
    assert counters.current([campaign.pk]) == counters.expected([campaign.pk])


def test_the_wait_is_a_setting(fast, settings):
    campaign = make_campaign(fast)
    rows = killed_worker(campaign, 1, ago=timedelta(minutes=20), settings=settings)
    settings.UNKNOWN_RESEND_AFTER = 3600
    assert resend_unknown() == 0
    settings.UNKNOWN_RESEND_AFTER = 600
    assert resend_unknown() == 1
    assert statuses(rows) == ["queued"]


def test_the_sweeper_resends_and_reopens_a_campaign_completed_meanwhile(fast, settings):
    campaign = make_campaign(fast)
    rows = killed_worker(campaign, 1, ago=timedelta(minutes=20), settings=settings)
    settings.UNKNOWN_RESEND_AFTER = 600
    # A batch's completion check ran after the wait but before the sweeper: completed.
    assert progress.complete_finished([campaign.pk]) == 1
    sweep_stuck()  # the sweeper's own pass sends the row again
    assert statuses(rows) == ["queued"]
    assert campaign.__class__.objects.get(pk=campaign.pk).status == CampaignStatus.RUNNING


def test_single_sends_and_cancelled_campaigns_are_not_resent(fast, settings, subscriber):
    cancelled = make_campaign(fast)
    rows = killed_worker(cancelled, 1, ago=timedelta(minutes=20), settings=settings)
    settings.UNKNOWN_RESEND_AFTER = 60
    lifecycle.cancel(campaign=cancelled, actor=Actor(label="test"))
    single = Message.objects.create(
        project=fast.project,
        subscriber=subscriber,
        account=fast,
        status=MessageStatus.UNKNOWN,
        sending_at=timezone.now() - timedelta(hours=2),
    )
    assert resend_unknown() == 0
    assert statuses([*rows, single]) == ["unknown", "unknown"]
