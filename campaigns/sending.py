"""The batched sender: dispatcher tick, batch claim, send slots, concurrent POSTs, bulk write-back.

Design section 4 and ADR 0005. The flow of one outbox row:

1. ``dispatch`` (every second, and kicked after a launch) leases due ``queued`` rows by moving their
   ``send_after`` a minute ahead (``LEASE``) in one UPDATE ... RETURNING (FOR UPDATE SKIP LOCKED on
   PostgreSQL) and puts their ids on the ``send`` queue, a few hundred per broker message. A lost
   broker message only delays: the rows are due again when the lease runs out. It leases about
   ``LOOKAHEAD`` seconds of the number's throughput at a time, so rows do not wait on the broker
   for slots that are not there.
2. ``send_batch`` claims them with one conditional UPDATE (``queued -> sending``, only rows that are
   due or carry this lease, only of running campaigns or none, only of active accounts); what it
   did not get belongs to someone else. Loads what sending needs in one query, asks
   ``sendpolicy.decide`` and ``rendering.render_batch``, reserves send slots for the whole batch
   (``whatsapp.ratelimit``), POSTs concurrently on a thread pool, and writes every row back in one
   UPDATE that only touches rows still ``sending`` (a status webhook may have been faster).
3. A crash between a POST and the write-back leaves rows ``sending``; ``sweep_stuck`` moves them to
   ``unknown`` and a status webhook with our ``biz_opaque_callback_data`` settles them. Nothing is
   resent blindly: only a campaign row no webhook settled within ``UNKNOWN_RESEND_AFTER`` is queued
   again, once (``resend_unknown``).
4. Every statement that moves campaign rows also updates their counters in its transaction
   (counters.py): the claim, the write-back and the sweeper from their ``RETURNING``.

Errors (reference 5.4): transient -> queued again with backoff in ``send_after`` (up to
MAX_ATTEMPTS); 130429 -> the number pauses (``NUMBER_BACKOFF``) and the row is queued behind the
pause without counting an attempt; 131049 -> one retry after 24 h, then failed; permanent -> failed
with Meta's code and explanation; account-level -> the account stops (AccountStatus.SUSPENDED) and
its running campaigns pause themselves (progress.pause_for_error); template-level (paused, disabled,
missing) -> the campaigns sending that template pause, single sends of it fail. Rows of a stop go
back to queued.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, F, JSONField
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.translation import gettext_noop

from whatsapp import async_client, ratelimit
from whatsapp.async_client import NotPosted as _NotPosted
from whatsapp.client import GraphClient, SendResult, template_payload, text_payload
from whatsapp.errors import (
    THROUGHPUT_CODE,
    AmbiguousSendError,
    ErrorKind,
    GraphError,
    retry_delay,
    template_level,
)
from whatsapp.models import AccountStatus, MessageTemplate, TemplateStatus, WhatsAppAccount

from . import counters, progress, rendering, sendpolicy
from .models import Campaign, CampaignStatus, Message, MessageKind, MessageStatus
from .outcomes import Hold, Skip

logger = logging.getLogger(__name__)

# Stored in English on the row (pages translate it when they show it).
UNEXPECTED = gettext_noop("Sending ended in an unexpected error; it may or may not have reached Meta.")

LEASE = timedelta(minutes=1)
BATCH_SIZE = 200  # ids per broker message
LOOKAHEAD = 2.0  # seconds of a number's throughput the dispatcher keeps leased or in flight
STUCK_AFTER = timedelta(minutes=10)
MAX_ATTEMPTS = 6  # POSTs that ended in a transient error; the next one fails the row
# Seconds a whole number pauses after Meta's 130429 (longer when refusals follow pauses, see
# ratelimit.back_off). Short: the slots are already cut below the limit (PACE), so a 130429 is a
# burst of calls that reached Meta late together; a pause of a few dozen milliseconds lets Meta's
# second drain by more than that burst. Only the calls whose slots fall inside the pause are handed
# back, so its cost is its length: 0.5 s cost 10-25 % of the 2-core benchmark box's throughput
# (docs/benchmarks.md, "130429 pauses the number, not the batch").
NUMBER_BACKOFF = 0.05


def _threads() -> int:
    return settings.WHATSAPP_SEND_THREADS


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    # One pool per process: HTTP only, no database work happens on its threads.
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="wa-send")
        return _pool


# --- dispatcher --------------------------------------------------------------------------------


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _dt(value: datetime | None) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


MESSAGE = Message._meta.db_table
# Which sender a row belongs to: this one, or channel_sending's (email, push).
WHATSAPP_ROWS = "channel = 'whatsapp'"
CHANNEL_ROWS = "channel <> 'whatsapp'"
CAMPAIGN = Campaign._meta.db_table
ACCOUNT = WhatsAppAccount._meta.db_table


def _lease(where: str, params: list[Any], order: str, limit: int, lease: datetime) -> list[int]:
    """Move ``send_after`` of up to ``limit`` queued rows matching ``where`` to ``lease``; their ids."""
    if limit <= 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_lease_sql(where, order), [*params, limit, _dt(lease)])
        return [row[0] for row in cursor.fetchall()]


def _lease_sql(where: str, order: str) -> str:
    # A materialized CTE, not ``id IN (SELECT ... LIMIT ... FOR UPDATE SKIP LOCKED)``: PostgreSQL may
    # rescan such a subquery for the outer UPDATE and then lease far more rows than the limit.
    # On PostgreSQL the UPDATE finds the picked rows by primary key alone, whatever the planner
    # estimates: a campaign launched after the table's last ANALYZE is estimated at one row, and
    # ``status = 'queued' AND id IN (SELECT id FROM picked)`` became a walk of every queued row (a
    # partial index of queued rows fits that test) against the CTE, 10 s for 2,000 of 30,000 rows
    # (docs/benchmarks.md). The picked rows are locked, so they are still queued.
    if connection.vendor == "postgresql":
        lock, rows = " FOR UPDATE SKIP LOCKED", "id = ANY(ARRAY(SELECT id FROM picked))"
    else:  # SQLite: one writer at a time
        lock, rows = "", "status = 'queued' AND id IN (SELECT id FROM picked)"
    return (
        f"WITH picked AS MATERIALIZED (SELECT id FROM {_q(MESSAGE)} "  # noqa: S608 - names from code
        f"WHERE status = 'queued' AND {where} ORDER BY {order} LIMIT %s{lock}) "
        f"UPDATE {_q(MESSAGE)} SET send_after = %s WHERE {rows} RETURNING id"
    )


def _lease_due(scope: str, params: list[Any], limit: int, now: datetime, lease: datetime) -> list[int]:
    # Two statements instead of one OR, so that each is a range scan of a (.., send_after, id) index:
    # rows due since a time first (held, retried, expired leases), then rows with no time at all.
    ids = _lease(f"{scope} AND send_after <= %s", [*params, _dt(now)], "send_after, id", limit, lease)
    # "send_after, id" although send_after is NULL in every row here: that order is the index's, so
    # PostgreSQL reads the first rows of the range and stops. With "id" it read and sorted every
    # queued row of the range, or walked the primary key through all sent rows (160 ms at 50,000).
    return ids + _lease(f"{scope} AND send_after IS NULL", params, "send_after, id", limit - len(ids), lease)


def _in_flight(scope: str, params: list[Any], now: datetime) -> int:
    """Rows matching ``scope`` (an account's, a channel's) leased but not yet claimed, plus rows
    being sent right now."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT COUNT(*) FROM {_q(MESSAGE)} WHERE status = 'queued' AND {scope} "  # noqa: S608
            f"AND send_after > %s AND send_after <= %s) + (SELECT COUNT(*) FROM {_q(MESSAGE)} "
            f"WHERE status = 'sending' AND {scope} AND sending_at > %s)",
            [*params, _dt(now), _dt(now + LEASE), *params, _dt(now - LEASE)],
        )
        return int(cursor.fetchone()[0])


