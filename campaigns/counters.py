"""Campaign figures kept by the writers: ``CampaignCounter`` and ``CampaignMinute`` (ADR 0006).

Counting a million outbox rows on every page view costs ~0.6 s of CPU; instead every statement that
moves campaign rows from one state to another also adds "these rows moved from A to B" to the
counters, in the same transaction, so the page reads a few counter rows. A state is the group a
row is counted in: (campaign, status, pricing category, free), plus whether it has a reply and a
click, plus the minute of its ``sent_at`` for the sends chart.

Writers build a ``Delta`` from the rows they changed (the rows they hold already, or a grouped
``RETURNING`` for set-based statements) and call ``Delta.apply()``: one
``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`` per table, keys sorted, so two writers
touching the same groups lock them in the same order and wait instead of deadlocking.

``recount`` rebuilds a campaign's counters from its rows: when a campaign completes, and by the
``recount_campaigns`` management command. Counters equal a recount at any quiet moment; tests
drive whole campaigns and check exactly that.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import BooleanField, Case, Count, ExpressionWrapper, Q, Value, When
from django.db.models.functions import TruncMinute

from .models import AudienceRow, CampaignCounter, CampaignMinute, Message, MessageStatus

COUNTER = CampaignCounter._meta.db_table
MINUTE = CampaignMinute._meta.db_table
# Keys per INSERT: SQLite takes 999 parameters per statement, a key has 7 values.
CHUNK = 120


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def minute_of(at: datetime | None) -> datetime | None:
    """The UTC minute ``at`` falls in (whole minutes are the same in every zone we know of)."""
    if at is None:
        return None
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.replace(second=0, microsecond=0, tzinfo=UTC)


def is_free(billable: Any) -> bool:
    """``billable`` as stored (None, or a boolean; 0/1 from a raw SQLite cursor) -> the ``free`` key."""
    return billable is not None and not billable


@dataclass(frozen=True)
class RowState:
    """What of one outbox row the counters count."""

    campaign_id: int | None
    status: str
    pricing_category: str = ""
    free: bool = False
    replied: bool = False
    clicked: bool = False
    sent_minute: datetime | None = None

    @property
    def key(self) -> tuple[int | None, str, str, bool]:
        return (self.campaign_id, self.status, self.pricing_category, self.free)


def state(message: Message, **changes: Any) -> RowState:
    """The row's state as it is in memory, or as it will be after ``changes`` (field -> value)."""

    def get(name: str) -> Any:
        return changes[name] if name in changes else getattr(message, name)

    return RowState(
        campaign_id=message.campaign_id,
        status=str(get("status")),
        pricing_category=get("pricing_category") or "",
        free=is_free(get("billable")),
        replied=get("replied_at") is not None,
        clicked=get("clicked_at") is not None,
        sent_minute=minute_of(get("sent_at")),
    )


class Delta:
    """Changes to the counters of one transaction: added to, then applied once."""

    def __init__(self) -> None:
        # (campaign, status, category, free) -> [n, replied, clicked]
        self.groups: dict[tuple[int, str, str, bool], list[int]] = defaultdict(lambda: [0, 0, 0])
        self.minutes: dict[tuple[int, datetime], int] = defaultdict(int)

    def add(
        self,
        campaign_id: int,
        status: str,
        pricing_category: str = "",
        free: bool = False,
        *,
        n: int = 0,
        replied: int = 0,
        clicked: int = 0,
    ) -> None:
        group = self.groups[(campaign_id, str(status), pricing_category or "", bool(free))]
        group[0] += n
        group[1] += replied
        group[2] += clicked

    def add_minute(self, campaign_id: int, minute: datetime | None, n: int) -> None:
        if minute is not None:
            self.minutes[(campaign_id, minute)] += n

    def move(self, before: RowState | None, after: RowState | None, n: int = 1) -> None:
        """``n`` rows went from ``before`` to ``after`` (None: did not exist / no longer exists)."""
        for row, sign in ((before, -1), (after, 1)):
            if row is None or row.campaign_id is None:
                continue
            self.add(*row.key, n=sign * n, replied=sign * n * row.replied, clicked=sign * n * row.clicked)
            self.add_minute(row.campaign_id, row.sent_minute, sign * n)

    def __bool__(self) -> bool:
        return any(any(v) for v in self.groups.values()) or any(self.minutes.values())

    def apply(self) -> None:
        """Add everything to the counter tables: one upsert per table (per CHUNK keys), keys sorted."""
        groups = sorted((k, v) for k, v in self.groups.items() if any(v))
        minutes = sorted((k, v) for k, v in self.minutes.items() if v)
        if groups:
            _upsert(
                COUNTER,
                ["campaign_id", "status", "pricing_category", "free"],
                ["n", "replied", "clicked"],
                [(*key, *values) for key, values in groups],
            )
        if minutes:
            _upsert(
                MINUTE,
                ["campaign_id", "minute"],
                ["n"],
                [(c, connection.ops.adapt_datetimefield_value(m), n) for (c, m), n in minutes],
            )
        self.groups.clear()
        self.minutes.clear()


