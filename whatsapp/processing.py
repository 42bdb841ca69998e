"""Turning stored webhook deliveries into state: statuses, inbound messages, consent, templates.

Every handler is idempotent: replaying the whole inbox twice leaves the same
database state (inbound messages are keyed by their wamid, consent changes are
no-ops when unchanged, statuses only move forward downstream). Unknown fields
and fields we do not handle are kept in the raw delivery and never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from controlpanel.services import Actor
from controlpanel.sql import must_retry_whole
from subscribers.errors import InvalidInput
from subscribers.models import ConsentChannel, ConsentSource, ConsentState, Event, Subscriber
from subscribers.services import NewEvent, change_consent, record_events
from subscribers.upsert import Item, phone_from_wa_id, upsert_subscriber

from .keywords import fold as fold_keyword
from .models import MessageTemplate, PhoneNumberEvent, WebhookDelivery, WhatsAppAccount
from .schemas import MalformedBody, parse_envelope
from .signals import InboundMessage, StatusUpdate, inbound_received, status_received, statuses_received

logger = logging.getLogger(__name__)
WHATSAPP = Actor(label="WhatsApp")
# A quick-reply button whose text or payload says stop, e.g. "Stop promotions" or STOP_PROMOS.
STOP_BUTTON = re.compile(r"(?<![a-z])(stop|stopp|abmelden|unsubscribe)(?![a-z])", re.IGNORECASE)


def _ts(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError):
        return timezone.now()


def normalize_text(text: str) -> str:
    """Upper-case, whitespace collapsed, surrounding punctuation dropped: " hilfe! " -> "HILFE"."""
    text = unicodedata.normalize("NFKC", text or "")
    return " ".join(text.split()).strip(" .!?¡¿,;:-_*\"'").upper()


def process_delivery(delivery: WebhookDelivery) -> None:
    """Apply one stored webhook body. Safe to run again for the same delivery."""
    try:
        envelope = parse_envelope(delivery.body)
    except MalformedBody as exc:
        mark_malformed(delivery, str(exc))
        return
    account = delivery.account
    signals: list = []
    with transaction.atomic():
        for entry in envelope.entry:
            for change in entry.changes:
                field, value = change.field, change.value
                if not _for_this_account(account, entry.waba_id, value):
                    _notice(
                        account,
                        field,
                        "Ignored a webhook for another phone number or account",
                        change.model_dump(mode="json"),
                    )
                    continue
                handle_change(account, field, value, signals)
        # Receivers run inside this delivery's transaction: if one fails, the delivery is
        # retried as a whole instead of being marked processed with its statuses lost.
        # They only write to the database and defer anything external with on_commit.
        for send in signals:
            send()
        WebhookDelivery.objects.filter(pk=delivery.pk).update(processed_at=timezone.now(), error="")
        WhatsAppAccount.objects.filter(pk=account.pk).update(last_webhook_at=delivery.received_at)


def mark_malformed(delivery: WebhookDelivery, reason: str) -> None:
    """Done with a body no retry can fix: processed (never retried), flagged and kept as received,
    so an admin sees it on the settings page."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        processed_at=timezone.now(), malformed=True, error=reason[:2000]
    )


def _for_this_account(account: WhatsAppAccount, waba_id: str, value: dict) -> bool:
    """A Meta app may be subscribed to several numbers; only this account's changes count here."""
    number = str((value.get("metadata") or {}).get("phone_number_id") or "")
    if number:
        return number == account.phone_number_id
    return not waba_id or waba_id == account.waba_id


MAX_ATTEMPTS = 5
# A batch that loses lock cycles this many times in one call gives up (the next call retries):
# each loss means another worker made progress on the same rows.
MAX_VICTIM_RETRIES = 10


def process_pending(account_id: int, *, limit: int = 5000, batch: int = 100) -> int:
    """Process unprocessed deliveries of one account, oldest first; returns how many.

    Deliveries are claimed in batches with SELECT ... FOR UPDATE SKIP LOCKED (only
    the delivery rows), so several workers can drain the same account without
    doing a delivery twice. Consecutive deliveries that carry only statuses are
    applied together, set-based (see process_status_deliveries); any other delivery
    runs in its own savepoint, as does every delivery of a status run that failed
    as a whole. One that keeps failing is retried MAX_ATTEMPTS times, then left
    with its error. Arrival order is kept, so the outcome is the same either way.

    A batch holds the rows it locked until its commit, so two workers applying statuses to the
    same messages and counters can lock them in opposite orders; PostgreSQL then picks one as
    the victim of the cycle. Retrying the victim's deliveries one by one inside the same
    transaction would keep its other locks and meet the cycle again (and again), so the victim's
    whole batch is rolled back instead and claimed anew, attempts untouched.
    """
    done = 0
    victims = 0
    while done < limit:
        try:
            taken = _process_batch(account_id, min(batch, limit - done))
        except _Victim:
            victims += 1
            if victims > MAX_VICTIM_RETRIES:
                raise
            logger.info("webhook batch of account %s lost a lock cycle; claimed again", account_id)
            continue
        if not taken:
            return done
        done += taken
    return done


