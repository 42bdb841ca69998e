"""The email and push sender (ADR 0008): dispatcher tick, batch claim, policy, transport, write-back.

The WhatsApp sender's mechanics (``sending.py``, ADR 0006), reused where they fit:

1. ``dispatch`` (every second, and kicked after a row is written) leases due ``queued`` rows of
   each channel with a registered transport (``sending._lease_due``: ``send_after`` a minute
   ahead, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, over the ``message_channel_due`` index) and
   enqueues ``send_channel_messages(ids, lease token)`` per batch (``EMAIL_SEND_BATCH``,
   ``PUSH_SEND_BATCH``). There are no accounts and no per-second slots: a channel's budget is
   rows in flight (leased or sending, ``CHANNEL_SEND_IN_FLIGHT_BATCHES`` batches), so a slow SMTP
   server holds only its own batches and the broker holds a bounded number of ids.
2. ``send_batch`` claims them (``sending._claim``: ``queued -> sending``, one conditional UPDATE
   ... RETURNING, only rows due or carrying this lease, only email and push rows), loads them with
   their subscribers in one query, asks ``sendpolicy.decide`` (consent of the row's channel,
   the one frequency cap, quiet hours), marks the sendable rows "posting" in one committed
   statement (``sending._mark_posting``) and hands them to the channel's transport per project.
   Every row is written back in one statement, only where it is still ``sending``.
3. Crashes: a row claimed and never marked posting was never handed to a transport: the sweeper
   queues it again after a minute (``sending.requeue_unposted``). A marked row may have gone out:
   the sweeper moves it to ``unknown`` (``sending.sweep_stuck``), and it is never resent (email
   and push rows are never campaign rows, so ``resend_unknown`` leaves them alone).

Outcomes per ``channels.Delivery``: ok -> ``sent`` (provider id stored); retry -> ``queued`` after
``retry_after`` or the WhatsApp backoff (2 s x 4^n, at most 10 min), ``failed`` at
``sending.MAX_ATTEMPTS``; permanent -> ``failed`` with the provider's code (``error_title``; also
``error_code`` when it is a number, such as an SMTP reply code) and words (``reason``); unknown ->
``unknown``. A transport that raises posted nothing (its contract): the project's rows are retried
as above.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from controlpanel.models import Project
from whatsapp.errors import retry_delay

from . import channels, sending, sendpolicy
from .channels import Delivery
from .models import Channel, Message, MessageStatus
from .outcomes import Hold, Skip
from .sending import CHANNEL_ROWS, LEASE, MAX_ATTEMPTS, _Batch, _Row

logger = logging.getLogger(__name__)

# Rows per broker message: an SMTP connection sends about a hundred mails in the time FCM takes
# five hundred concurrent requests. Settings ``EMAIL_SEND_BATCH`` / ``PUSH_SEND_BATCH`` override.
BATCH_SIZES = {Channel.EMAIL: 100, Channel.PUSH: 500}
IN_FLIGHT_BATCHES = 16  # per channel, leased or sending at once (``CHANNEL_SEND_IN_FLIGHT_BATCHES``)
KICK_GAP = 0.2  # seconds: kicks closer together than this from one process ask for one dispatch


def batch_size(channel: str) -> int:
    return max(1, getattr(settings, f"{channel.upper()}_SEND_BATCH", BATCH_SIZES.get(channel, 100)))


def _in_flight_limit(channel: str) -> int:
    batches = getattr(settings, "CHANNEL_SEND_IN_FLIGHT_BATCHES", IN_FLIGHT_BATCHES)
    return batch_size(channel) * max(1, batches)


# --- dispatcher --------------------------------------------------------------------------------

# ``channel <> 'whatsapp'`` as well as the channel itself: it lets PostgreSQL match the partial
# index ``message_channel_due`` whatever the parameter's value.
_SCOPE = f"channel = %s AND {CHANNEL_ROWS}"


def dispatch(now: datetime | None = None) -> int:
    """Lease due queued rows of every channel with a transport and enqueue them in batches; returns
    rows leased. Safe to run concurrently and twice: a row is leased by one dispatcher."""
    now = now or timezone.now()
    lease = now + LEASE
    batches: list[list[int]] = []
    with transaction.atomic():
        if not _single_flight():
            return 0
        for channel in channels.channels():
            budget = _in_flight_limit(channel) - sending._in_flight(_SCOPE, [channel], now)
            if budget > 0:
                ids = sending._lease_due(_SCOPE, [channel], budget, now, lease)
                batches += sending._chunks(ids, batch_size(channel))
        if batches:
            token = lease.isoformat()
            transaction.on_commit(lambda: _enqueue(batches, token))
    return sum(len(b) for b in batches)


# pg_try_advisory_xact_lock's key: "chnl" in ASCII, the channel dispatcher's alone.
DISPATCH_LOCK = 0x63686E6C


def _single_flight() -> bool:
    """One channel dispatch at a time (PostgreSQL; SQLite has one writer anyway). Measured: when
    workers came back to a backlog of kicks, eight dispatches at once each scanned and sorted the
    same 50,000 queued rows under FOR UPDATE SKIP LOCKED and the database spent 4 ms of CPU per
    message. A dispatch that finds another running leaves: that one leases, the next tick the rest."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [DISPATCH_LOCK])
        return bool(cursor.fetchone()[0])