def _upsert(table: str, keys: list[str], values: list[str], rows: list[tuple]) -> None:
    columns = ", ".join(_q(c) for c in [*keys, *values])
    conflict = ", ".join(_q(c) for c in keys)
    updates = ", ".join(f"{_q(c)} = {_q(table)}.{_q(c)} + excluded.{_q(c)}" for c in values)
    width = len(keys) + len(values)
    with connection.cursor() as cursor:
        for chunk in itertools.batched(rows, CHUNK):
            placeholders = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {_q(table)} ({columns}) VALUES {placeholders} "  # noqa: S608 - names from code
                f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
                [value for row in chunk for value in row],
            )


def apply_moves(moves: Iterable[tuple[RowState | None, RowState | None]]) -> None:
    """Apply row moves (before, after) in one go; pairs that change nothing counted cost nothing."""
    delta = Delta()
    for before, after in moves:
        if before != after:
            delta.move(before, after)
    if delta:
        delta.apply()


def returned_states(returned: Iterable[tuple[Any, ...]], status: str) -> dict[int, RowState]:
    """id -> state of the campaign rows a conditional UPDATE returned, with ``status``.

    ``returned``: ``(id, campaign_id, pricing_category, billable, replied_at, clicked_at)`` per row, the
    statement's ``RETURNING`` (of columns it does not change, so they hold before and after).
    """
    return {
        pk: RowState(
            campaign_id,
            str(status),
            category or "",
            is_free(billable),
            replied is not None,
            clicked is not None,
        )
        for pk, campaign_id, category, billable, replied, clicked in returned
        if campaign_id is not None
    }


def status_moves(
    returned: Iterable[tuple[Any, ...]], before: str, after: str
) -> list[tuple[RowState, RowState]]:
    """Moves for rows a conditional UPDATE moved from status ``before`` to ``after``."""
    return [(old, replace(old, status=str(after))) for old in returned_states(returned, before).values()]