class _Victim(Exception):
    """A batch's transaction was chosen as the victim of a lock cycle (rolled back as a whole)."""


def _process_batch(account_id: int, size: int) -> int:
    """Claim up to ``size`` deliveries and apply them in one transaction; how many (0: none left)."""
    try:
        with transaction.atomic():
            claimed = list(
                WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(account_id=account_id, processed_at__isnull=True, attempts__lt=MAX_ATTEMPTS)
                .order_by("received_at", "id")
                .select_related("account__project")
                # EncryptedTextField decrypts when a row is loaded, so with the join every claimed
                # delivery paid for decrypting both secrets (~10% of processing time), and nothing
                # here reads them.
                .defer("account__access_token", "account__app_secret")[:size]
            )
            if not claimed:
                return 0
            # All rows are this account's: one instance for the batch, so a handler that does
            # read a secret loads and decrypts it once per batch, not once per delivery.
            account = claimed[0].account
            for delivery in claimed:
                delivery.account = account
            run: list[tuple[WebhookDelivery, list[StatusUpdate]]] = []
            for delivery in claimed:
                updates = _status_only(delivery)
                if updates is not None:
                    run.append((delivery, updates))
                    continue
                _process_status_run(run)
                run = []
                _process_one(delivery)
            _process_status_run(run)
            return len(claimed)
    except DatabaseError as exc:  # the claim itself, or the commit
        if must_retry_whole(exc):
            raise _Victim from exc
        raise


def _process_one(delivery: WebhookDelivery) -> None:
    try:
        with transaction.atomic():
            process_delivery(delivery)
    except Exception as exc:
        if must_retry_whole(exc):
            raise _Victim from exc
        logger.exception("webhook delivery %s failed", delivery.pk)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            attempts=delivery.attempts + 1, error=f"{type(exc).__name__}: {exc}"[:2000]
        )


def _process_status_run(run: list[tuple[WebhookDelivery, list[StatusUpdate]]]) -> None:
    if not run:
        return
    try:
        with transaction.atomic():
            process_status_deliveries(run)
    except Exception as exc:
        if must_retry_whole(exc):
            raise _Victim from exc
        # Nothing of the run was written (savepoint); one by one, a bad delivery fails alone.
        logger.warning("status batch of %d deliveries failed, retrying one by one", len(run), exc_info=True)
        for delivery, _ in run:
            _process_one(delivery)


def _status_only(delivery: WebhookDelivery) -> list[StatusUpdate] | None:
    """The status updates of a delivery that holds nothing else for this account, else None.

    None sends the delivery down the general path: a malformed body (marked there), inbound
    messages, errors, other fields, another phone number's changes (recorded as notices).
    """
    try:
        envelope = parse_envelope(delivery.body)
    except MalformedBody:
        return None
    account = delivery.account
    updates = []
    for entry in envelope.entry:
        for change in entry.changes:
            value = change.value
            if (
                change.field != "messages"
                or value.get("messages")
                or value.get("errors")
                or not _for_this_account(account, entry.waba_id, value)
            ):
                return None
            updates += [_status_update(account, status) for status in value.get("statuses") or []]
    return updates


def process_status_deliveries(run: list[tuple[WebhookDelivery, list[StatusUpdate]]]) -> None:
    """Apply status-only deliveries of one account (from _status_only) at once, in arrival order.

    Writes what process_delivery would for each, in a few statements for all: receivers
    of statuses_received get every update in one call (the outbox applies them set-based),
    then status_received is sent per update with in_batch=True, as process_delivery sends
    it. Safe to run again, like process_delivery.
    """
    updates = tuple(update for _, delivery_updates in run for update in delivery_updates)
    if updates:
        statuses_received.send(sender=None, updates=updates)
        for update in updates:
            status_received.send(sender=None, update=update, in_batch=True)
    WebhookDelivery.objects.filter(pk__in=[delivery.pk for delivery, _ in run]).update(
        processed_at=timezone.now(), error=""
    )
    latest = max(delivery.received_at for delivery, _ in run)
    # Conditional: a worker draining older deliveries concurrently must not move it back.
    WhatsAppAccount.objects.filter(pk=run[0][0].account_id).filter(
        Q(last_webhook_at__isnull=True) | Q(last_webhook_at__lt=latest)
    ).update(last_webhook_at=latest)


