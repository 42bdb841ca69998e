"""Pause, resume and cancel at any time: a paused campaign sends nothing more, and resuming goes on
without duplicates or gaps (ten times mid-campaign, through the dispatcher and the batch path)."""

from __future__ import annotations

from collections import Counter

import pytest

from campaigns import actors, sending
from campaigns.models import Campaign, CampaignStatus, Message, MessageStatus
from campaigns.sending import dispatch, send_batch

from .outbox import fill, make_campaign, patch_render


@pytest.fixture
def rendered(monkeypatch):
    return patch_render(monkeypatch)


@pytest.fixture
def broker(monkeypatch, django_capture_on_commit_callbacks):
    """The send queue as a list; tick() runs the dispatcher and returns what it enqueued."""
    queue: list[tuple[list[int], str | None]] = []
    monkeypatch.setattr(actors.send_messages, "send", lambda ids, lease: queue.append((ids, lease)))

    def tick() -> list[tuple[list[int], str | None]]:
        with django_capture_on_commit_callbacks(execute=True):
            dispatch()
        batches = list(queue)
        queue.clear()
        return batches

    return tick


def set_status(campaign, status) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(status=status)


def work(batches) -> None:
    for ids, lease in batches:
        send_batch(ids, lease)


def test_pause_and_resume_ten_times_mid_campaign_no_duplicates_no_gaps(graph, account, rendered, broker,
                                                                       monkeypatch):  # fmt: skip
    account.throughput_mps = 1000
    account.save()
    monkeypatch.setattr(sending, "LOOKAHEAD", 0.01)  # 10 rows per tick: the campaign takes many ticks
    monkeypatch.setattr(sending, "BATCH_SIZE", 4)
    campaign = make_campaign(account)
    rows = fill(campaign, 300)
    pauses = 0
    for step in range(200):
        if not Message.objects.filter(status=MessageStatus.QUEUED).exists():
            break
        leased = broker()
        assert leased, "queued rows of a running campaign were not dispatched"
        if pauses < 10 and step % 2 == 1:
            pauses += 1
            set_status(campaign, CampaignStatus.PAUSED)
            before = len(graph.calls)
            if pauses % 2:
                work(leased)  # batches leased before the pause claim nothing
            else:
                work(leased[:1])  # ...or a worker is slow and some are still on the broker
            assert len(graph.calls) == before
            assert broker() == []  # and the dispatcher leases nothing while paused
            set_status(campaign, CampaignStatus.RUNNING)
            work(leased[1:])  # the late ones run after the resume: they may send, never twice
            continue
        work(leased)
    assert pauses == 10
    sent_to = Counter(call[2]["to"] for call in graph.calls)
    assert len(sent_to) == 300 and set(sent_to.values()) == {1}  # no gaps, no duplicates
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.SENT}
    assert {r.subscriber.phone.lstrip("+") for r in rows} == set(sent_to)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED


@pytest.mark.parametrize("status", [CampaignStatus.PAUSED, CampaignStatus.CANCELLED, CampaignStatus.DRAFT])
def test_rows_of_a_campaign_that_is_not_running_are_never_claimed(graph, account, rendered, broker, status):
    campaign = make_campaign(account)
    fill(campaign, 5)
    leased = broker()
    set_status(campaign, status)
    work(leased)
    assert graph.calls == [] and broker() == []
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.QUEUED}


def test_resume_sends_rows_leased_before_the_pause_at_once(graph, account, rendered, broker):
    campaign = make_campaign(account)
    fill(campaign, 5)
    leased = broker()
    set_status(campaign, CampaignStatus.PAUSED)
    work(leased)  # claims nothing, gives the lease back
    set_status(campaign, CampaignStatus.RUNNING)
    work(broker())  # the next tick, not a minute later
    assert len(graph.calls) == 5