def dispatch(now: datetime | None = None) -> int:
    """Lease due queued rows and put them on the ``send`` queue in batches; returns rows leased.

    Due: ``send_after`` empty or past; the row's campaign running (or no campaign); its account
    active. A number paused after a 130429 is leased as usual: its batches reserve slots from the
    pause's end (``ratelimit.reserve``), so they are ready when it ends. Single sends (API,
    composer, confirmations) go first, then the running campaigns of the account share what is
    left of its throughput, each at most at its own throttle. Safe to run concurrently and twice: a
    row is leased by one dispatcher.
    """
    now = now or timezone.now()
    lease = now + LEASE
    batches: list[list[int]] = []
    accounts = list(
        WhatsAppAccount.objects.filter(status=AccountStatus.ACTIVE).only(
            "id", "phone_number_id", "throughput_mps"
        )
    )
    campaigns: dict[int, list[Campaign]] = defaultdict(list)
    for campaign in (
        Campaign.objects.filter(status=CampaignStatus.RUNNING, account__status=AccountStatus.ACTIVE)
        .only("id", "account_id", "throttle_mps")
        .order_by("id")
    ):
        campaigns[campaign.account_id].append(campaign)
    with transaction.atomic():
        for account in accounts:
            in_flight = _in_flight("account_id = %s", [account.pk], now)
            budget = math.ceil(max(account.throughput_mps, 1) * LOOKAHEAD) - in_flight
            if budget <= 0:
                continue
            singles = _lease_due("account_id = %s AND campaign_id IS NULL", [account.pk], budget, now, lease)
            batches += _chunks(singles)
            budget -= len(singles)
            running = campaigns.get(account.pk, [])
            for i, campaign in enumerate(running):
                if budget <= 0:
                    break
                share = math.ceil(budget / (len(running) - i))  # what the earlier ones left is shared on
                if campaign.throttle_mps:
                    share = min(share, math.ceil(campaign.throttle_mps * LOOKAHEAD))
                ids = _lease_due("campaign_id = %s", [campaign.pk], share, now, lease)
                batches += _chunks(ids)
                budget -= len(ids)
        # WhatsApp rows whose account was removed: the batch skips them with the reason. (Email and
        # push rows have no account either: channel_sending.dispatch sends those.)
        batches += _chunks(
            _lease_due(
                f"{WHATSAPP_ROWS} AND account_id IS NULL AND (campaign_id IS NULL OR EXISTS (SELECT 1 FROM "  # noqa: S608
                f"{_q(CAMPAIGN)} c WHERE c.id = campaign_id AND c.status = 'running'))",
                [],
                BATCH_SIZE,
                now,
                lease,
            )
        )
        if batches:
            token = lease.isoformat()
            transaction.on_commit(lambda: _enqueue(batches, token))
    return sum(len(b) for b in batches)


def _chunks(ids: list[int], size: int = BATCH_SIZE) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _enqueue(batches: list[list[int]], token: str) -> None:
    from .actors import send_messages

    for batch in batches:
        send_messages.send(batch, token)


def kick() -> None:
    """Run the dispatcher soon (after the current transaction commits): a launch, a resume."""
    from .actors import dispatch_messages

    transaction.on_commit(lambda: dispatch_messages.send())


def kick_one(message_id: int) -> None:
    """Send one fresh row without waiting for the next tick (OTPs, replies); the tick is the fallback."""
    from .actors import send_messages

    transaction.on_commit(lambda: send_messages.send([message_id], None))


# --- one batch ---------------------------------------------------------------------------------


def _id_in(ids: Sequence[int]) -> str:
    # PostgreSQL: one array parameter (psycopg parses each placeholder on the client: 200 cost more
    # than the statement); SQLite has no arrays.
    if connection.vendor == "postgresql":
        return "id = ANY(%s::bigint[])"
    return f"id IN ({', '.join(['%s'] * len(ids))})"


def _id_params(ids: Sequence[int]) -> list[Any]:
    return [list(ids)] if connection.vendor == "postgresql" else list(ids)