def handle_change(account: WhatsAppAccount, field: str, value: dict, signals: list) -> None:
    if field == "messages":
        contacts = value.get("contacts") or []
        for status in value.get("statuses") or []:
            update = _status_update(account, status)
            signals.append(lambda u=update: status_received.send(sender=None, update=u))
        for message in value.get("messages") or []:
            handle_inbound(account, message, contacts, signals)
        for error in value.get("errors") or []:
            _notice(
                account, field, f"Meta reported error {error.get('code')}: {error.get('title', '')}", error
            )
    elif field == "user_preferences":
        for pref in value.get("user_preferences") or []:
            handle_user_preference(account, pref, value.get("contacts") or [])
    elif field == "message_template_status_update":
        handle_template_status(account, value)
    elif field == "message_template_quality_update":
        _template_for(account, value).update(quality_score=str(value.get("new_quality_score") or ""))
    elif field == "template_category_update":
        new = str(value.get("new_category") or value.get("correct_category") or "")
        if new:
            _template_for(account, value).update(
                category=new, previous_category=str(value.get("previous_category") or "")
            )
    elif field == "phone_number_quality_update":
        handle_quality_update(account, value)
    else:
        _notice(account, field, f"{field or 'unknown'} update from Meta", value)


def _status_update(account: WhatsAppAccount, status: dict) -> StatusUpdate:
    return StatusUpdate(
        project_id=account.project_id,
        account_id=account.pk,
        wamid=str(status.get("id") or ""),
        status=str(status.get("status") or ""),
        timestamp=_ts(status.get("timestamp")),
        recipient_id=str(status.get("recipient_id") or ""),
        recipient_user_id=str(status.get("recipient_user_id") or ""),
        callback_data=str(status.get("biz_opaque_callback_data") or ""),
        errors=tuple(status.get("errors") or ()),
        pricing=dict(status.get("pricing") or {}),
    )


# What WhatsApp tells us about a user only fills blanks: a marketer's name and number win.
WHATSAPP_FILLS = frozenset({"phone", "name"})


def find_or_create_contact(account: WhatsAppAccount, *, wa_id: str, bsuid: str, profile_name: str) -> int:
    """The id of the subscriber behind a WhatsApp user, created on first contact (consent unknown).

    Through the one upsert (subscribers.upsert) with the rules every path applies: the BSUID
    names the subscriber first, then the phone (the WhatsApp id, normalized as every path
    normalizes phones); Meta's ids are kept current, the profile name and the number only fill
    blanks; a new subscriber records ``Subscribed`` with source "whatsapp".
    """
    item = Item(
        phone=phone_from_wa_id(wa_id),
        wa_id=wa_id,
        bsuid=bsuid or None,
        profile={"name": profile_name[:200]} if profile_name else {},
        fills=WHATSAPP_FILLS,
    )
    subscriber_id, _ = upsert_subscriber(
        project=account.project, item=item, source="whatsapp", actor=WHATSAPP
    )
    return subscriber_id


def _contact_for(message: dict, contacts: list[dict]) -> dict:
    sender = message.get("from") or ""
    for contact in contacts:
        if contact.get("wa_id") == sender or (
            contact.get("user_id") and contact.get("user_id") == message.get("from_user_id")
        ):
            return contact
    return contacts[0] if len(contacts) == 1 else {}