def moves_sql(
    moved: str,
    *,
    before: str,
    after: str,
    before_minute: str | None = None,
    after_minute: str | None = None,
) -> str:
    """PostgreSQL: CTEs that add the moves of the rows of the CTE ``moved`` to the counters.

    For a statement ``WITH moved AS (UPDATE ... RETURNING ...), <these> SELECT ... FROM moved``:
    the row change and its counter change are one statement, one round trip, instead of the
    UPDATE and one upsert per counter table after it (``apply_moves`` on the returned rows).
    ``moved`` has ``campaign_id, pricing_category, billable, replied_at, clicked_at``, columns the
    statement does not change (so they hold before and after); ``before``/``after`` are SQL of
    ``moved``'s columns giving the status before and after, ``before_minute``/``after_minute`` the
    ``sent_at`` minutes (None: the statement does not move ``sent_at``, no minute counter changes).

    The same sums as ``Delta``: per group the rows that left it and came in, zero groups dropped,
    inserted in the order of their keys (``COLLATE "C"``: the order ``Delta.apply`` sorts Python
    strings in), so a statement and a ``Delta`` touching the same groups lock them in one order.
    """
    counter, minute = _q(COUNTER), _q(MINUTE)
    rows = f"FROM {moved} WHERE campaign_id IS NOT NULL"
    flags = (
        "COALESCE(pricing_category, '') AS pricing_category, COALESCE(NOT billable, FALSE) AS free, "
        "(replied_at IS NOT NULL)::int AS replied, (clicked_at IS NOT NULL)::int AS clicked"
    )
    # Each row once out of its group before (sign -1) and once into its group after (+1).
    signed = (
        f"SELECT campaign_id, ({before})::text AS status, {flags}, -1 AS sign {rows} "
        f"UNION ALL SELECT campaign_id, ({after})::text, {flags}, 1 {rows}"
    )
    sums = ", ".join(f"{_q(c)} = {counter}.{_q(c)} + excluded.{_q(c)}" for c in ("n", "replied", "clicked"))
    sql = (
        f", {moved}_groups AS (INSERT INTO {counter} "  # noqa: S608 - names and SQL from code
        "(campaign_id, status, pricing_category, free, n, replied, clicked) "
        "SELECT campaign_id, status, pricing_category, free, SUM(sign), SUM(sign * replied), "
        f"SUM(sign * clicked) FROM ({signed}) AS s GROUP BY campaign_id, status, pricing_category, free "
        "HAVING SUM(sign) <> 0 OR SUM(sign * replied) <> 0 OR SUM(sign * clicked) <> 0 "
        'ORDER BY campaign_id, status COLLATE "C", pricing_category COLLATE "C", free '
        f"ON CONFLICT (campaign_id, status, pricing_category, free) DO UPDATE SET {sums})"
    )
    if before_minute is None or after_minute is None:
        return sql
    minutes = (
        f"SELECT campaign_id, {before_minute} AS at, -1 AS sign {rows} "
        f"UNION ALL SELECT campaign_id, {after_minute}, 1 {rows}"
    )
    return (
        f"{sql}, {moved}_minutes AS (INSERT INTO {minute} (campaign_id, minute, n) "  # noqa: S608
        f"SELECT campaign_id, at, SUM(sign) FROM ({minutes}) AS s WHERE at IS NOT NULL "
        "GROUP BY campaign_id, at HAVING SUM(sign) <> 0 ORDER BY campaign_id, at "
        f"ON CONFLICT (campaign_id, minute) DO UPDATE SET n = {minute}.n + excluded.n)"
    )


def minute_sql(column: str) -> str:
    """SQL of ``minute_of(column)`` (the UTC minute of a timestamptz), for ``moves_sql``."""
    return f"date_trunc('minute', {column}, 'UTC')"


# The RETURNING columns status_moves reads.
# Raw columns, tested in Python: SQLite 3.40 returns wrong values for ``replied_at IS NOT NULL`` in a
# RETURNING clause (always 1 here), so no expressions there.
RETURNING = "id, campaign_id, pricing_category, billable, replied_at, clicked_at"


# --- recount -----------------------------------------------------------------------------------


def counted_groups(campaign_ids: Iterable[int]):
    """The counters as the rows say they should be: one grouped pass over the campaigns' rows."""
    return (
        Message.objects.filter(campaign_id__in=list(campaign_ids))
        .values("campaign_id", "status", "pricing_category")
        .annotate(
            free=Case(When(billable=False, then=Value(True)), default=Value(False)),
            n=Count("*"),
            replied=Count("replied_at"),
            clicked=Count("clicked_at"),
        )
        .values("campaign_id", "status", "pricing_category", "free", "n", "replied", "clicked")
        .order_by()
    )


def counted_minutes(campaign_ids: Iterable[int]):
    return (
        Message.objects.filter(campaign_id__in=list(campaign_ids), sent_at__isnull=False)
        .annotate(minute=TruncMinute("sent_at", tzinfo=UTC))
        .values("campaign_id", "minute")
        .annotate(n=Count("*"))
        .order_by()
    )


