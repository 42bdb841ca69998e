"""Bulk actions on subscribers (add a tag, opt out of WhatsApp, erase), run by a worker with progress.

A request used to run up to a thousand per-row services before it answered. Now the request
checks the action, snapshots the targets into a ``BulkJob`` and answers with a progress page;
the ``run_bulk_job`` actor works through the targets in chunks, each chunk in one transaction
that also moves the job's ``processed`` mark. Every row goes through the same service as a
single change in the panel or the API (``set_tags``, ``change_consent``, ``erase_subscriber``), so
the ledger, events and audit are the same whatever the path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from controlpanel.models import Project
from controlpanel.services import Actor, record_audit

from . import tags as tagtypes
from .errors import InvalidInput
from .models import BulkJob, BulkStatus, ConsentChannel, ConsentSource, ConsentState, Subscriber
from .services import change_consent, erase_subscriber, set_tags

logger = logging.getLogger(__name__)

ACTIONS = ("add_tag", "opt_out", "delete")
MAX_TARGETS = 50_000
CHUNK = 200
FINISHED = (BulkStatus.DONE, BulkStatus.FAILED)


NEEDS_CONFIRMATION = ("opt_out", "delete")


def start_bulk_job(
    *, project: Project, action: str, subscriber_ids: Sequence[int], params: dict[str, str], actor: Actor
) -> BulkJob:
    """Check the action and snapshot its targets. Raises InvalidInput before writing anything.

    An action that cannot be undone (opt out, erase) stays a draft until :func:`confirm_bulk_job`;
    the others are queued at once.
    """
    if action not in ACTIONS:
        raise InvalidInput(_("Unknown bulk action %(action)r.") % {"action": action}, field="action")
    if not subscriber_ids:
        raise InvalidInput(_("No subscribers matched; nothing changed."), code="empty")
    if len(subscriber_ids) > MAX_TARGETS:
        raise InvalidInput(
            _(
                "More than %(max)s subscribers match; a bulk action handles up to %(max)s at a "
                "time. Narrow the filter and repeat."
            )
            % {"max": _n(MAX_TARGETS)},
            code="too_many",
        )
    if action == "add_tag":
        params = {**params, "tag_name": tagtypes.validate_tag_name(params.get("tag_name", ""))}
        _try_tag(project, subscriber_ids, params)
    job = BulkJob.objects.create(
        project=project,
        action=action,
        params=params,
        subscriber_ids=list(subscriber_ids),
        total=len(subscriber_ids),
        created_by=actor.user,
    )
    if action not in NEEDS_CONFIRMATION:
        confirm_bulk_job(job=job, actor=actor)
    return job


def confirm_bulk_job(*, job: BulkJob, actor: Actor) -> None:
    """Queue a draft job (once: a second confirmation changes nothing) and audit it."""
    with transaction.atomic():
        if not BulkJob.objects.filter(pk=job.pk, status=BulkStatus.DRAFT).update(status=BulkStatus.QUEUED):
            return
        job.status = BulkStatus.QUEUED
        record_audit(
            project=job.project,
            actor=actor,
            action=f"subscribers.bulk_{job.action}",
            obj=job,
            changes={"subscribers": job.total, **job.params},
        )
        from .actors import run_bulk_job

        transaction.on_commit(lambda: run_bulk_job.send(job.pk))


class _DryRun(Exception):
    pass


def _try_tag(project: Project, subscriber_ids: Sequence[int], params: dict[str, str]) -> None:
    """Refuse a tag value the job would fail on, before anything is queued.

    Every target gets the same value, so setting it on the first one and rolling back answers
    for all of them, by the very rules ``set_tags`` applies (no second copy of them here).
    """
    first = Subscriber.objects.for_project(project).filter(pk__in=subscriber_ids[:1]).first()
    if first is None:
        return
    first.project = project
    try:
        with transaction.atomic():
            set_tags(
                project=project,
                subscriber=first,
                tags={params["tag_name"]: params.get("tag_value", "")},
                from_text=True,
            )
            raise _DryRun
    except _DryRun:
        pass


def run_bulk_job(*, job_id: int) -> None:
    """Work through a job's targets from where it stands. Safe to run twice: a finished job is left alone."""
    job = BulkJob.objects.select_related("project", "created_by").get(pk=job_id)
    if job.status in FINISHED or job.status == BulkStatus.DRAFT:
        return
    BulkJob.objects.filter(pk=job.pk).update(status=BulkStatus.RUNNING)
    actor = Actor(user=job.created_by, label="" if job.created_by else "bulk action")
    try:
        while True:
            with transaction.atomic():
                # The mark is read under a lock: two runs of one job never do a chunk twice.
                job = BulkJob.objects.select_for_update().select_related("project").get(pk=job_id)
                chunk = job.subscriber_ids[job.processed : job.processed + CHUNK]
                if not chunk:
                    break
                changed = _apply(job, chunk, actor)
                BulkJob.objects.filter(pk=job.pk).update(
                    processed=F("processed") + len(chunk), changed=F("changed") + changed
                )
    except InvalidInput as exc:
        _finish(job_id, BulkStatus.FAILED, f"Stopped: {exc.message}")
        return
    except Exception:
        # The actor retries from the mark; only when its retries are used up is the job failed
        # (fail_bulk_job).
        logger.exception("bulk job %s interrupted", job_id)
        raise
    _finish(job_id, BulkStatus.DONE, "")