def inbound_attributes(message: dict) -> dict[str, Any]:
    """The WhatsAppReceived event attributes of an inbound message of any type (section 4.3)."""
    type_ = str(message.get("type") or "unknown")
    body = message.get(type_) if isinstance(message.get(type_), dict) else {}
    text = ""
    button_payload = button_text = ""
    if type_ == "text":
        text = str(body.get("body") or "")
    elif type_ == "button":
        button_payload, button_text = str(body.get("payload") or ""), str(body.get("text") or "")
        text = button_text
    elif type_ == "interactive":
        reply = body.get(body.get("type") or "") or {}
        button_payload, button_text = str(reply.get("id") or ""), str(reply.get("title") or "")
        text = button_text
    elif type_ in ("image", "video", "document", "audio", "sticker"):
        text = str(body.get("caption") or body.get("filename") or "")
    elif type_ == "location":
        text = " ".join(str(body.get(k) or "") for k in ("name", "address")).strip()
    elif type_ == "reaction":
        text = str(body.get("emoji") or "")
    elif type_ == "system":
        text = str(body.get("body") or "")
    elif type_ == "contacts":
        names = [((c.get("name") or {}).get("formatted_name") or "") for c in message.get("contacts") or []]
        text = ", ".join(n for n in names if n)
    attributes: dict[str, Any] = {
        "text": text[:4096],
        "normalized_text": normalize_text(text)[:4096],
        "type": type_,
        "message_id": str(message.get("id") or ""),
    }
    if button_payload or button_text:
        attributes["button_payload"] = button_payload
        attributes["button_text"] = button_text
    context = message.get("context") or {}
    if context.get("id"):
        attributes["context_message_id"] = str(context["id"])
    if message.get("referral"):
        attributes["referral"] = json.dumps(message["referral"], sort_keys=True)[:2000]
    if type_ == "reaction" and body.get("message_id"):
        attributes["context_message_id"] = str(body["message_id"])
    if body.get("id") and type_ in ("image", "video", "document", "audio", "sticker"):
        attributes["media_id"] = str(body["id"])
        attributes["mime_type"] = str(body.get("mime_type") or "")
    if type_ == "location":
        attributes["latitude"] = body.get("latitude")
        attributes["longitude"] = body.get("longitude")
    if type_ == "unsupported" or message.get("errors"):
        first = (message.get("errors") or [{}])[0]
        attributes["error_code"] = first.get("code")
    return attributes


def handle_inbound(account: WhatsAppAccount, message: dict, contacts: list[dict], signals: list) -> None:
    message_id = str(message.get("id") or "")
    project = account.project
    dedup_key = f"wa:{message_id}" if message_id else None
    if dedup_key and Event.objects.for_project(project).filter(dedup_key=dedup_key).exists():
        return  # processed before (Meta retry or replay): no side effect twice
    contact = _contact_for(message, contacts)
    wa_id = str(message.get("from") or contact.get("wa_id") or "")
    bsuid = str(message.get("from_user_id") or contact.get("user_id") or "")
    if not wa_id and not bsuid:
        logger.warning("inbound message %s without sender id", message_id)
        return
    subscriber_id = find_or_create_contact(
        account, wa_id=wa_id, bsuid=bsuid, profile_name=str((contact.get("profile") or {}).get("name") or "")
    )
    when = _ts(message.get("timestamp"))
    attributes = inbound_attributes(message)
    received = NewEvent(subscriber_id, "WhatsAppReceived", attributes, when, dedup_key)
    recorded = record_events(project=project, events=[received])[0]
    if isinstance(recorded, InvalidInput):
        raise recorded
    event = recorded.event
    # The 24-hour window runs from the latest message; an old retry must not move it back.
    Subscriber.objects.filter(pk=subscriber_id).filter(
        Q(last_inbound_at__isnull=True) | Q(last_inbound_at__lt=when)
    ).update(last_inbound_at=when)
    consent_change = ""
    if message.get("type") != "system":
        consent_change = _apply_keywords(account, subscriber_id, message, attributes, when)
    payload = InboundMessage(
        project_id=project.pk,
        account_id=account.pk,
        subscriber_id=subscriber_id,
        event_id=event.pk,
        message_id=message_id,
        type=attributes["type"],
        text=attributes["text"],
        normalized_text=attributes["normalized_text"],
        button_payload=attributes.get("button_payload", ""),
        timestamp=when,
        consent_change=consent_change,
        context_message_id=attributes.get("context_message_id", ""),
    )
    signals.append(lambda: inbound_received.send(sender=None, message=payload))


