"""Campaign states the send path moves by itself: paused by an account-level error, completed when done.

A person's pause, resume and cancel live in lifecycle.py; these two are the sender's and the
sweeper's. Both are set-based and safe to run twice (they only move ``running`` campaigns).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from controlpanel.services import SYSTEM, record_audit

from . import counters
from .models import AudienceRow, Campaign, CampaignStatus, Message, MessageStatus


def unknown_resend_after() -> timedelta:
    """How long a row left ``unknown`` (a crash between the claim and the commit) waits for the
    status webhook that settles it. Meta sends ``sent`` within seconds of accepting a message, so
    after this the sweeper queues it again, once (sending.resend_unknown); the second time it is
    left ``unknown`` and no longer keeps its campaign running. Longer is safer against a webhook
    outage of ours (a duplicate), shorter finishes campaigns sooner. Setting UNKNOWN_RESEND_AFTER
    (seconds, default an hour)."""
    return timedelta(seconds=getattr(settings, "UNKNOWN_RESEND_AFTER", 3600))


@transaction.atomic
def pause_for_error(
    *, account_id: int, reason: str, code: int | None, template_name: str | None = None
) -> int:
    """Pause the running campaigns of ``account_id`` (only those sending ``template_name`` if given).

    ``status_reason`` says why in plain words, with Meta's code; the panel and the dashboard show
    it. Their queued rows stay queued: the claim skips paused campaigns, resume sends them.
    Returns how many campaigns paused; 0 when they already were (a second worker's same error).
    """
    campaigns = Campaign.objects.select_for_update().filter(
        account_id=account_id, status=CampaignStatus.RUNNING
    )
    if template_name is not None:
        campaigns = campaigns.filter(template_name=template_name)
    paused = list(campaigns.select_related("project"))
    if not paused:
        return 0
    now = timezone.now()
    status_reason = f"{reason} (Meta error {code})" if code is not None else reason
    Campaign.objects.filter(pk__in=[c.pk for c in paused]).update(
        status=CampaignStatus.PAUSED, status_reason=status_reason, paused_at=now, updated_at=now
    )
    for campaign in paused:
        record_audit(
            project=campaign.project,
            actor=SYSTEM,
            action="campaign.pause",
            obj=campaign,
            changes={"reason": status_reason, "error_code": code, "by": "error"},
        )
    return len(paused)


def _unfinished(now) -> Q:
    # An unknown row within the wait is settled by a webhook or queued again by the sweeper; after
    # it (the sweeper ran first in its actor), only a row sent again once before is still unknown.
    return Q(status__in=[MessageStatus.QUEUED, MessageStatus.SENDING]) | Q(
        status=MessageStatus.UNKNOWN, sending_at__gt=now - unknown_resend_after()
    )


@transaction.atomic
def complete_finished(campaign_ids: Iterable[int] | None = None) -> int:
    """running -> completed for campaigns whose every row is terminal; returns how many completed.

    Terminal: sent, delivered, read, failed, skipped, and ``unknown`` older than unknown_resend_after().
    Only campaigns whose audience was snapshotted: a running campaign without rows yet is not done.
    """
    now = timezone.now()
    busy = Message.objects.filter(campaign=OuterRef("pk")).filter(_unfinished(now))
    # Recipients whose outbox row is not written yet (materialize.py) are not done either.
    waiting = AudienceRow.objects.filter(campaign=OuterRef("pk"))
    done = Campaign.objects.filter(status=CampaignStatus.RUNNING, snapshot_at__isnull=False)
    if campaign_ids is not None:
        done = done.filter(pk__in=list(campaign_ids))
    done = done.filter(~Exists(busy), ~Exists(waiting))
    finished = list(done.select_for_update(of=("self",)).select_related("project"))
    if not finished:
        return 0
    Campaign.objects.filter(pk__in=[c.pk for c in finished], status=CampaignStatus.RUNNING).update(
        status=CampaignStatus.COMPLETED, finished_at=now, updated_at=now
    )
    for campaign in finished:
        record_audit(project=campaign.project, actor=SYSTEM, action="campaign.complete", obj=campaign)
    # The figures a finished campaign keeps showing: rebuilt from its rows once (counters.py).
    counters.recount([c.pk for c in finished])
    return len(finished)


def reopen(campaign_ids: Iterable[int]) -> int:
    """completed -> running for campaigns a retry put a row back into the queue of (131049 webhooks).

    complete_finished completes them again when that row is done. Paused and cancelled campaigns
    are left alone.
    """
    return Campaign.objects.filter(pk__in=list(campaign_ids), status=CampaignStatus.COMPLETED).update(
        status=CampaignStatus.RUNNING, finished_at=None, updated_at=timezone.now()
    )