def _claim(ids: Sequence[int], now: datetime, lease: datetime | None, rows: str = WHATSAPP_ROWS) -> list[int]:
    """queued -> sending for the rows of ``ids`` this worker may send now; the others are not ours.

    ``rows``: the channels this sender sends (a WhatsApp batch never claims an email, and back)."""
    if not ids:
        return []
    due = "send_after IS NULL OR send_after <= %s"
    params: list[Any] = [_dt(now), _dt(now), _dt(now), _dt(now)]
    if lease is not None:
        due += " OR send_after = %s"
        params.append(_dt(lease))
    sql = (
        f"UPDATE {_q(MESSAGE)} SET status = 'sending', sending_at = %s, updated_at = %s, "  # noqa: S608
        f"send_after = %s WHERE {_id_in(ids)} AND status = 'queued' AND {rows} AND ({due}) "
        f"AND (campaign_id IS NULL OR EXISTS (SELECT 1 FROM {_q(CAMPAIGN)} c "
        f"WHERE c.id = campaign_id AND c.status = 'running')) "
        f"AND (account_id IS NULL OR EXISTS (SELECT 1 FROM {_q(ACCOUNT)} a "
        f"WHERE a.id = account_id AND a.status = 'active')) RETURNING {counters.RETURNING}"
    )
    # The placeholders in order: SET (3), the id list, the due test. ``send_after = sending_at`` marks
    # a claimed row whose POST has not started (``_mark_posting`` clears it just before).
    params = [params[0], params[1], params[2], *_id_params(ids), *params[3:]]
    # The claim and its counter change commit together (the counters are exact at every commit):
    # on PostgreSQL in one statement (no transaction block, no second round trip).
    if connection.vendor == "postgresql":
        moves = counters.moves_sql("claimed", before="'queued'", after="'sending'")
        with connection.cursor() as cursor:
            cursor.execute(f"WITH claimed AS ({sql}){moves} SELECT id FROM claimed", params)  # noqa: S608
            return [row[0] for row in cursor.fetchall()]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        claimed = cursor.fetchall()
        counters.apply_moves(counters.status_moves(claimed, MessageStatus.QUEUED, MessageStatus.SENDING))
    return [row[0] for row in claimed]