def _apply_keywords(
    account: WhatsAppAccount, subscriber_id: int, message: dict, attributes: dict, when: datetime
) -> str:
    """Apply opt-out/opt-in keywords and stop buttons; returns the new state if consent changed.

    The text is folded as journeys fold keywords (``whatsapp.keywords``), not as ``normalized_text``
    (upper-cased, accents kept): "Stópp" is reserved for consent in journeys, so it must opt out.
    """
    word = fold_keyword(attributes["text"])
    is_stop_button = message.get("type") in ("button", "interactive") and bool(
        STOP_BUTTON.search(attributes.get("button_text", "") + " " + attributes.get("button_payload", ""))
    )
    if word in account.opt_out_words() or is_stop_button:
        state, how = (
            ConsentState.OPTED_OUT,
            "tapped “{}”".format(attributes.get("button_text"))
            if is_stop_button
            else f"sent “{attributes['text']}”",
        )
    elif word in account.opt_in_words():
        state, how = ConsentState.OPTED_IN, f"sent “{attributes['text']}”"
    else:
        return ""
    change = change_consent(
        subscriber=Subscriber.objects.select_related("project").get(pk=subscriber_id),
        channel=ConsentChannel.WHATSAPP,
        state=state,
        source=ConsentSource.KEYWORD,
        evidence=f"{how} on WhatsApp at {when:%Y-%m-%d %H:%M:%S} UTC (message {attributes['message_id']}).",
        actor=WHATSAPP,
        at=when,
    )
    return str(state) if change is not None else ""


def handle_user_preference(account: WhatsAppAccount, pref: dict, contacts: list[dict]) -> None:
    value = str(pref.get("value") or "").lower()
    state = {"stop": ConsentState.OPTED_OUT, "resume": ConsentState.OPTED_IN}.get(value)
    if state is None:
        return
    wa_id = str(pref.get("wa_id") or "")
    contact = next((c for c in contacts if c.get("wa_id") == wa_id), contacts[0] if contacts else {})
    subscriber_id = find_or_create_contact(
        account,
        wa_id=wa_id,
        bsuid=str(pref.get("user_id") or contact.get("user_id") or ""),
        profile_name=str((contact.get("profile") or {}).get("name") or ""),
    )
    when = _ts(pref.get("timestamp"))
    detail = str(pref.get("detail") or value)
    change_consent(
        subscriber=Subscriber.objects.select_related("project").get(pk=subscriber_id),
        channel=ConsentChannel.WHATSAPP,
        state=state,
        source=ConsentSource.META_PREFERENCE,
        evidence=f"WhatsApp marketing preference “{value}” at {when:%Y-%m-%d %H:%M:%S} UTC: {detail}",
        actor=WHATSAPP,
        at=when,
    )


def _template_for(account: WhatsAppAccount, value: dict):
    templates = MessageTemplate.objects.filter(account=account)
    meta_id = str(value.get("message_template_id") or "")
    by_id = templates.filter(meta_id=meta_id) if meta_id else templates.none()
    if by_id.exists():
        return by_id
    return templates.filter(
        name=str(value.get("message_template_name") or ""),
        language=str(value.get("message_template_language") or ""),
    )


def handle_template_status(account: WhatsAppAccount, value: dict) -> None:
    event = str(value.get("event") or "")
    if not event:
        return
    reason = str(value.get("reason") or "")
    info = value.get("rejection_info") or value.get("other_info") or {}
    detail = " ".join(str(v) for v in info.values()) if isinstance(info, dict) else str(info)
    updated = _template_for(account, value).update(
        status=event, rejected_reason="" if reason == "NONE" else reason, rejection_detail=detail
    )
    if not updated:
        _notice(
            account,
            "message_template_status_update",
            f"Template {value.get('message_template_name')} is now {event}",
            value,
        )


def handle_quality_update(account: WhatsAppAccount, value: dict) -> None:
    event = str(value.get("event") or "")
    limit = str(value.get("current_limit") or value.get("max_daily_conversations_per_business") or "")
    fields = {}
    if limit:
        fields["messaging_tier"] = limit
    if event in ("FLAGGED", "UNFLAGGED", "UPGRADE", "DOWNGRADE", "ONBOARDING"):
        fields["quality_rating"] = {"FLAGGED": "RED", "UNFLAGGED": "GREEN"}.get(event, account.quality_rating)
    if fields:
        WhatsAppAccount.objects.filter(pk=account.pk).update(**fields)
    _notice(
        account,
        "phone_number_quality_update",
        f"Phone number quality: {event or 'update'} {limit}".strip(),
        value,
    )


def _notice(account: WhatsAppAccount, field: str, summary: str, payload: dict) -> None:
    # Keyed by content, so a replayed delivery does not add the same notice twice.
    fingerprint = hashlib.sha256(
        json.dumps([field, payload], sort_keys=True, default=str).encode()
    ).hexdigest()
    PhoneNumberEvent.objects.get_or_create(
        account=account,
        fingerprint=fingerprint,
        defaults={
            "project_id": account.project_id,
            "field": field[:60],
            "summary": summary[:300],
            "payload": payload,
        },
    )