def fail_bulk_job(*, job_id: int) -> None:
    _finish(
        job_id,
        BulkStatus.FAILED,
        "Stopped by an internal error after several attempts; the subscribers done so far stay done.",
    )


def _finish(job_id: int, status: str, error: str) -> None:
    BulkJob.objects.filter(pk=job_id).update(status=status, error=error, finished_at=timezone.now())


def _apply(job: BulkJob, ids: list[int], actor: Actor) -> int:
    project = job.project
    # Subscribers erased since the snapshot are simply gone: nothing to do for them.
    subscribers = list(Subscriber.objects.for_project(project).filter(pk__in=ids).order_by("pk"))
    for subscriber in subscribers:
        subscriber.project = project  # the services read subscriber.project; spare a query per row
    params = job.params
    if job.action == "add_tag":
        tags = {params["tag_name"]: params.get("tag_value", "")}
        return sum(set_tags(project=project, subscriber=s, tags=tags, from_text=True) for s in subscribers)
    if job.action == "opt_out":
        return sum(
            change_consent(
                subscriber=s,
                channel=ConsentChannel.WHATSAPP,
                state=ConsentState.OPTED_OUT,
                source=ConsentSource.PANEL,
                evidence=params.get("evidence", ""),
                actor=actor,
            )
            is not None
            for s in subscribers
        )
    for subscriber in subscribers:
        erase_subscriber(subscriber=subscriber, actor=actor)
    return len(subscribers)


def summary(job: BulkJob) -> str:
    """What the job did, in the words the panel used to flash after a bulk action."""
    changed, unchanged = _n(job.changed), _n(job.processed - job.changed)
    if job.action == "add_tag":
        name, value = job.params.get("tag_name", ""), job.params.get("tag_value", "")
        args = {"name": name, "value": value, "changed": changed, "unchanged": unchanged}
        if job.processed - job.changed:
            return (
                ngettext(
                    "Tag “%(name)s” set to “%(value)s” on %(changed)s subscriber; "
                    "%(unchanged)s had it already.",
                    "Tag “%(name)s” set to “%(value)s” on %(changed)s subscribers; "
                    "%(unchanged)s had it already.",
                    job.changed,
                )
                % args
            )
        return (
            ngettext(
                "Tag “%(name)s” set to “%(value)s” on %(changed)s subscriber.",
                "Tag “%(name)s” set to “%(value)s” on %(changed)s subscribers.",
                job.changed,
            )
            % args
        )
    if job.action == "opt_out":
        args = {"changed": changed, "unchanged": unchanged}
        if job.processed - job.changed:
            return (
                ngettext(
                    "%(changed)s subscriber opted out of WhatsApp; %(unchanged)s were opted out already.",
                    "%(changed)s subscribers opted out of WhatsApp; %(unchanged)s were opted out already.",
                    job.changed,
                )
                % args
            )
        return (
            ngettext(
                "%(changed)s subscriber opted out of WhatsApp.",
                "%(changed)s subscribers opted out of WhatsApp.",
                job.changed,
            )
            % args
        )
    return ngettext(
        "%(changed)s subscriber erased with their tags, events and consent.",
        "%(changed)s subscribers erased with their tags, events and consent.",
        job.changed,
    ) % {"changed": changed}


def _n(number: int) -> str:
    """A count for people: grouped as the active language groups (1,234 / 1.234)."""
    return number_format(number, force_grouping=True)
