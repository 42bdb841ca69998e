"""A campaign's life: launch, the audience snapshot at its time, pause, resume, cancel, test sends.

Each action locks the campaign row, checks the transition, writes it and an audit entry in one
transaction. Lifecycle changes act on the campaign and on ``queued`` rows only (ADR 0005): a
paused or cancelled campaign's rows are never claimed, because the sender's claim joins the
campaign's status, so "pause" needs no write to the outbox and "resume" continues where it stopped.

The snapshot (one INSERT ... SELECT, fanout.py) runs in an actor, not in the request: the
scheduler calls ``start_due`` every few seconds and a "send now" launch kicks it on commit.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from controlpanel.services import SYSTEM, Actor, record_audit
from controlpanel.wording import mid_sentence
from subscribers.errors import InvalidInput
from subscribers.models import Subscriber
from subscribers.phones import normalize_phone
from whatsapp.models import AccountStatus, MessageTemplate

from . import counters, fanout, policy, pricing, sendpolicy, services
from .models import AudienceKind, AudienceRow, Campaign, CampaignStatus, Message, MessageStatus, ScheduleKind
from .outcomes import Skip

logger = logging.getLogger(__name__)

ALLOWED_FROM = {
    "launch": {CampaignStatus.DRAFT},
    "pause": {CampaignStatus.SCHEDULED, CampaignStatus.RUNNING},
    "resume": {CampaignStatus.PAUSED},
    "cancel": {CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED},
}
# "A <status> campaign cannot be <verb>.", one whole sentence per action (languages order it differently).
NOT_ALLOWED = {
    "launch": gettext_lazy("A %(status)s campaign cannot be launched."),
    "pause": gettext_lazy("A %(status)s campaign cannot be paused."),
    "resume": gettext_lazy("A %(status)s campaign cannot be resumed."),
    "cancel": gettext_lazy("A %(status)s campaign cannot be cancelled."),
}


def _locked(campaign: Campaign, action: str) -> Campaign:
    """The campaign row, locked for this transaction; InvalidInput when ``action`` does not apply."""
    rows = Campaign.objects.select_for_update(of=("self",)).select_related("project", "account", "segment")
    current = rows.get(pk=campaign.pk)
    if current.status not in ALLOWED_FROM[action]:
        raise InvalidInput(
            NOT_ALLOWED[action] % {"status": mid_sentence(current.get_status_display())},
            field="status",
            code="invalid_transition",
        )
    return current


# ---- what lifecycle asks of drafts and rendering: one function each, so tests can replace them --


def _launch_problems(campaign: Campaign) -> list[str]:
    from . import drafts

    return drafts.launch_problems(campaign)


def _snapshot_templates(campaign: Campaign) -> dict:
    from . import drafts

    return drafts.snapshot_templates(campaign)


def _render_for(campaign: Campaign, subscriber: Subscriber):
    """What ``campaign`` sends to ``subscriber`` (rendering.Rendered), or a Skip with the reason.

    A draft has no template snapshot yet: it renders with the templates as they are now, as
    launch would snapshot them (InvalidInput when a language has no approved template).
    """
    from .bindings import contexts_for
    from .drafts import snapshot_templates
    from .rendering import CampaignRendering

    templates = campaign.templates_snapshot or snapshot_templates(campaign)
    given = campaign.given_recipients.filter(key__in=[subscriber.phone, subscriber.external_id]).first()
    context = contexts_for(campaign.project, [subscriber.pk])[subscriber.pk]
    return CampaignRendering(campaign, templates).render({**context, "values": given.values if given else {}})


# ---- actions ---------------------------------------------------------------------------------


@transaction.atomic
def launch(*, campaign: Campaign, actor: Actor) -> Campaign:
    """Draft -> scheduled: refuses (InvalidInput, nothing written) with every reason launch_problems
    gives. Stores what launch saw: the templates and the segment's rule, so editing or deleting
    them later does not change the campaign. The audience is snapshotted by ``start_due`` at the
    scheduled time, right after commit for "now". Not idempotent: a second launch is refused."""
    current = _locked(campaign, "launch")
    problems = _launch_problems(current)
    if problems:
        raise InvalidInput(" ".join(problems), code="not_launchable")
    now = timezone.now()
    current.templates_snapshot = _snapshot_templates(current) or current.templates_snapshot
    if current.audience_kind == AudienceKind.SEGMENT and current.segment is not None:
        current.rule = current.segment.rule
    current.status = CampaignStatus.SCHEDULED
    current.launched_at = now
    current.status_reason = ""
    current.save(
        update_fields=["templates_snapshot", "rule", "status", "launched_at", "status_reason", "updated_at"]
    )
    record_audit(
        project=current.project,
        actor=actor,
        action="campaign.launch",
        obj=current,
        changes={"schedule": current.schedule_kind, "due_at": fanout.due_at(current, now).isoformat()},
    )
    if current.schedule_kind == ScheduleKind.NOW:
        from .launch_actors import start_due_campaigns

        transaction.on_commit(lambda: start_due_campaigns.send())
    return current


@transaction.atomic
def pause(*, campaign: Campaign, actor: Actor) -> Campaign:
    """Scheduled or running -> paused: nothing more is claimed (the claim joins the status)."""
    current = _locked(campaign, "pause")
    current.status = CampaignStatus.PAUSED
    current.paused_at = timezone.now()
    current.save(update_fields=["status", "paused_at", "updated_at"])
    record_audit(project=current.project, actor=actor, action="campaign.pause", obj=current)
    return current


@transaction.atomic
def resume(*, campaign: Campaign, actor: Actor) -> Campaign:
    """Paused -> running (scheduled again when its audience was not snapshotted yet). Whatever paused
    it, a person resumes it; the account must be able to send, else it would pause again at once."""
    current = _locked(campaign, "resume")
    account = current.account
    if account is None:
        raise InvalidInput(
            _("The campaign's WhatsApp account was removed."), field="account", code="no_account"
        )
    if account.status == AccountStatus.SUSPENDED:
        raise InvalidInput(
            _("Sending is stopped for %(account)s: %(reason)s Resume the account first.")
            % {"account": account, "reason": account.status_reason},
            field="account",
            code="account_stopped",
        )
    previous_reason = current.status_reason
    current.status = CampaignStatus.RUNNING if current.snapshot_at else CampaignStatus.SCHEDULED
    current.status_reason = ""
    current.paused_at = None
    current.save(update_fields=["status", "status_reason", "paused_at", "updated_at"])
    changes = {"paused_because": previous_reason} if previous_reason else {}
    record_audit(project=current.project, actor=actor, action="campaign.resume", obj=current, changes=changes)
    return current


@transaction.atomic
def cancel(*, campaign: Campaign, actor: Actor) -> Campaign:
    """-> cancelled, for good: its queued rows become skipped ("campaign cancelled") in one UPDATE.
    Rows a sender already claimed finish; nothing else goes."""
    current = _locked(campaign, "cancel")
    now = timezone.now()
    skipped = _skip_queued(current, now)
    current.status = CampaignStatus.CANCELLED
    current.finished_at = now
    current.save(update_fields=["status", "finished_at", "updated_at"])
    record_audit(
        project=current.project,
        actor=actor,
        action="campaign.cancel",
        obj=current,
        changes={"skipped": skipped},
    )
    return current


def _skip_queued(campaign: Campaign, now: datetime) -> int:
    """queued -> skipped for the campaign's rows, and the counters by what the UPDATE moved.

    A sender may claim rows meanwhile, so the counter change comes from the statement itself:
    on PostgreSQL a data-modifying CTE groups its RETURNING; SQLite has no such CTE, but it
    returns the moved rows' groups to count here (SQLite holds small projects).
    """
    entry = {"status": MessageStatus.SKIPPED.value, "at": now.isoformat(), "note": "campaign cancelled"}
    table = connection.ops.quote_name(Message._meta.db_table)
    if connection.vendor == "postgresql":
        history = "history || jsonb_build_array(CAST(%s AS jsonb))"
    else:
        history = "json_insert(history, '$[#]', json(%s))"
    update = (
        f"UPDATE {table} SET status = %s, reason = %s, updated_at = %s, history = {history} "  # noqa: S608
        "WHERE campaign_id = %s AND status = %s "
        "RETURNING pricing_category, billable, replied_at, clicked_at"
    )
    params = [
        MessageStatus.SKIPPED.value,
        sendpolicy.CANCELLED,
        connection.ops.adapt_datetimefield_value(now),
        json.dumps(entry),
        campaign.pk,
        MessageStatus.QUEUED.value,
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"WITH moved AS ({update}) SELECT pricing_category, billable IS FALSE, COUNT(*), "  # noqa: S608
                "COUNT(replied_at), COUNT(clicked_at) FROM moved GROUP BY 1, 2",
                params,
            )
            groups = cursor.fetchall()
        else:
            # Raw columns: SQLite 3.40 gets ``x IS NOT NULL`` wrong in RETURNING (counters.RETURNING).
            cursor.execute(update, params)
            seen = Counter(
                (c or "", counters.is_free(b), r is not None, k is not None)
                for c, b, r, k in cursor.fetchall()
            )
            groups = [(c, f, n, n if r else 0, n if k else 0) for (c, f, r, k), n in seen.items()]
    delta = counters.Delta()
    for category, free, n, replied, clicked in groups:
        for status, sign in ((MessageStatus.QUEUED, -1), (MessageStatus.SKIPPED, 1)):
            delta.add(
                campaign.pk,
                status,
                category,
                bool(free),
                n=sign * n,
                replied=sign * replied,
                clicked=sign * clicked,
            )
    delta.apply()
    return sum(n for _, _, n, _, _ in groups)


def start_due(now: datetime | None = None) -> int:
    """Snapshot the audience of every launched campaign whose time has come; scheduled -> running.

    The scheduler tick (every few seconds) and a "now" launch call it through an actor. Safe to run
    twice at once: each campaign is started under its row lock, and only while still scheduled.
    Returns how many campaigns started.
    """
    now = now or timezone.now()
    started = 0
    # Few rows: the scheduled campaigns of every project (partial index campaign_active).
    for campaign in Campaign.objects.filter(status=CampaignStatus.SCHEDULED).select_related("project"):
        if fanout.due_at(campaign, now) > now:
            continue
        try:
            if _start(campaign.pk):
                started += 1
        except Exception:
            # One broken campaign must not hold up the others; the next tick tries it again.
            logger.exception("campaign %s: snapshot failed", campaign.pk)
    return started


@transaction.atomic
def _start(campaign_id: int) -> bool:
    rows = Campaign.objects.select_for_update(of=("self",)).select_related("project", "account", "segment")
    campaign = rows.get(pk=campaign_id)
    if campaign.status != CampaignStatus.SCHEDULED:
        return False
    now = timezone.now()
    try:
        with transaction.atomic():
            written = fanout.snapshot(campaign, now)
    except InvalidInput as exc:
        # The rule no longer compiles (a tag it names was deleted): a person must look at it.
        campaign.status = CampaignStatus.PAUSED
        campaign.paused_at = now
        campaign.status_reason = f"The audience could not be computed: {exc.message}"
        campaign.save(update_fields=["status", "paused_at", "status_reason", "updated_at"])
        record_audit(
            project=campaign.project,
            actor=SYSTEM,
            action="campaign.pause",
            obj=campaign,
            changes={"reason": campaign.status_reason},
        )
        return False
    # Outbox rows and the audience rows the start-due tick writes as outbox rows (materialize.py).
    audience = Message.objects.filter(campaign=campaign).count()
    campaign.audience_size = audience + AudienceRow.objects.filter(campaign=campaign).count()
    cost, currency = pricing.estimate_queued(campaign)
    campaign.estimated_cost, campaign.currency = cost, currency
    campaign.status = CampaignStatus.RUNNING
    campaign.snapshot_at = now
    campaign.save(
        update_fields=["audience_size", "estimated_cost", "currency", "status", "snapshot_at", "updated_at"]
    )
    record_audit(
        project=campaign.project,
        actor=SYSTEM,
        action="campaign.start",
        obj=campaign,
        changes={"audience_size": campaign.audience_size, "written": written},
    )
    return True


@transaction.atomic
def test_send(*, campaign: Campaign, phone: str, actor: Actor) -> Message:
    """Send what ``campaign`` would send to the subscriber with ``phone``, now, as a single message
    (no campaign row, so it does not count in the campaign's figures). It bypasses nothing:
    consent and the template's state are checked as for any send, and a refusal says why
    (InvalidInput). The phone must be a subscriber of the project (the simulator's handsets are)."""
    project = campaign.project
    e164 = normalize_phone(phone, project.default_country, field="phone")
    subscriber = Subscriber.objects.for_project(project).filter(phone=e164).first()
    if subscriber is None:
        raise InvalidInput(
            _("No subscriber of this project has the number %(phone)s: add them first.") % {"phone": e164},
            field="phone",
            code="unknown",
        )
    rendered = _render_for(campaign, subscriber)
    if isinstance(rendered, Skip):
        raise InvalidInput(
            _("Not sent to %(phone)s: %(reason)s")
            % {"phone": e164, "reason": policy.for_people(rendered.reason)},
            field="phone",
            code="refused",
        )
    template = MessageTemplate.objects.for_project(project).filter(pk=rendered.template_id).first()
    if template is None:
        raise InvalidInput(
            _("The template %(name)s no longer exists.") % {"name": campaign.template_name},
            field="template_name",
            code="refused",
        )
    try:
        message = services.send_whatsapp(
            project=project,
            subscriber=subscriber,
            actor=actor,
            template=template,
            components=rendered.components,
            account=campaign.account,
        )
    except services.SendRefused as exc:
        raise InvalidInput(
            _("Not sent to %(phone)s: %(reason)s") % {"phone": e164, "reason": exc},
            field="phone",
            code="refused",
        ) from None
    record_audit(
        project=project,
        actor=actor,
        action="campaign.test_send",
        obj=campaign,
        changes={"phone": e164, "message": str(message.public_id), "language": rendered.language},
    )
    return message
