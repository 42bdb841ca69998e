"""Sending WhatsApp messages through the outbox, and applying Meta's status webhooks to it."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from controlpanel.models import Project
from controlpanel.services import Actor
from subscribers.models import ConsentState, Subscriber
from subscribers.services import NewEvent, record_event, record_events
from whatsapp import placeholders
from whatsapp.errors import ErrorKind, GraphError, explain, retry_delay
from whatsapp.models import AccountStatus, MessageTemplate, TemplateCategory, WhatsAppAccount
from whatsapp.signals import InboundMessage, StatusUpdate

from . import counters, policy
from .models import PROGRESS, Channel, Message, MessageKind, MessageStatus

logger = logging.getLogger(__name__)


class SendRefused(Exception):
    """A policy says no; the message is not created. ``str()`` is the reason for humans.

    ``code`` is machine-readable for the API (``send_refused`` unless a more specific one fits).
    """

    def __init__(self, message: str, *, code: str = "send_refused"):
        super().__init__(message)
        self.code = code


class IdempotencyConflict(SendRefused):
    """The idempotency key was used before for a different request: answering with that earlier
    message would tell the caller something was sent that they did not ask for."""

    def __init__(self, message: str):
        super().__init__(message, code="idempotency_conflict")


def idempotent_message(project: Project, idempotency_key: str, request_hash: str = "") -> Message | None:
    """The message sent earlier with this key, or None. Raises IdempotencyConflict when it was sent
    for another request (``request_hash`` given and different from the stored one)."""
    existing = Message.objects.for_project(project).filter(idempotency_key=idempotency_key).first()
    if existing is not None and request_hash and existing.request_hash != request_hash:
        raise IdempotencyConflict(
            _(
                "The idempotency key %(key)s was already used for a different request "
                "(message %(message)s). Use a new key for a new message, or repeat the "
                "original request exactly to get its message back."
            )
            % {"key": repr(idempotency_key), "message": existing.public_id}
        )
    return existing


def insert_once(message: Message, request_hash: str = "") -> Message:
    """Write a new outbox row; when a concurrent call with the same idempotency key won the insert,
    answer that call's row, as if it had come first. The one rule for every channel's send service
    (``send_whatsapp``, ``mail.services.send_email``, ``push.services.send_push``)."""
    try:
        with transaction.atomic():
            message.save(force_insert=True)
    except IntegrityError:
        key = message.idempotency_key
        existing = idempotent_message(message.project, key, request_hash) if key else None
        if existing is None:
            raise
        return existing
    return message


def _history(status: str, note: str = "", at: datetime | None = None) -> dict[str, str]:
    entry = {"status": status, "at": (at or timezone.now()).isoformat()}
    if note:
        entry["note"] = note
    return entry


def default_account(project: Project) -> WhatsAppAccount | None:
    return WhatsAppAccount.objects.for_project(project).order_by("created_at").first()


def _recipient(subscriber: Subscriber) -> str:
    return subscriber.phone or subscriber.wa_id or subscriber.bsuid or ""


@transaction.atomic
def send_whatsapp(
    *,
    project: Project,
    subscriber: Subscriber,
    actor: Actor,
    template: MessageTemplate | None = None,
    components: list[dict[str, Any]] | None = None,
    text: str | None = None,
    account: WhatsAppAccount | None = None,
    idempotency_key: str | None = None,
    request_hash: str = "",
    values: dict[str, Any] | None = None,
) -> Message:
    """Queue one template or text message for a subscriber; a worker sends it.

    Refuses (SendRefused, nothing written) when a policy forbids it: opted out,
    no opt-in for marketing, free-form text outside the 24-hour window, template
    not approved, parameters not fitting the template. With ``idempotency_key``
    the same key returns the same message instead of sending twice; with
    ``request_hash`` too (the API's), a key reused for another request raises
    IdempotencyConflict. ``values`` are kept with the message (what bindings read).
    """
    if subscriber.project_id != project.pk:
        raise SendRefused(_("The subscriber belongs to another project."))
    if idempotency_key:
        existing = idempotent_message(project, idempotency_key, request_hash)
        if existing is not None:
            return existing
    account = account or (template.account if template else None) or default_account(project)
    if account is None or account.project_id != project.pk:
        raise SendRefused(_("No WhatsApp account is connected to this project."))
    if account.status == AccountStatus.SUSPENDED:
        raise SendRefused(
            _("Sending is stopped for %(account)s: %(reason)s")
            % {"account": account, "reason": account.status_reason}
        )
    if (template is None) == (text is None):
        raise SendRefused(_("Send either a template or a text."))
    if template is not None:
        if template.account_id != account.pk:
            raise SendRefused(_("The template belongs to another WhatsApp account."))
        reason = policy.refusal_for_template(subscriber, template)
        mismatch = "" if reason else policy.parameter_mismatch(template, components or [])
        if mismatch:
            raise SendRefused(mismatch, code="parameter_mismatch")
    else:
        body = (text or "").strip()
        reason = policy.refusal_for_text(subscriber) or ("" if body else _("The message is empty."))
        if len(body) > 4096:
            reason = _("A WhatsApp text may have at most 4,096 characters.")
    if reason:
        raise SendRefused(policy.for_people(reason))
    message = insert_once(
        Message(
            project=project,
            subscriber=subscriber,
            channel=Channel.WHATSAPP,
            account=account,
            kind=MessageKind.TEMPLATE if template else MessageKind.TEXT,
            template=template,
            template_name=template.name if template else "",
            template_language=template.language if template else "",
            components=components or [],
            body=(text or "").strip() if template is None else render_template(template, components or []),
            marketing=bool(template and template.category == TemplateCategory.MARKETING),
            idempotency_key=idempotency_key or None,
            request_hash=request_hash if idempotency_key else "",
            values=values or {},
            history=[_history(MessageStatus.QUEUED, f"by {actor.display}")],
        ),
        request_hash,
    )
    from .sending import kick_one

    kick_one(message.pk)  # the dispatcher's tick sends it anyway if this broker message is lost
    return message


def render_template(template: MessageTemplate, components: list[dict[str, Any]]) -> str:
    """The body text with parameters filled in, for the conversation view."""
    values: dict[str, str] = {}
    for component in components:
        if str(component.get("type", "")).lower() == "body":
            for i, param in enumerate(component.get("parameters") or [], start=1):
                key = param.get("parameter_name") or str(i)
                values[key] = str(
                    param.get("text") or (param.get("currency") or {}).get("fallback_value") or ""
                )
    body = next(
        (c.get("text", "") for c in template.components if str(c.get("type", "")).upper() == "BODY"), ""
    )
    return placeholders.fill(body, values)


def deliver(message_id: int) -> str:
    """Send one queued message now, through the batch path (sending.send_batch with one id).

    Returns the status it ended in, or "not-queued" when it was not ours to send. Idempotent:
    a second run finds it claimed and does nothing.
    """
    from .sending import send_one

    return send_one(message_id)


STATUS_EVENTS = {"delivered": "WhatsAppDelivered", "read": "WhatsAppRead", "failed": "WhatsAppFailed"}
TIMESTAMP_FIELDS = {"sent": "sent_at", "delivered": "delivered_at", "read": "read_at", "failed": "failed_at"}


def _status_changes(message: Message, update: StatusUpdate) -> dict[str, Any]:
    """The fields ``update`` changes on ``message`` as it is now; empty when it changes nothing.

    The one folding rule for apply_status and apply_statuses: sent < delivered < read;
    failed is terminal and may arrive late (after sent or delivered, not after read).
    Timestamps missing so far are filled in either way; pricing is kept.
    """
    fields: dict[str, Any] = {}
    timestamp_field = TIMESTAMP_FIELDS.get(update.status)
    if timestamp_field and getattr(message, timestamp_field) is None:
        fields[timestamp_field] = update.timestamp
    if update.wamid and not message.wamid:
        fields["wamid"] = update.wamid
    if update.pricing:
        pricing: dict[str, Any] = {
            "pricing_category": str(update.pricing.get("category") or ""),
            "pricing_type": str(update.pricing.get("type") or ""),
        }
        if "billable" in update.pricing:
            pricing["billable"] = bool(update.pricing["billable"])
        fields.update({name: value for name, value in pricing.items() if getattr(message, name) != value})
    current = message.status
    new_status = None
    if update.status == "failed":
        if current not in (
            MessageStatus.FAILED,
            MessageStatus.READ,
            MessageStatus.SKIPPED,
            MessageStatus.QUEUED,
        ):
            new_status = MessageStatus.FAILED
            error = GraphError.from_webhook(update.errors[0]) if update.errors else GraphError(None)
            fields.update(
                error_code=error.code,
                error_title=error.title[:300],
                error_details=error.details,
                reason=explain(error.code, error.title),
            )
            if error.kind == ErrorKind.RETRY_LATER and message.error_code != error.code:
                # 131049 arrives here, after Meta accepted the POST: one more try after 24 h (never
                # sooner), then failed for good; the code on the row says the retry was had.
                new_status = MessageStatus.QUEUED
                fields["send_after"] = timezone.now() + timedelta(seconds=retry_delay(error.code, 1))
    elif (
        update.status in ("sent", "delivered", "read")
        and current in PROGRESS
        and PROGRESS[MessageStatus(update.status)] > PROGRESS[MessageStatus(current)]
    ):
        new_status = update.status
    if new_status:
        fields["status"] = new_status
        fields["history"] = [*message.history, _history(new_status, "webhook", update.timestamp)]
    return fields


def _status_event(message: Message, update: StatusUpdate, fields: dict[str, Any]) -> tuple[str, dict] | None:
    """The event (name, attributes) a status records when it moved the message, else None."""
    name = STATUS_EVENTS.get(update.status)
    if name is None or "status" not in fields:
        return None
    attributes: dict[str, Any] = {"message_id": update.wamid, "template": message.template_name}
    if update.status == "failed" and fields.get("error_code") is not None:
        attributes.update(error_code=fields["error_code"], error_title=fields["error_title"])
    return name, attributes


def _status_dedup_key(update: StatusUpdate) -> str:
    return f"st:{update.wamid}:{update.status}"


def _callback_id(update: StatusUpdate) -> uuid.UUID | None:
    return _uuid(update.callback_data[2:]) if update.callback_data.startswith("m:") else None


def apply_status(update: StatusUpdate) -> Message | None:
    """Move a message forward by a status webhook. Duplicates and reordering change nothing.

    sent < delivered < read; failed is terminal and may arrive late (after sent or
    delivered, not after read). Timestamps missing so far are filled in either way.
    """
    lookup = Q(wamid=update.wamid) if update.wamid else Q(pk=None)
    if update.callback_data.startswith("m:"):
        lookup |= Q(public_id=_callback_id(update))
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(project_id=update.project_id)
            .filter(lookup)
            .select_related("subscriber")
            .first()
        )
        if message is None:
            return None
        fields = _status_changes(message, update)
        if not fields:
            return message
        Message.objects.filter(pk=message.pk).update(**fields, updated_at=timezone.now())
        counters.apply_moves([(counters.state(message), counters.state(message, **fields))])
        _reopen_retried([(message, fields)])
        event = _status_event(message, update, fields)
        if event is not None:
            record_event(
                project=message.subscriber.project,
                subscriber=message.subscriber,
                name=event[0],
                attributes=event[1],
                occurred_at=update.timestamp,
                dedup_key=_status_dedup_key(update),
            )
    return message


def apply_statuses(updates: Sequence[StatusUpdate]) -> list[Message]:
    """Apply many status webhooks in their order, ending exactly where apply_status one by one would.

    Set-based, a few statements whatever the number: one SELECT ... FOR UPDATE of all
    their messages, the fold in Python, one bulk UPDATE, and the new events through
    ``record_events`` (one query for the keys seen before, one INSERT). Idempotent like
    apply_status. Returns the messages that changed.
    """
    by_project: dict[int, list[StatusUpdate]] = {}
    for update in updates:
        by_project.setdefault(update.project_id, []).append(update)
    changed: list[Message] = []
    # No savepoint of its own: on error the caller's transaction or savepoint rolls back anyway.
    with transaction.atomic(savepoint=False):
        for project_id, project_updates in by_project.items():
            changed += _apply_project_statuses(project_id, project_updates)
    return changed


def _apply_project_statuses(project_id: int, updates: list[StatusUpdate]) -> list[Message]:
    wamids = {u.wamid for u in updates if u.wamid}
    public_ids = {public_id for u in updates if (public_id := _callback_id(u)) is not None}
    # Locked in primary-key order, so workers locking overlapping sets wait for each other
    # instead of deadlocking; only the message rows (nothing here writes the subscriber).
    messages = list(
        Message.objects.select_for_update(of=("self",))
        .filter(project_id=project_id)
        .filter(Q(wamid__in=wamids) | Q(public_id__in=public_ids))
        .order_by("pk")
    )
    by_wamid = {m.wamid: m for m in messages if m.wamid}
    by_public_id = {m.public_id: m for m in messages}
    # As locked: what the counters count of each row before this batch (campaigns/counters.py).
    before = {m.pk: counters.state(m) for m in messages if m.campaign_id is not None}
    changed: dict[int, tuple[Message, set[str]]] = {}
    # dedup key -> (message, name, attributes, occurred_at); the first wins, as with record_event.
    events: dict[str, tuple[Message, str, dict, datetime]] = {}
    for update in updates:
        found = [
            m for m in (by_wamid.get(update.wamid), by_public_id.get(_callback_id(update))) if m is not None
        ]
        if not found:
            continue
        # apply_status's lookup takes the first by primary key when wamid and callback disagree.
        message = min(found, key=lambda m: m.pk)
        fields = _status_changes(message, update)
        if not fields:
            continue
        event = _status_event(message, update, fields)
        if event is not None:
            events.setdefault(_status_dedup_key(update), (message, *event, update.timestamp))
        for name, value in fields.items():
            setattr(message, name, value)
        if "wamid" in fields:
            by_wamid[message.wamid] = message  # later updates may name it by its new wamid
        changed.setdefault(message.pk, (message, set()))[1].update(fields)
    if not changed:
        return []
    now = timezone.now()
    for message, fields in changed.values():
        message.updated_at = now
        fields.add("updated_at")
    _update_changed(list(changed.values()))
    counters.apply_moves((before[m.pk], counters.state(m)) for m, _ in changed.values() if m.pk in before)
    _reopen_retried(list(changed.values()))
    _record_status_events(project_id, events)
    return [message for message, _ in changed.values()]


def _reopen_retried(rows) -> None:
    """A 131049 webhook queued a campaign row again (retry in 24 h): its campaign runs until then."""
    campaign_ids = {m.campaign_id for m, fields in rows if m.campaign_id and m.status == MessageStatus.QUEUED}
    if campaign_ids:
        from .progress import reopen

        reopen(campaign_ids)


def _update_changed(
    rows: list[tuple[Message, set[str]]], *, where_status: str | None = None, returning: str = ""
) -> list[tuple]:
    """Write each message's changed fields in one UPDATE (a few on SQLite, for its parameter limit).

    What QuerySet.bulk_update writes, one CASE per column keyed by id, but only the
    messages that changed that column get a branch, and the SQL is put together as
    text: bulk_update resolves an ORM expression per message and column, which took
    three quarters of the time of a status batch. Values are prepared by their fields
    as save() prepares them; the CASE is cast to the column type where the backend
    needs it, as bulk_update does. With ``where_status`` only rows still in that status change
    (the sender writes back only what a status webhook has not moved meanwhile). With
    ``returning`` (SQL column expressions) the changed rows' values of them are returned.
    """
    qn = connection.ops.quote_name
    meta = Message._meta
    pk = qn(meta.pk.column)
    names = sorted(set().union(*(fields for _, fields in rows)))
    # As many messages as the backend takes parameters for (two per column): all on PostgreSQL.
    batch_size = max(connection.ops.bulk_batch_size(["pk", "pk", *names], rows), 1)
    returned: list[tuple] = []
    for chunk in itertools.batched(rows, batch_size):
        assignments, params = [], []
        for name in names:
            field = meta.get_field(name)
            column = qn(field.column)
            branches = []
            for message, fields in chunk:
                if name in fields:
                    branches.append("WHEN %s THEN %s")
                    params += [
                        message.pk,
                        field.get_db_prep_save(getattr(message, field.attname), connection),
                    ]
            if not branches:
                continue  # no message of this chunk changed it
            case = f"CASE {pk} {' '.join(branches)} ELSE {column} END"
            if connection.features.requires_casted_case_in_updates:
                case = f"CAST({case} AS {field.cast_db_type(connection)})"
            assignments.append(f"{column} = {case}")
        params += [message.pk for message, _ in chunk]
        condition = ""
        if where_status is not None:
            condition = f" AND {qn(meta.get_field('status').column)} = %s"
            params.append(where_status)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {qn(meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608 - names from code
                f"WHERE {pk} IN ({', '.join(['%s'] * len(chunk))}){condition}"
                + (f" RETURNING {returning}" if returning else ""),
                params,
            )
            if returning:
                returned += cursor.fetchall()
    return returned


def _record_status_events(project_id: int, events: dict[str, tuple[Message, str, dict, datetime]]) -> None:
    """Record the status events through the audience's one event service (deduplicated by key)."""
    if not events:
        return
    project = Project.objects.get(pk=project_id)
    record_events(
        project=project,
        events=[
            NewEvent(
                message.subscriber_id,
                name,
                attributes,
                occurred_at if timezone.is_aware(occurred_at) else timezone.make_aware(occurred_at, UTC),
                key,
            )
            for key, (message, name, attributes, occurred_at) in events.items()
        ],
    )


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def on_status_received(sender, update: StatusUpdate, in_batch: bool = False, **kwargs) -> None:
    if not in_batch:  # batched updates were applied by on_statuses_received
        apply_status(update)


# Connected here rather than in CampaignsConfig.ready, which imports this module.
def on_statuses_received(sender, updates: Sequence[StatusUpdate], **kwargs) -> None:
    apply_statuses(updates)


def on_inbound_received(sender, message: InboundMessage, **kwargs) -> None:
    """Confirm an opt-out or opt-in by keyword with one text, sent once per inbound message."""
    if not message.consent_change:
        return
    account = WhatsAppAccount.objects.filter(pk=message.account_id).select_related("project").first()
    subscriber = Subscriber.objects.filter(pk=message.subscriber_id).first()
    if account is None or subscriber is None:
        return
    from whatsapp import automatic_texts

    opted_out = message.consent_change == ConsentState.OPTED_OUT
    kind = automatic_texts.OPT_OUT if opted_out else automatic_texts.OPT_IN
    # The subscriber's Language tag picks the project's text (exact, base language, English).
    text = automatic_texts.text_for(account.project, kind, subscriber.language)
    if not text.strip():
        return
    try:
        send_whatsapp(
            project=account.project,
            subscriber=subscriber,
            actor=Actor(label="Consent confirmation"),
            text=text,
            account=account,
            idempotency_key=f"consent-confirmation:{message.message_id}",
        )
    except SendRefused as exc:
        logger.info("no consent confirmation for subscriber %s: %s", subscriber.pk, exc)


def on_sending_resumed(sender, account_id: int, **kwargs) -> None:
    """The account's waiting rows go out at the next dispatcher tick; kick it so it is now."""
    from .sending import kick

    kick()