def _release(ids: list[int], lease: datetime) -> None:
    """Rows leased for this batch but not claimable (their campaign paused meanwhile, their account
    stopped) are due again at once, so that a resume does not wait for the lease to run out."""
    sql = (
        f"UPDATE {_q(MESSAGE)} SET send_after = NULL "  # noqa: S608 - names from code
        f"WHERE {_id_in(ids)} AND status = 'queued' AND send_after = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*_id_params(ids), _dt(lease)])


@dataclass
class _Row:
    message: Message
    fields: set[str] = field(default_factory=set)
    # The minute of sent_at when claimed (a 131049 retry was sent before): the write-back moves it.
    sent_minute: datetime | None = None

    def __post_init__(self) -> None:
        self.sent_minute = counters.minute_of(self.message.sent_at)

    def set(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self.message, name, value)
            self.fields.add(name)


@dataclass
class _Batch:
    now: datetime
    rows: dict[int, _Row]
    counts: Counter = field(default_factory=Counter)
    stopped_accounts: dict[int, GraphError] = field(default_factory=dict)
    paused_templates: dict[tuple[int, str], GraphError] = field(default_factory=dict)
    # account id -> when its number's 130429 pause ends (None: not paused), read once per batch
    pause_ends: dict[int, datetime | None] = field(default_factory=dict)

    def finish(self, message: Message, status: str, note: str, **values: Any) -> None:
        from .services import _history

        row = self.rows[message.pk]
        row.set(status=status, history=[*message.history, _history(status, note, self.now)], **values)
        self.counts[status] += 1

    def requeue(self, message: Message, until: datetime | None, note: str = "", **values: Any) -> None:
        """Back to queued, not before ``until``; with a note in the history when it says something."""
        from .services import _history

        row = self.rows[message.pk]
        if note:
            values["history"] = [*message.history, _history(MessageStatus.QUEUED, note, self.now)]
        row.set(status=MessageStatus.QUEUED, send_after=until, **values)
        self.counts["requeued"] += 1


def send_batch(message_ids: Sequence[int], leased_until: str | None = None) -> dict[str, int]:
    """Claim, decide, render, send and write back a batch of outbox rows; counts by outcome.

    Safe to run twice and concurrently: only rows this call claims are sent, and a row is
    claimed once. ``leased_until`` is the dispatcher's lease token: rows it leased are claimable
    although their ``send_after`` lies ahead; without it only due rows are.
    """
    now = timezone.now()
    lease = datetime.fromisoformat(leased_until) if leased_until else None
    ids = sorted({int(i) for i in message_ids})
    claimed = _claim(ids, now, lease)
    if lease is not None and len(claimed) < len(ids):
        _release(sorted(set(ids) - set(claimed)), lease)
    if not claimed:
        return {}
    messages = _load(claimed)
    batch = _Batch(now=now, rows={m.pk: _Row(m) for m in messages})
    try:
        sendable = _prepare(batch, messages)
        _send(batch, sendable)
    finally:
        # Whatever happened above, every claimed row is written back: sent, failed, skipped, or queued
        # again. A row that had no outcome (an exception before its POST) goes back to the queue.
        for row in batch.rows.values():
            if "status" not in row.fields:
                batch.requeue(row.message, None)
        _write_back(batch)
    _after(batch)
    return dict(batch.counts)


# Columns of a claimed row the send path never reads (only the statuses, pages and webhooks do): not
# loaded, so each row is a smaller model instance with one JSON document less to parse. Reading one
# would cost a query per row; the statement-count test of a batch would show it.
_UNREAD = (
    "content",
    "provider_message_id",
    "opened_at",
    "idempotency_key",
    "request_hash",
    "error_details",
    "pricing_category",
    "pricing_type",
    "billable",
    "replied_at",
    "clicked_at",
    "created_at",
    "delivered_at",
    "read_at",
    "wamid",
)


def _load(ids: list[int]) -> list[Message]:
    """The claimed rows with their subscribers (one query), and their accounts, templates and
    campaigns attached from one query each.

    A batch's rows nearly always share one account, template and campaign: joined per row, every
    row decrypted the account's token and secret (Fernet) and parsed the campaign's JSON again,
    about a sixth of a worker's CPU per message. Shared instances are read, never changed, here.
    """
    messages = list(
        Message.objects.filter(pk__in=ids).select_related("subscriber").defer(*_UNREAD).order_by("pk")
    )
    for name, model in (("account", WhatsAppAccount), ("template", MessageTemplate), ("campaign", Campaign)):
        attname = Message._meta.get_field(name).attname
        wanted = {getattr(m, attname) for m in messages} - {None}
        found = model._base_manager.in_bulk(wanted) if wanted else {}
        for message in messages:
            related = found.get(getattr(message, attname))
            if related is not None:  # else (no id, or gone meanwhile) the descriptor answers as before
                setattr(message, name, related)
    return messages


def _prepare(batch: _Batch, messages: list[Message]) -> list[Message]:
    """The rows to POST now; every other row gets its outcome here (skip, hold, requeue)."""
    candidates = []
    for message in messages:
        account = message.account
        if account is None:
            batch.finish(
                message,
                MessageStatus.SKIPPED,
                "no account",
                reason=gettext_noop("The WhatsApp account was removed."),
            )
        elif (
            message.campaign_id is None and message.kind == MessageKind.TEMPLATE and not _template_ok(message)
        ):
            reason = (
                gettext_noop("The template was deleted.")
                if message.template is None
                else f"Template {message.template.name} ({message.template.language}) is "
                f"{message.template.status.lower()}, not approved."
            )
            batch.finish(message, MessageStatus.SKIPPED, "policy", reason=reason)
        else:
            candidates.append(message)
    decisions = sendpolicy.decide(candidates, batch.now) if candidates else {}
    campaign_rows = [m for m in candidates if m.campaign_id is not None and m.pk not in decisions]
    rendered = rendering.render_batch(campaign_rows) if campaign_rows else {}
    sendable = []
    for message in candidates:
        outcome = decisions.get(message.pk) or rendered.get(message.pk)
        if isinstance(outcome, Skip):
            batch.finish(message, MessageStatus.SKIPPED, "policy", reason=outcome.reason)
        elif isinstance(outcome, Hold):
            batch.requeue(message, outcome.until, f"held: {outcome.reason}")
        else:
            if outcome is not None:  # Rendered: what this row sends, kept as the record of what was sent
                batch.rows[message.pk].set(
                    template_id=outcome.template_id,
                    template_name=outcome.template_name,
                    template_language=outcome.language,
                    components=outcome.components,
                    body=outcome.body,
                )
            elif message.campaign_id is not None:
                batch.finish(
                    message,
                    MessageStatus.SKIPPED,
                    "render",
                    reason=gettext_noop("Nothing to send was rendered."),
                )
                continue
            sendable.append(message)
    return sendable


def _template_ok(message: Message) -> bool:
    return message.template is not None and message.template.status == TemplateStatus.APPROVED


PACE = 0.97  # of a number's limit the slots are cut for
# Calls held up past their slot (a busy process) could be dropped and queued again instead of posted
# late (``async_client``'s ``late``), so that a stall does not release a burst into one second at
# Meta. Off: measured on the loaded test machine, dropping at 25 ms tripled the CPU per message and
# at 250 ms still doubled it (the re-queued rows are claimed, reserved and written back again),
# while posting late cost 0.1-0.5 % of sends a 130429 that is retried.
MAX_LATE: float | None = None


def _paced(limit: int) -> int:
    """Slots per second for a number of ``limit``: 3 % below it. Slots are exact where they are
    taken, but a call reaches Meta a few milliseconds late or early (a busy event loop, the
    network), so at the full limit some 1-second windows at Meta's end held a few more than the
    limit (1,015 at 1,000/s on the loaded test machine) and Meta answered 130429. The issue asks
    for no window above the limit and at least 95 % of it on average."""
    return max(1, math.floor(limit * PACE))


def _send(batch: _Batch, sendable: list[Message]) -> None:
    """Reserve slots per account (and campaign throttle), then POST at those slots on the pool."""
    groups: dict[tuple[int, int | None], list[Message]] = defaultdict(list)
    for message in sendable:
        throttle = message.campaign.throttle_mps if message.campaign_id else None
        stream = message.campaign_id if throttle and throttle < message.account.throughput_mps else None
        groups[(message.account_id, stream)].append(message)
    for (_, stream), messages in groups.items():
        account = messages[0].account
        number = account.phone_number_id
        reservation = ratelimit.reserve(
            number,
            _paced(account.throughput_mps),
            len(messages),
            stream=f"campaign:{stream}" if stream else "",
            stream_rate=messages[0].campaign.throttle_mps if stream else None,
        )
        start = time.monotonic()
        granted = messages[: len(reservation.delays)]
        later = batch.now + timedelta(seconds=reservation.retry_after)
        for message in messages[len(granted) :]:
            batch.requeue(message, later)  # no slot within the horizon: back in line, no sleeping
        _post_all(batch, account, list(zip(granted, reservation.delays, strict=True)), start)


def _post_all(
    batch: _Batch, account: WhatsAppAccount, slots: list[tuple[Message, float]], start: float
) -> None:
    client = GraphClient(account)
    stop = threading.Event()  # set by a 130429 or an account-level error: post nothing more
    futures: list[tuple[Message, Future | None]] = []
    # One message (an OTP, a reply) is posted on this thread: no hop, and the in-process simulator
    # of the tests shares this thread's database connection. WHATSAPP_SEND_THREADS = 0: always.
    if len(slots) > 1 and _threads() > 0 and client.fast_path_ok():
        _post_lean(batch, account, client, slots, start, stop, futures)
        return
    pool = _executor() if len(slots) > 1 and _threads() > 0 else _Inline()
    try:
        for wave in _waves(slots, start):
            for message, at, ours in wave:
                wait = at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)  # until a slot this batch holds: at most the limiter's horizon
                if stop.is_set() or not ours:
                    futures.append((message, None))
                    continue
                futures.append((message, pool.submit(_post, client, message, stop)))
    finally:
        # Even when this loop is interrupted (a time limit), every submitted POST gets its outcome
        # recorded: a row given back to the queue after it may have been posted would be sent twice.
        for message, future in futures:
            _record(batch, account, message, future)