def current(campaign_ids: Iterable[int]) -> tuple[dict, dict]:
    """The counters as stored, without zero groups: ({key: (n, replied, clicked)}, {(c, minute): n})."""
    ids = list(campaign_ids)
    groups = {
        (c.campaign_id, c.status, c.pricing_category, c.free): (c.n, c.replied, c.clicked)
        for c in CampaignCounter.objects.filter(campaign_id__in=ids)
        if c.n or c.replied or c.clicked
    }
    minutes = {
        (m.campaign_id, m.minute): m.n for m in CampaignMinute.objects.filter(campaign_id__in=ids) if m.n
    }
    return groups, minutes


def expected(campaign_ids: Iterable[int]) -> tuple[dict, dict]:
    """What ``current`` should be, counted from the rows (the same shape)."""
    ids = list(campaign_ids)
    groups = {
        (r["campaign_id"], r["status"], r["pricing_category"], bool(r["free"])): (
            r["n"],
            r["replied"],
            r["clicked"],
        )
        for r in counted_groups(ids)
    }
    # Recipients whose outbox row is not written yet (materialize.py) count as their row will.
    for campaign_id, to_send, n in counted_audience(ids):
        status = MessageStatus.QUEUED if to_send else MessageStatus.SKIPPED
        have = groups.get((campaign_id, status, "", False), (0, 0, 0))
        groups[(campaign_id, status, "", False)] = (have[0] + n, have[1], have[2])
    minutes = {(r["campaign_id"], minute_of(r["minute"])): r["n"] for r in counted_minutes(ids)}
    return groups, minutes


def counted_audience(campaign_ids: Iterable[int]) -> list[tuple[int, bool, int]]:
    """(campaign, to be sent, count) of the campaigns' audience rows."""
    grouped = (
        AudienceRow.objects.filter(campaign_id__in=list(campaign_ids))
        .annotate(to_send=ExpressionWrapper(Q(reason=""), output_field=BooleanField()))
        .values("campaign_id", "to_send")
        .annotate(n=Count("*"))
        .order_by()
    )
    return [(r["campaign_id"], bool(r["to_send"]), r["n"]) for r in grouped]


@transaction.atomic
def recount(campaign_ids: Iterable[int]) -> int:
    """Rebuild the counters of ``campaign_ids`` from their rows; returns how many groups changed.

    Locks the campaigns' counter rows first, so writers in flight on them commit before the rows
    are read, and later ones wait and add their change on top. (A writer creating a group the
    campaign did not have yet is not held back; recount runs when a campaign completes, when
    few rows still move, and running it again converges.)
    """
    ids = sorted(set(campaign_ids))
    if not ids:
        return 0
    list(CampaignCounter.objects.select_for_update().filter(campaign_id__in=ids).order_by("pk").values("pk"))
    list(CampaignMinute.objects.select_for_update().filter(campaign_id__in=ids).order_by("pk").values("pk"))
    have_groups, have_minutes = current(ids)
    want_groups, want_minutes = expected(ids)
    delta = Delta()
    changed = 0
    for key in have_groups.keys() | want_groups.keys():
        have, want = have_groups.get(key, (0, 0, 0)), want_groups.get(key, (0, 0, 0))
        if have != want:
            changed += 1
            delta.add(*key, n=want[0] - have[0], replied=want[1] - have[1], clicked=want[2] - have[2])
    for key in have_minutes.keys() | want_minutes.keys():
        diff = want_minutes.get(key, 0) - have_minutes.get(key, 0)
        if diff:
            changed += 1
            delta.add_minute(*key, diff)
    delta.apply()
    # Groups left at zero say nothing; the page reads fewer rows without them.
    CampaignCounter.objects.filter(campaign_id__in=ids, n=0, replied=0, clicked=0).delete()
    CampaignMinute.objects.filter(campaign_id__in=ids, n=0).delete()
    return changed