def _enqueue(batches: list[list[int]], token: str) -> None:
    from .actors import send_channel_messages

    for batch in batches:
        send_channel_messages.send(batch, token)


_last_kick = 0.0


def kick() -> None:
    """Ask for a dispatch soon (after the caller's commit); the scheduler's tick sends anyway.

    A journey writing thousands of rows kicks once per row: one dispatch per ``KICK_GAP`` from a
    process is enough (a row a dispatch did not see goes at the next tick, within a second)."""
    transaction.on_commit(_kick_now)


def _kick_now() -> None:
    global _last_kick
    from .actors import dispatch_channel_messages

    now = time.monotonic()
    if now - _last_kick < KICK_GAP:
        return
    _last_kick = now
    dispatch_channel_messages.send()


# --- one batch ---------------------------------------------------------------------------------


def send_batch(message_ids: Sequence[int], leased_until: str | None = None) -> dict[str, int]:
    """Claim, decide, send through the channel's transport and write back a batch; counts by outcome.

    Safe to run twice and concurrently: only rows this call claims are sent, a row is claimed once.
    ``leased_until``: the dispatcher's lease token (its rows are claimable although not yet due).
    """
    now = timezone.now()
    lease = datetime.fromisoformat(leased_until) if leased_until else None
    ids = sorted({int(i) for i in message_ids})
    claimed = sending._claim(ids, now, lease, rows=CHANNEL_ROWS)
    if lease is not None and len(claimed) < len(ids):
        sending._release(sorted(set(ids) - set(claimed)), lease)
    if not claimed:
        return {}
    messages = _load(claimed)
    batch = _Batch(now=now, rows={m.pk: _Row(m) for m in messages})
    handed: set[int] = set()  # rows a transport holds right now: they may have gone out
    try:
        groups: dict[tuple[int, str], list[Message]] = defaultdict(list)
        for message in _sendable(batch, messages):
            groups[(message.project_id, message.channel)].append(message)
        for rows in groups.values():
            _send(batch, rows, handed)
    finally:
        # Every claimed row is written back whatever happened above (a time limit interrupts a
        # transport): rows a transport held without an answer may have gone out, so they become
        # ``unknown``; the others go back to the queue.
        for row in batch.rows.values():
            if "status" in row.fields:
                continue
            if row.message.pk in handed:
                batch.finish(row.message, MessageStatus.UNKNOWN, "stopped while sending",
                             reason=UNANSWERED, attempts=row.message.attempts + 1)  # fmt: skip
            else:
                batch.requeue(row.message, None)
        if batch.rows:  # empty when the sweeper took every row back meanwhile
            sending._write_back(batch)
    return dict(batch.counts)


# Stored in English on the row (pages translate it when they show it).
UNANSWERED = gettext_noop("Sending stopped before the provider answered; it may or may not have gone out.")