def _post_lean(
    batch: _Batch,
    account: WhatsAppAccount,
    client: GraphClient,
    slots: list[tuple[Message, float]],
    start: float,
    stop: threading.Event,
    futures: list[tuple[Message, Future | None]],
) -> None:
    """The batch's POSTs on the process's event loop (``whatsapp.async_client``), each at its slot.

    Handed over a wave at a time (``_waves``) with their slot times: the loop waits for each slot, checks
    ``stop`` just before writing the request (an account error of an earlier call sets it from the
    loop's thread, see ``_on_answer``) and posts. A 130429 does not stop the batch: the loop pauses
    the number in this process, handing back the calls (of every batch) whose slots come within
    the pause, and ``_on_answer`` pauses it for the other processes' reservations; the batch's
    later slots still go out. This thread then only waits for the outcomes, which are recorded even
    when the wait is interrupted (a time limit): the calls not yet written are cancelled first, so
    none of them is posted after its row went back to the queue.
    """
    lean = async_client.sender()
    url, token = client.messages_url(), account.access_token
    on_done = functools.partial(_on_answer, stop, lean, url, account.phone_number_id)
    try:
        for wave in _waves(slots, start):
            # A wave's calls go to the loop in one hand-over (post_many), in slot order.
            posting = [(message, at) for message, at, ours in wave if ours and not stop.is_set()]
            handed = lean.post_many(
                [(url, token, _payload(message), at) for message, at in posting],
                cancel=stop,
                late=MAX_LATE,
                throughput_pause=NUMBER_BACKOFF,
            )
            by_id = {message.pk: future for (message, _), future in zip(posting, handed, strict=True)}
            for message, _, _ in wave:
                future = by_id.get(message.pk)
                if future is not None:
                    future.add_done_callback(on_done)
                futures.append((message, future))
        for _, future in futures:
            if future is not None:
                future.exception()  # wait; the outcome is read below
    except BaseException:
        stop.set()
        raise
    finally:
        for message, future in futures:
            _record(batch, account, message, future)


POSTING_WAVE = 0.25  # seconds of slots whose rows are marked "posting" by one statement
POSTING_LEAD = 0.05  # how long before a wave's first slot it is marked


def _waves(slots: list[tuple[Message, float]], start: float) -> Iterator[list[tuple[Message, float, bool]]]:
    """The batch's slots in waves of ``POSTING_WAVE`` seconds: (row, monotonic slot time, still ours).

    Before a wave is handed out, its rows are marked "posting" in one committed statement
    (``_mark_posting``), a moment before their first slot. A row still marked as merely claimed
    was never posted, so when a worker dies the sweeper can queue such rows again after a
    minute (``requeue_unposted``) instead of leaving them ``unknown`` for an hour: at most one
    wave of a killed worker's rows stays ``unknown``. A row the sweeper took back meanwhile is not
    ours (False) and is not posted.
    """
    i = 0
    while i < len(slots):
        first = start + slots[i][1]
        j = i + 1
        while j < len(slots) and start + slots[j][1] <= first + POSTING_WAVE:
            j += 1
        wait = first - POSTING_LEAD - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        ours = _mark_posting([message.pk for message, _ in slots[i:j]])
        yield [(message, start + delay, message.pk in ours) for message, delay in slots[i:j]]
        i = j


def _mark_posting(ids: list[int]) -> set[int]:
    """Claimed rows whose POSTs may start now: ``send_after`` cleared (committed before any POST).
    Returns the ids still ``sending``: one the sweeper queued again is someone else's now."""
    sql = (
        f"UPDATE {_q(MESSAGE)} SET send_after = NULL "  # noqa: S608 - names from code
        f"WHERE {_id_in(ids)} AND status = 'sending' RETURNING id"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, _id_params(ids))
        return {row[0] for row in cursor.fetchall()}


def _on_answer(
    stop: threading.Event, lean: async_client.Sender, url: str, number: str, future: Future
) -> None:
    """A lean call's outcome, on the loop's thread as it settles: an account error stops the batch;
    a 130429 pauses the number for every worker at once (the loop already paused it here for
    ``NUMBER_BACKOFF``; the shared pause may be longer, see ``ratelimit.back_off``)."""
    exc = None if future.cancelled() else future.exception()
    if not isinstance(exc, GraphError):
        return
    if exc.code == THROUGHPUT_CODE:
        # One Redis round trip on the loop's thread per refusal (rare by design); the shared pause
        # may have grown (refusals right after pauses), and this process then holds that long too.
        lean.pause(url, ratelimit.back_off(number, NUMBER_BACKOFF))
    elif _stops_the_batch(exc):
        stop.set()


def _stops_the_batch(exc: GraphError) -> bool:
    """Meta's throughput answer, or an error of the whole number: the batch posts nothing more."""
    return exc.code == THROUGHPUT_CODE or (exc.kind == ErrorKind.ACCOUNT and not template_level(exc.code))


def _payload(message: Message) -> dict[str, Any]:
    subscriber = message.subscriber
    to = subscriber.phone or subscriber.wa_id or subscriber.bsuid or ""
    if message.kind == MessageKind.TEXT:
        return text_payload(to=to, body=message.body, callback_data=message.callback_data)
    return template_payload(
        to=to,
        name=message.template_name,
        language=message.template_language,
        components=message.components,
        callback_data=message.callback_data,
    )


def _record(batch: _Batch, account: WhatsAppAccount, message: Message, future: Future | None) -> None:
    if future is None:
        _not_posted(batch, message, account)
        return
    try:
        result = future.result()
    except _NotPosted:
        _not_posted(batch, message, account)
    except AmbiguousSendError as exc:
        # Maybe sent, maybe not: never resend blindly. A status webhook with our callback id settles it.
        batch.finish(message, MessageStatus.UNKNOWN, str(exc), reason=exc.explanation,
                     attempts=message.attempts + 1)  # fmt: skip
    except GraphError as exc:
        _failed(batch, message, account, exc)
    except Exception as exc:  # a bug or an odd library error after the POST may have left: not resent
        logger.exception("send of message %s ended in an unexpected error", message.pk)
        batch.finish(message, MessageStatus.UNKNOWN, f"unexpected error: {type(exc).__name__}",
                     reason=UNEXPECTED, attempts=message.attempts + 1)  # fmt: skip
    else:
        batch.finish(
            message,
            MessageStatus.SENT,
            f"accepted by Meta ({result.message_status})",
            wamid=result.wamid,
            sent_at=timezone.now(),
            reason="",
            attempts=message.attempts + 1,
        )


