"""Campaign states the send path moves by itself: paused by an account-level error, completed when done.

A person's pause, resume and cancel live in lifecycle.py; these two are the sender's and the
sweeper's. Both are set-based and safe to run twice (they only move ``running`` campaigns).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from controlpanel.services import SYSTEM, record_audit

from .models import Campaign, CampaignStatus, Message, MessageStatus

# A row left ``unknown`` (a crash between the POST and the commit) waits this long for the status
# webhook that settles it; after that it no longer keeps its campaign running. It stays ``unknown``
# (a late webhook still settles it) and is never resent: zero duplicates beats a tidy count.
# An hour covers Meta's usual webhook latency many times over (seconds), not a webhook outage of
# ours (Meta retries for 7 days): the campaign page then shows how many are unknown.
UNKNOWN_GRACE = timedelta(hours=1)


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
    return Q(status__in=[MessageStatus.QUEUED, MessageStatus.SENDING]) | Q(
        status=MessageStatus.UNKNOWN, sending_at__gt=now - UNKNOWN_GRACE
    )


@transaction.atomic
def complete_finished(campaign_ids: Iterable[int] | None = None) -> int:
    """running -> completed for campaigns whose every row is terminal; returns how many completed.

    Terminal: sent, delivered, read, failed, skipped, and ``unknown`` older than UNKNOWN_GRACE.
    Only campaigns whose audience was snapshotted: a running campaign without rows yet is not done.
    """
    now = timezone.now()
    busy = Message.objects.filter(campaign=OuterRef("pk")).filter(_unfinished(now))
    done = Campaign.objects.filter(status=CampaignStatus.RUNNING, snapshot_at__isnull=False)
    if campaign_ids is not None:
        done = done.filter(pk__in=list(campaign_ids))
    finished = list(done.filter(~Exists(busy)).select_for_update(of=("self",)).select_related("project"))
    if not finished:
        return 0
    Campaign.objects.filter(pk__in=[c.pk for c in finished], status=CampaignStatus.RUNNING).update(
        status=CampaignStatus.COMPLETED, finished_at=now, updated_at=now
    )
    for campaign in finished:
        record_audit(project=campaign.project, actor=SYSTEM, action="campaign.complete", obj=campaign)
    return len(finished)


def reopen(campaign_ids: Iterable[int]) -> int:
    """completed -> running for campaigns a retry put a row back into the queue of (131049 webhooks).

    complete_finished completes them again when that row is done. Paused and cancelled campaigns
    are left alone.
    """
    return Campaign.objects.filter(pk__in=list(campaign_ids), status=CampaignStatus.COMPLETED).update(
        status=CampaignStatus.RUNNING, finished_at=None, updated_at=timezone.now()
    )
