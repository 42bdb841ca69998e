"""The durable event feed: every recorded event reaches every consumer, at least once, in order.

Every fact a journey or an outgoing webhook reacts to is an ``Event`` row (API, import,
inbound messages, statuses, consent changes), so the event table itself is the feed. A
consumer keeps a position in it (``FeedCursor``) and moves it forward in the same transaction
that commits the work it did for the events up to there. A process that dies anywhere, between
an event's commit and its handling or in the middle of a handler, loses nothing: the next pump
starts from the last committed position. Handlers must be idempotent where they reach outside
the database (a webhook call); what they write to the database commits with the position, so
that is exactly once.

Why not ``id > position``: ids are taken when a row is inserted, not when its transaction
commits, so on PostgreSQL an event with a smaller id can become visible after a larger one was
read, and a plain id cursor would skip it for ever. Each event therefore carries the id of the
transaction that wrote it (``feed_txid``, a column with the default ``pg_current_xact_id()``,
added by migration 0010 and unknown to the ORM), and the feed only hands out events of
transactions older than the oldest one still running in this database (``HORIZON``): those are
all committed or rolled back, and transaction ids only grow, so nothing can appear behind the
position any more. The order is
(transaction id, event id): per subscriber that is the order they were written in. On SQLite
writers are serialised by the database lock, so ids are taken in commit order and the plain id
is the position.

The cost of this rule: a transaction that stays open holds every consumer back until it ends;
the lag is shown in ``/healthz`` and the admin (``lag()``).

Pumps run as the ``pump_feed`` actor, sent every second by the scheduler for each consumer; a
pump drains its consumer for a few seconds and stops. The cursor row is locked ``FOR UPDATE
SKIP LOCKED`` for one batch, so two pumps of a consumer never handle the same batch and order is
kept. A handler that fails is retried on the next pump; after ``MAX_ATTEMPTS`` failures on the same
batch its events are handled one by one and the ones that still fail are set aside as
``FeedFailure`` rows, so one poisoned event cannot stop the feed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from .models import Event, FeedCursor, FeedFailure

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_ATTEMPTS = 3
# Far above any real event id: "every event of this transaction id and the ones after".
_END_OF_TRANSACTION = 2**63 - 1

Handler = Callable[[Sequence[Event]], None]


@dataclass(frozen=True)
class Consumer:
    name: str
    handle: Handler
    batch_size: int = BATCH_SIZE


_consumers: dict[str, Consumer] = {}
# The embedded mode's in-process workers share one SQLite database, which has no row locks:
# a per-process lock keeps two threads of this process from pumping one consumer at once.
_local_locks: dict[str, threading.Lock] = {}


def register(name: str, handle: Handler, *, batch_size: int = BATCH_SIZE) -> Consumer:
    """Make ``handle`` a consumer of the feed. Called from an ``AppConfig.ready()``.

    ``handle`` gets the events of a batch in feed order, inside the transaction that advances
    the consumer's position; it must not swallow database errors (the batch is then retried).
    """
    consumer = Consumer(name=name, handle=handle, batch_size=batch_size)
    _consumers[name] = consumer
    _local_locks.setdefault(name, threading.Lock())
    return consumer


def unregister(name: str) -> None:
    _consumers.pop(name, None)


def consumers() -> list[Consumer]:
    return list(_consumers.values())


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def ensure_cursor(name: str) -> FeedCursor:
    """The consumer's cursor; a new consumer starts at the end of the feed, not at its beginning.

    A consumer added to a database that holds millions of events would otherwise react to all
    of them (a journey starting for every order of the last years).
    """
    existing = FeedCursor.objects.filter(consumer=name).first()
    if existing is not None:
        return existing
    with connection.cursor() as cursor:
        if _postgres():
            # Every event committed before now is behind the position; those of transactions
            # still running (txid >= the horizon) are ahead of it and will be handed out.
            cursor.execute(f"SELECT ({HORIZON})::text::bigint")
            position = (cursor.fetchone()[0] - 1, _END_OF_TRANSACTION)
        else:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {Event._meta.db_table}")  # noqa: S608
            position = (0, cursor.fetchone()[0])
    made, _ = FeedCursor.objects.get_or_create(
        consumer=name, defaults={"position_txid": position[0], "position_event_id": position[1]}
    )
    return made


def _columns() -> str:
    return ", ".join(f"e.{connection.ops.quote_name(f.column)}" for f in Event._meta.concrete_fields)


# The oldest transaction that may still add events to this database's feed, evaluated in the
# read's own statement (one snapshot). pg_snapshot_xmin would do, but it spans the whole cluster:
# a transaction left open in another database on the same server (a benchmark, another app)
# would hold every consumer back. A running transaction seen in another database cannot write
# here and is left out; one that ended between the snapshot and the look at pg_stat_activity
# cannot be placed and counts as ours, which can only delay, never skip.
HORIZON = (
    "SELECT COALESCE(MIN(x), pg_snapshot_xmax(pg_current_snapshot())) "
    "FROM pg_snapshot_xip(pg_current_snapshot()) AS x "
    "WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a "
    "WHERE a.backend_xid = x::xid AND a.datname IS DISTINCT FROM current_database())"
)


def read(position: tuple[int, int], limit: int) -> list[Event]:
    """The events after ``position`` that can no longer be overtaken, in feed order.

    Each comes with ``feed_position`` set to its (txid, id).
    """
    table = Event._meta.db_table
    if _postgres():
        sql = (
            f"SELECT {_columns()}, e.feed_txid::text::bigint AS feed_txid FROM {table} e "  # noqa: S608
            "WHERE e.feed_txid IS NOT NULL "
            "AND (e.feed_txid, e.id) > (%s::text::xid8, %s) "
            f"AND e.feed_txid < ({HORIZON}) "
            "ORDER BY e.feed_txid, e.id LIMIT %s"
        )
        params = [str(position[0]), position[1], limit]
    else:
        sql = f"SELECT {_columns()}, 0 AS feed_txid FROM {table} e WHERE e.id > %s ORDER BY e.id LIMIT %s"  # noqa: S608
        params = [position[1], limit]
    events = list(Event.objects.raw(sql, params))
    for event in events:
        event.feed_position = (int(event.feed_txid), event.pk)
    return events


def process_batch(name: str) -> int | None:
    """Hand the next batch to consumer ``name`` and advance its position, in one transaction.

    Returns how many events were handled (0: nothing new), or None when another pump holds the
    consumer. A handler error propagates after it is counted on the cursor.
    """
    consumer = _consumers[name]
    ensure_cursor(name)
    try:
        with transaction.atomic():
            cursor = FeedCursor.objects.select_for_update(skip_locked=True).filter(consumer=name).first()
            if cursor is None:
                return None
            events = read((cursor.position_txid, cursor.position_event_id), consumer.batch_size)
            if not events:
                return 0
            if cursor.failures >= MAX_ATTEMPTS:
                _handle_one_by_one(consumer, events)
            else:
                consumer.handle(events)
            last = events[-1].feed_position
            FeedCursor.objects.filter(pk=cursor.pk).update(
                position_txid=last[0],
                position_event_id=last[1],
                handled=F("handled") + len(events),
                failures=0,
                last_error="",
                updated_at=timezone.now(),
            )
            return len(events)
    except Exception as exc:
        FeedCursor.objects.filter(consumer=name).update(
            failures=F("failures") + 1, last_error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise


def _handle_one_by_one(consumer: Consumer, events: Sequence[Event]) -> None:
    for event in events:
        try:
            with transaction.atomic():
                consumer.handle([event])
        except Exception as exc:
            logger.exception("event feed: %s set event %s aside", consumer.name, event.pk)
            FeedFailure.objects.get_or_create(
                consumer=consumer.name,
                event_id=event.pk,
                defaults={"project_id": event.project_id, "error": f"{type(exc).__name__}: {exc}"[:2000]},
            )


def pump(name: str, *, seconds: float = 10.0) -> int:
    """Drain consumer ``name`` for up to ``seconds``; returns how many events it handled.

    Stops as soon as the feed is empty or another pump holds the consumer: the scheduler
    sends the next pump a second later, so no worker waits on an empty feed.
    """
    lock = _local_locks.setdefault(name, threading.Lock())
    if not lock.acquire(blocking=False):
        return 0
    handled = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            n = process_batch(name)
            if not n:
                break
            handled += n
    finally:
        lock.release()
    return handled


@dataclass(frozen=True)
class Lag:
    consumer: str
    pending: int  # committed events after the position (counted up to PENDING_LIMIT)
    oldest_pending_at: datetime | None
    updated_at: datetime | None
    failures: int
    last_error: str

    @property
    def seconds(self) -> float:
        if self.oldest_pending_at is None:
            return 0.0
        return max((timezone.now() - self.oldest_pending_at).total_seconds(), 0.0)

    def as_dict(self) -> dict[str, object]:
        return {
            "lag_seconds": round(self.seconds, 3),
            "pending": self.pending,
            "failures": self.failures,
        }


PENDING_LIMIT = 100_000


def lag(name: str) -> Lag:
    """How far consumer ``name`` is behind: the age of its oldest unhandled event and their number."""
    cursor = FeedCursor.objects.filter(consumer=name).first()
    if cursor is None:
        return Lag(name, 0, None, None, 0, "")
    table = Event._meta.db_table
    if _postgres():
        after = "e.feed_txid IS NOT NULL AND (e.feed_txid, e.id) > (%s::text::xid8, %s)"
        params: list[object] = [str(cursor.position_txid), cursor.position_event_id]
        order = "e.feed_txid, e.id"
    else:
        after, params, order = "e.id > %s", [cursor.position_event_id], "e.id"
    with connection.cursor() as db:
        db.execute(f"SELECT e.received_at FROM {table} e WHERE {after} ORDER BY {order} LIMIT 1", params)  # noqa: S608
        row = db.fetchone()
        oldest = row[0] if row else None
        pending = 0
        if oldest is not None:
            db.execute(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM {table} e WHERE {after} LIMIT %s) AS p",  # noqa: S608
                [*params, PENDING_LIMIT],
            )
            pending = db.fetchone()[0]
    if oldest is not None and timezone.is_naive(oldest):
        oldest = timezone.make_aware(oldest, UTC)  # SQLite hands naive UTC back
    return Lag(name, pending, oldest, cursor.updated_at, cursor.failures, cursor.last_error)


def lags() -> list[Lag]:
    return [lag(consumer.name) for consumer in consumers()]