class _Inline:
    """The executor interface, running the call at once on the caller's thread."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the caller through the future, as a pool would
            future.set_exception(exc)
        return future


def _post(client: GraphClient, message: Message, stop: threading.Event) -> SendResult:
    if stop.is_set():
        raise _NotPosted
    subscriber = message.subscriber
    to = subscriber.phone or subscriber.wa_id or subscriber.bsuid or ""
    try:
        if message.kind == MessageKind.TEXT:
            return client.send_text(to=to, body=message.body, callback_data=message.callback_data)
        return client.send_template(
            to=to,
            name=message.template_name,
            language=message.template_language,
            components=message.components,
            callback_data=message.callback_data,
        )
    except GraphError as exc:
        if _stops_the_batch(exc):
            stop.set()  # one thread, or a few: simpler than the lean path's pause of the number
        if exc.code == THROUGHPUT_CODE:
            ratelimit.back_off(client.account.phone_number_id, NUMBER_BACKOFF)
        raise


def _not_posted(batch: _Batch, message: Message, account: WhatsAppAccount) -> None:
    """A row the batch did not post (its slot came in a 130429 pause, the account stopped): queue it
    again, behind the pause."""
    batch.requeue(message, _pause_end(batch, account))


def _pause_end(batch: _Batch, account: WhatsAppAccount) -> datetime | None:
    """When the number's 130429 pause ends (None: not paused); read once per batch and number."""
    if account.pk not in batch.pause_ends:
        wait = ratelimit.backed_off(account.phone_number_id)
        batch.pause_ends[account.pk] = timezone.now() + timedelta(seconds=wait) if wait else None
    return batch.pause_ends[account.pk]


def _failed(batch: _Batch, message: Message, account: WhatsAppAccount, exc: GraphError) -> None:
    errors = {"error_code": exc.code, "error_title": exc.title[:300], "error_details": exc.details}
    attempts = message.attempts + 1
    kind = exc.kind
    if kind == ErrorKind.ACCOUNT:
        if template_level(exc.code):
            if message.campaign_id is not None:
                batch.paused_templates[(account.pk, message.campaign.template_name)] = exc
                batch.requeue(
                    message, None, f"campaign paused: error {exc.code}", reason=exc.explanation, **errors
                )
            else:
                batch.finish(message, MessageStatus.FAILED, f"error {exc.code}", reason=exc.explanation,
                             failed_at=timezone.now(), attempts=attempts, **errors)  # fmt: skip
            return
        batch.stopped_accounts[account.pk] = exc
        batch.requeue(message, None, f"account stopped: error {exc.code}", reason=exc.explanation, **errors)
        return
    if kind == ErrorKind.RETRY_LATER and message.error_code != exc.code:
        # 131049: Meta wants at least 24 h; one more try, then it fails (the code stays on the row).
        until = batch.now + timedelta(seconds=retry_delay(exc.code, attempts))
        batch.requeue(message, until, f"retry in 24 h after error {exc.code}", reason=exc.explanation,
                      attempts=attempts, **errors)  # fmt: skip
        return
    if exc.code == THROUGHPUT_CODE:
        # Meta took nothing: the number's second was full (calls reached it bunched). The whole
        # number paused when the answer came (``_on_answer``, ``_post``); the row goes back in line
        # behind that pause, not 2, 8, 32 s later, and its attempts do not grow, since the refusal
        # is the number's, not the message's: under bursts a row refused six times would otherwise
        # have failed (error_code keeps the last).
        until = _pause_end(batch, account)
        batch.requeue(message, until, f"retry after error {exc.code}", reason=exc.explanation, **errors)
        return
    if kind == ErrorKind.TRANSIENT and attempts < MAX_ATTEMPTS:
        until = batch.now + timedelta(seconds=retry_delay(exc.code, attempts))
        batch.requeue(message, until, f"retry after error {exc.code or 'network'}", reason=exc.explanation,
                      attempts=attempts, **errors)  # fmt: skip
        return
    batch.finish(message, MessageStatus.FAILED, f"error {exc.code}", reason=exc.explanation,
                 failed_at=timezone.now(), attempts=attempts, **errors)  # fmt: skip


def _write_back(batch: _Batch) -> None:
    """Every claimed row in one UPDATE, only where it is still ``sending`` (a webhook may have won)."""
    from .services import _update_changed

    rows = []
    for row in batch.rows.values():
        row.set(updated_at=timezone.now())
        rows.append((row.message, row.fields))
    # The rows and their counter change in one transaction. Only the rows the UPDATE changed count
    # (RETURNING): a row a webhook moved meanwhile was counted by that webhook.
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _record_failures(batch, _update_sending_pg(rows, batch))
            return
        changed = _update_changed(rows, where_status=MessageStatus.SENDING, returning=counters.RETURNING)
        moves = []
        for pk, old in counters.returned_states(changed, MessageStatus.SENDING).items():
            row = batch.rows[pk]
            # The write-back sets sent_at too (the sends chart): from the minute it had when claimed
            # (a 131049 retry was sent before) to the new one.
            old = replace(old, sent_minute=row.sent_minute)
            moves.append((old, replace(old, status=row.message.status,
                                       sent_minute=counters.minute_of(row.message.sent_at))))  # fmt: skip
        counters.apply_moves(moves)
        _record_failures(batch, {row[0] for row in changed})


# The event a row that failed at send time records, per channel: the one a status webhook records
# for a WhatsApp failure reported later (campaigns.services.STATUS_EVENTS), and its email and push
# counterparts (campaigns.channel_events). Journeys count ``failed`` on the sending step from it.
def _failed_event(channel: str) -> str | None:
    from .channel_events import EVENT_NAMES, FAILED
    from .services import STATUS_EVENTS

    return STATUS_EVENTS["failed"] if channel == "whatsapp" else EVENT_NAMES.get((channel, FAILED))