def _load(ids: list[int]) -> list[Message]:
    """The claimed rows with their subscribers (one query) and their projects (one query, shared
    instances: a transport reads the project's settings once per batch)."""
    messages = list(Message.objects.filter(pk__in=ids).select_related("subscriber").order_by("pk"))
    projects = Project.objects.in_bulk({m.project_id for m in messages})
    for message in messages:
        message.project = projects[message.project_id]
    return messages


def _sendable(batch: _Batch, messages: list[Message]) -> list[Message]:
    """The rows to hand to a transport now; every other row gets its outcome here (skip, hold)."""
    decisions = sendpolicy.decide(messages, batch.now)
    sendable = []
    for message in messages:
        outcome = decisions.get(message.pk)
        if isinstance(outcome, Skip):
            batch.finish(message, MessageStatus.SKIPPED, "policy", reason=outcome.reason)
        elif isinstance(outcome, Hold):
            batch.requeue(message, outcome.until, f"held: {outcome.reason}")
        else:
            sendable.append(message)
    return sendable


def _send(batch: _Batch, rows: list[Message], handed: set[int]) -> None:
    """Rows of one project and one channel through the channel's transport, the outcomes recorded."""
    # Committed before the transport sees them: a row still carrying the claim's mark was never
    # handed over (requeue_unposted may queue it again). A row the sweeper took back meanwhile is
    # someone else's now: not sent, and not written back by this batch.
    ours = sending._mark_posting([m.pk for m in rows])
    for message in rows:
        if message.pk not in ours:
            del batch.rows[message.pk]
    rows = [m for m in rows if m.pk in ours]
    if not rows:
        return
    channel = rows[0].channel
    transport = channels.transport_for(channel)
    handed.update(m.pk for m in rows)
    try:
        if transport is None:
            raise LookupError(f"no transport registered for channel {channel}")
        deliveries = transport.send(rows[0].project, rows)
    except Exception as exc:  # the transport's contract: nothing of the batch was posted
        logger.exception("%s transport failed for a batch of %d messages", channel, len(rows))
        failure = f"The {channel} transport failed ({type(exc).__name__})."
        deliveries = [Delivery(ok=False, retry=True, error=failure)] * len(rows)
    handed.difference_update(m.pk for m in rows)
    if len(deliveries) != len(rows):
        # A transport bug: which row went out cannot be told, so none is resent.
        logger.error("%s transport answered %d times for %d messages", channel, len(deliveries), len(rows))
        deliveries = [Delivery(ok=False, unknown=True, error=UNANSWERED)] * len(rows)
    for message, delivery in zip(rows, deliveries, strict=True):
        _record(batch, message, delivery)


def _record(batch: _Batch, message: Message, delivery: Delivery) -> None:
    attempts = message.attempts + 1
    if delivery.ok:
        batch.finish(message, MessageStatus.SENT, f"accepted by the {message.channel} provider",
                     provider_message_id=delivery.provider_message_id[:300], sent_at=timezone.now(),
                     reason="", attempts=attempts)  # fmt: skip
        return
    if delivery.unknown:
        batch.finish(message, MessageStatus.UNKNOWN, "no answer from the provider",
                     reason=delivery.error or UNANSWERED, attempts=attempts)  # fmt: skip
        return
    code = delivery.error_code.strip()
    # error_code is an integer column (Meta's codes): a numeric provider code (SMTP's 550) fits it.
    numeric = int(code) if code.isdecimal() and len(code) < 10 else None
    errors = {"error_code": numeric, "error_title": code[:300]}
    if delivery.retry and attempts < MAX_ATTEMPTS:
        wait = delivery.retry_after if delivery.retry_after is not None else retry_delay(None, attempts)
        batch.requeue(message, batch.now + timedelta(seconds=max(wait, 0.0)),
                      f"retry after {'error ' + code if code else 'an error'}",
                      reason=delivery.error, attempts=attempts, **errors)  # fmt: skip
        return
    batch.finish(message, MessageStatus.FAILED, f"error {code}" if code else "failed",
                 reason=delivery.error or gettext_noop("The provider refused the message."),
                 failed_at=timezone.now(), attempts=attempts, **errors)  # fmt: skip