def _record_failures(batch: _Batch, changed: set[int]) -> None:
    """The failure events of the rows this write-back failed, in the write-back's transaction.

    Only rows the UPDATE changed (a status webhook that won the race recorded its own event). Set-
    based: one ``record_events`` per project of the batch (one dedup lookup, one INSERT). The key is
    per message, so a batch written back twice records each failure once.
    """
    from controlpanel.models import Project
    from subscribers.errors import InvalidInput
    from subscribers.services import NewEvent, record_events

    from .channel_events import origin_attributes

    by_project: dict[int, list[NewEvent]] = defaultdict(list)
    for pk in sorted(changed):
        message = batch.rows[pk].message
        name = _failed_event(message.channel)
        if message.status != MessageStatus.FAILED or name is None:
            continue
        if message.channel == "whatsapp":
            # No wamid: Meta refused the POST. ``message`` (our public id) names the row instead.
            attributes: dict[str, Any] = {
                "message": str(message.public_id),
                "template": message.template_name,
            }
        else:
            attributes = origin_attributes(message)
        if message.error_code is not None:
            attributes["error_code"] = message.error_code
        if message.error_title:
            attributes["error_title"] = message.error_title[:300]
        if message.reason:
            attributes["reason"] = str(message.reason)[:300]
        by_project[message.project_id].append(
            NewEvent(
                message.subscriber_id,
                name,
                attributes,
                message.failed_at or batch.now,
                f"{name}:{message.public_id}",
            )
        )
    if not by_project:
        return
    projects = Project.objects.in_bulk(list(by_project))
    for project_id, events in by_project.items():
        for result in record_events(project=projects[project_id], events=events):
            if isinstance(result, InvalidInput):  # logged; the row's failure stands
                logger.warning("failure event of project %s not recorded: %s", project_id, result)


def _update_sending_pg(rows: list[tuple[Message, set[str]]], batch: _Batch) -> set[int]:
    """``services._update_changed`` for the write-back on PostgreSQL, with its counters: one statement.

    ``UPDATE ... FROM jsonb_to_recordset(%s)``: one parameter instead of three per row and column.
    psycopg binds on the client and parsed every placeholder of the CASE form (thousands for a
    200-row batch), then quoted value arrays element by element: both cost more CPU than
    PostgreSQL spent on the statement; ``json.dumps`` of the batch is C. Each column has a value
    and a "changed" flag per row (a row that did not change a column keeps it). Only rows still
    ``sending`` change; their counter moves (``counters.moves_sql``: from ``sending`` and the
    ``sent_at`` minute the row had when claimed, ``om``, to what it is now) are added by the same
    statement, so only rows it really changed count. Returns the ids of the changed rows.
    """
    meta = Message._meta
    names = sorted(set().union(*(fields for _, fields in rows)))
    model_fields = [meta.get_field(name) for name in names]
    columns = ["id bigint", "om timestamptz"]
    assignments = []
    for i, model_field in enumerate(model_fields):
        column = _q(model_field.column)
        columns += [f"v{i} {model_field.cast_db_type(connection)}", f"c{i} boolean"]
        assignments.append(f"{column} = CASE WHEN v.c{i} THEN v.v{i} ELSE m.{column} END")
    records = []
    for message, fields in rows:
        minute = batch.rows[message.pk].sent_minute
        record: dict[str, Any] = {"id": message.pk, "om": minute.isoformat() if minute else None}
        for i, model_field in enumerate(model_fields):
            if model_field.name in fields:
                record[f"v{i}"] = _json_value(model_field, getattr(message, model_field.attname))
                record[f"c{i}"] = True
        records.append(record)
    returning = ", ".join(f"m.{c.strip()}" for c in counters.RETURNING.split(","))
    moves = counters.moves_sql(
        "written",
        before="'sending'",
        after="status",
        before_minute="om",
        after_minute=counters.minute_sql("sent_at"),
    )
    sql = (
        f"WITH written AS (UPDATE {_q(MESSAGE)} m SET {', '.join(assignments)} "  # noqa: S608 - names from code
        f"FROM jsonb_to_recordset(%s::jsonb) AS v({', '.join(columns)}) "
        f"WHERE m.id = v.id AND m.status = %s RETURNING {returning}, m.status, m.sent_at, v.om)"
        f"{moves} SELECT id FROM written"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(records), MessageStatus.SENDING])
        return {row[0] for row in cursor.fetchall()}


def _json_value(model_field: Any, value: Any) -> Any:
    """A column value as jsonb_to_recordset reads it: JSON as is, times as ISO 8601, the rest as saved."""
    if value is None or isinstance(model_field, JSONField):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int | float):
        # Text (a status is a str TextChoices member), numbers, booleans: JSON as they are. The
        # field's get_db_prep_save for each of ~11 columns of 200 rows cost as much as the rest of
        # the write-back's Python.
        return value
    return model_field.get_db_prep_save(value, connection)


def _after(batch: _Batch) -> None:
    """Stops for account- and template-level errors; campaigns whose rows are all done complete."""
    for account_id, exc in batch.stopped_accounts.items():
        reason = f"{exc.explanation} (Meta error {exc.code})"
        WhatsAppAccount.objects.filter(pk=account_id).update(
            status=AccountStatus.SUSPENDED, status_reason=reason
        )
        progress.pause_for_error(account_id=account_id, reason=exc.explanation, code=exc.code)
    for (account_id, template_name), exc in batch.paused_templates.items():
        progress.pause_for_error(
            account_id=account_id, reason=exc.explanation, code=exc.code, template_name=template_name
        )
    campaign_ids = {row.message.campaign_id for row in batch.rows.values() if row.message.campaign_id}
    if campaign_ids:
        progress.complete_finished(campaign_ids)


def send_one(message_id: int) -> str:
    """Send one queued row now through the batch path; its status afterwards ("not-queued" if not ours)."""
    counts = send_batch([message_id])
    if not counts:
        return "not-queued"
    return Message.objects.values_list("status", flat=True).get(pk=message_id)


# --- sweeper -----------------------------------------------------------------------------------


def sweep_stuck(*, older_than: timedelta = STUCK_AFTER, limit: int = 10_000) -> int:
    """Rows left ``sending`` by a crash become ``unknown``; a status webhook may settle them later.

    Every channel's rows: the email and push sender marks rows "posting" as this one does
    (channel_sending.py), so the same two steps hold for them (never posted: queued again; maybe
    posted: ``unknown``, never resent, as they are no campaign's rows).

    Campaign rows still ``unknown`` after ``UNKNOWN_RESEND_AFTER`` go back to ``queued`` once
    (``resend_unknown``). Returns the rows moved to ``unknown``.
    """
    from .services import _history, _update_changed

    now = timezone.now()
    requeue_unposted(now=now, limit=limit)
    stuck = list(
        Message.objects.filter(status=MessageStatus.SENDING, sending_at__lt=now - older_than)
        .exclude(send_after=F("sending_at"))  # claimed, never posted: requeue_unposted's
        .only("id", "history")
        .order_by("id")[:limit]
    )
    for message in stuck:
        message.status = MessageStatus.UNKNOWN
        message.history = [
            *message.history,
            _history(MessageStatus.UNKNOWN, "worker stopped while sending", now),
        ]
        message.updated_at = now
    if stuck:
        with transaction.atomic():
            changed = _update_changed(
                [(m, {"status", "history", "updated_at"}) for m in stuck],
                where_status=MessageStatus.SENDING,
                returning=counters.RETURNING,
            )
            counters.apply_moves(counters.status_moves(changed, MessageStatus.SENDING, MessageStatus.UNKNOWN))
    resend_unknown(now=now, limit=limit)
    return len(stuck)


UNPOSTED_NOTE = "worker stopped before posting: queued again"


def requeue_unposted(*, now: datetime | None = None, limit: int = 10_000) -> int:
    """Rows claimed over a ``LEASE`` ago whose POST never started go back to ``queued``; how many.

    A claim sets ``send_after = sending_at``; ``_mark_posting`` clears it, committed, before the
    row's POST. A row still carrying the claim's mark was never posted by anyone (its worker died
    or hangs), so sending it again cannot duplicate it. The statement re-checks the mark on each
    row: a worker that marks it meanwhile wins (its row is not moved), and a worker that comes to
    mark it later finds it no longer ``sending`` and does not post it.
    """
    from .services import _history

    now = now or timezone.now()
    ids = list(
        Message.objects.filter(
            status=MessageStatus.SENDING, sending_at__lt=now - LEASE, send_after=F("sending_at")
        )
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if not ids:
        return 0
    note = json.dumps([_history(MessageStatus.QUEUED, UNPOSTED_NOTE, now)])
    if connection.vendor == "postgresql":
        history = "history || %s::jsonb"
    else:
        history = "json_insert(history, '$[#]', json_extract(%s, '$[0]'))"
    sql = (
        f"UPDATE {_q(MESSAGE)} SET status = 'queued', send_after = NULL, updated_at = %s, "  # noqa: S608
        f"history = {history} WHERE {_id_in(ids)} AND status = 'sending' AND send_after = sending_at "
        f"RETURNING {counters.RETURNING}"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [_dt(now), note, *_id_params(ids)])
        changed = cursor.fetchall()
        counters.apply_moves(counters.status_moves(changed, MessageStatus.SENDING, MessageStatus.QUEUED))
    if changed:
        kick()
        logger.info("%d rows claimed but never posted queued again", len(changed))
    return len(changed)


RESEND_NOTE = "no status webhook: sent again"


def _resent_before() -> RawSQL:
    """True for a row whose history has RESEND_NOTE: it was sent again once already."""
    if connection.vendor == "postgresql":
        return RawSQL("history @> %s::jsonb", [json.dumps([{"note": RESEND_NOTE}])], BooleanField())
    return RawSQL(
        "EXISTS (SELECT 1 FROM json_each(history) WHERE json_extract(value, '$.note') = %s)",
        [RESEND_NOTE],
        BooleanField(),
    )


def resend_unknown(*, now: datetime | None = None, limit: int = 10_000) -> int:
    """Campaign rows ``unknown`` for ``UNKNOWN_RESEND_AFTER`` without a status webhook: queued again, once.

    A message Meta accepted gets a ``sent`` status webhook within seconds, which settles its row;
    a row still ``unknown`` an hour later was most likely never posted (a worker killed between its
    claim and the POSTs), so it goes back to the queue and every recipient ends terminal. The cost:
    if our webhooks were down longer than that, a posted message is sent twice. Only once per row
    (a history note marks it): the second time it stays ``unknown`` and counts as done. Single
    sends (OTPs, replies) are not resent: an hour late is worse than not at all. Rows of cancelled
    campaigns stay as they are; a completed campaign runs again for its rows sent again.
    """
    from .services import _history, _update_changed

    now = now or timezone.now()
    rows = list(
        Message.objects.filter(
            status=MessageStatus.UNKNOWN,
            campaign__isnull=False,
            sending_at__lt=now - progress.unknown_resend_after(),
        )
        .exclude(campaign__status=CampaignStatus.CANCELLED)
        .exclude(_resent_before())
        .only("id", "history", "campaign_id")
        .order_by("id")[:limit]
    )
    for message in rows:
        message.status = MessageStatus.QUEUED
        message.send_after = None
        message.reason = ""
        message.history = [*message.history, _history(MessageStatus.QUEUED, RESEND_NOTE, now)]
        message.updated_at = now
    if not rows:
        return 0
    with transaction.atomic():
        changed = _update_changed(
            [(m, {"status", "send_after", "reason", "history", "updated_at"}) for m in rows],
            where_status=MessageStatus.UNKNOWN,
            returning=counters.RETURNING,
        )
        counters.apply_moves(counters.status_moves(changed, MessageStatus.UNKNOWN, MessageStatus.QUEUED))
        progress.reopen({campaign_id for _, campaign_id, *_ in changed})
    if changed:
        kick()
    logger.info("%d unknown campaign rows queued again after no status webhook", len(changed))
    return len(changed)
