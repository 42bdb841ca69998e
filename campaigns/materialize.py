"""Outbox rows from a campaign's audience snapshot, in chunks, a minute of sending ahead of the sender.

The snapshot (fanout.py) writes narrow ``AudienceRow``s: a million of them in a few seconds, where a
million outbox rows cost half a minute of index entries and foreign-key checks (ADR 0009). This
module turns them into outbox rows: the first ``INLINE_ROWS`` in the snapshot's own transaction (a
small campaign is whole at once, and a large one can start sending at once), the rest from the
start-due tick, ``CHUNK`` rows per transaction, while a running campaign has fewer than ``AHEAD``
due rows queued. So the cost of the wide rows is paid while the campaign sends, never in one go.

Each chunk moves rows in one transaction: it writes the outbox rows (``ON CONFLICT DO NOTHING``:
a row the campaign has already is not written twice) and deletes the audience rows, under the
campaign row's lock (``FOR NO KEY UPDATE``: chunks of one campaign take turns, pause and cancel wait
for a chunk, foreign-key checks of other writers do not). A crash loses nothing: the audience rows
stay until the transaction that wrote their outbox rows commits.

The counters counted the audience rows at the snapshot (queued, or skipped with the reason), so a
chunk changes them only where a row is not written as it was counted: a subscriber deleted since
the snapshot (left out: nobody to send to), or a cancelled campaign (queued rows become skipped,
"campaign cancelled", as ``lifecycle.cancel`` does to outbox rows).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from controlpanel.sql import insert_select_columns, json_param, new_uuid_sql, q
from subscribers.models import Subscriber

from . import counters, sendpolicy
from .models import AudienceRow, Campaign, CampaignStatus, Channel, Message, MessageKind, MessageStatus

CHUNK = 5_000
# Due queued rows a running campaign keeps ready: a minute at Meta's highest throughput for a number.
AHEAD = 60_000
# Rows the snapshot turns into outbox rows itself, in its transaction (a fraction of a second).
INLINE_ROWS = 10_000
# Statuses whose audience rows are still to be written (a cancelled campaign's as skipped).
MOVING = (CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.CANCELLED)


def move(campaign: Campaign, limit: int, at: datetime) -> int:
    """Write up to ``limit`` of ``campaign``'s audience rows (lowest subscriber ids first) as outbox
    rows and delete them; returns how many audience rows were moved.

    Call it in a transaction that holds the campaign row (``step`` and the snapshot do). ``at`` is
    the snapshot's time, the rows' first history entry ("campaign launch").
    """
    if limit <= 0:
        return 0
    table = q(AudienceRow._meta.db_table)
    with connection.cursor() as cursor:
        # The chunk is a range of the primary key: the limit-th subscriber id bounds it.
        cursor.execute(
            f"SELECT subscriber_id FROM {table} WHERE campaign_id = %s "  # noqa: S608 - names from code
            "ORDER BY subscriber_id LIMIT 1 OFFSET %s",
            [campaign.pk, limit - 1],
        )
        bound = cursor.fetchone()
        upto, upto_params = ("AND subscriber_id <= %s", [bound[0]]) if bound else ("", [])
        cursor.execute(
            f"SELECT CASE WHEN reason = '' THEN 1 ELSE 0 END, COUNT(*) FROM {table} "  # noqa: S608
            f"WHERE campaign_id = %s {upto} GROUP BY 1",
            [campaign.pk, *upto_params],
        )
        moved = {bool(to_send): n for to_send, n in cursor.fetchall()}
        if not moved:
            return 0
        sql, params = _insert_sql(campaign, at, upto.replace("subscriber_id", "t.subscriber_id"))
        cursor.execute(sql, [*params, campaign.pk, *upto_params])
        written = Counter(status for (status,) in cursor.fetchall())
        cursor.execute(
            f"DELETE FROM {table} WHERE campaign_id = %s {upto}",  # noqa: S608
            [campaign.pk, *upto_params],
        )
    # What the snapshot counted (queued / skipped) against what was written.
    queued = written[MessageStatus.QUEUED] - moved.get(True, 0)
    skipped = written[MessageStatus.SKIPPED] - moved.get(False, 0)
    if queued or skipped:
        delta = counters.Delta()
        delta.add(campaign.pk, MessageStatus.QUEUED, n=queued)
        delta.add(campaign.pk, MessageStatus.SKIPPED, n=skipped)
        delta.apply()
    return sum(moved.values())


def _insert_sql(campaign: Campaign, at: datetime, upto: str) -> tuple[str, list[Any]]:
    """The ``INSERT ... SELECT`` of the chunk's outbox rows and its leading parameters (the campaign
    id and the bound follow)."""
    launch = {"at": at.isoformat(), "note": "campaign launch"}
    queued = [{"status": MessageStatus.QUEUED.value, **launch}]
    skipped = [{"status": MessageStatus.SKIPPED.value, **launch}]
    to_send = "t.reason = ''"
    if campaign.status == CampaignStatus.CANCELLED:
        cancelled = {"status": MessageStatus.SKIPPED.value, "at": timezone.now().isoformat()}
        queued_history = [*queued, {**cancelled, "note": "campaign cancelled"}]
        status = ("%s", [MessageStatus.SKIPPED.value])
        reason = (f"CASE WHEN {to_send} THEN %s ELSE t.reason END", [sendpolicy.CANCELLED])
        send_after = ("NULL", [])
    else:
        queued_history = queued
        status = (
            f"CASE WHEN {to_send} THEN %s ELSE %s END",
            [MessageStatus.QUEUED.value, MessageStatus.SKIPPED.value],
        )
        reason = ("t.reason", [])
        send_after = (f"CASE WHEN {to_send} THEN t.send_after ELSE NULL END", [])
    queued_sql, queued_params = json_param(queued_history)
    skipped_sql, skipped_params = json_param(skipped)
    # Written now (the dashboard's past days are final: no row appears later with an earlier
    # creation time); the history says when the snapshot queued or skipped the recipient.
    stamp = connection.ops.adapt_datetimefield_value(timezone.now())
    explicit: dict[str, tuple[str, list[Any]]] = {
        "project_id": ("%s", [campaign.project_id]),
        "public_id": (new_uuid_sql(), []),
        "subscriber_id": ("t.subscriber_id", []),
        "campaign_id": ("%s", [campaign.pk]),
        "channel": ("%s", [Channel.WHATSAPP.value]),
        "status": status,
        "account_id": ("%s", [campaign.account_id]),
        "kind": ("%s", [MessageKind.TEMPLATE.value]),
        "template_name": ("%s", [campaign.template_name]),
        "marketing": ("%s", [campaign.marketing]),
        "reason": reason,
        "send_after": send_after,
        "values": (f"t.{q('values')}", []),
        "history": (
            f"CASE WHEN {to_send} THEN {queued_sql} ELSE {skipped_sql} END",
            [*queued_params, *skipped_params],
        ),
        "created_at": ("%s", [stamp]),
        "updated_at": ("%s", [stamp]),
    }
    columns, expressions, params = insert_select_columns(Message, explicit)
    # The join leaves out subscribers deleted since the snapshot; "WHERE" before ON CONFLICT is
    # there anyway (SQLite needs one in INSERT ... SELECT).
    sql = (
        f"INSERT INTO {q(Message._meta.db_table)} ({', '.join(columns)}) "  # noqa: S608 - names from code
        f"SELECT {', '.join(expressions)} FROM {q(AudienceRow._meta.db_table)} t "
        f"JOIN {q(Subscriber._meta.db_table)} s ON s.id = t.subscriber_id "
        f"WHERE t.campaign_id = %s {upto} ON CONFLICT DO NOTHING RETURNING status"
    )
    return sql, params


def due_ahead(campaign_id: int, now: datetime, limit: int = AHEAD) -> int:
    """The campaign's queued outbox rows that are due, counted up to ``limit`` (message_campaign_due)."""
    due = Message.objects.filter(campaign_id=campaign_id, status=MessageStatus.QUEUED).filter(
        Q(send_after__isnull=True) | Q(send_after__lte=now)
    )
    return due.order_by()[:limit].count()


def step(campaign_id: int, now: datetime | None = None) -> int:
    """One chunk of one campaign, in its own transaction; returns how many audience rows moved (0:
    nothing to do now, because none are left, or the campaign has enough due rows queued, or it is
    not in a state that sends)."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = Campaign.objects.select_for_update(no_key=True, of=("self",))
        campaign = rows.filter(pk=campaign_id, status__in=MOVING).first()
        if campaign is None:
            return 0
        limit = CHUNK
        if campaign.status != CampaignStatus.CANCELLED:
            limit = min(CHUNK, AHEAD - due_ahead(campaign_id, now))
        return move(campaign, limit, campaign.snapshot_at or now)


def pending_campaigns() -> list[int]:
    """Campaigns with audience rows still to be written."""
    left = AudienceRow.objects.filter(campaign=OuterRef("pk"))
    return list(
        Campaign.objects.filter(status__in=MOVING, snapshot_at__isnull=False)
        .filter(Exists(left))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def pending(budget_seconds: float = 4.0) -> int:
    """Chunks for every campaign that has audience rows left, until each has enough due rows
    queued or ``budget_seconds`` are spent (the start-due tick calls it every few seconds, so the
    next tick goes on). Safe to run twice at once; returns how many audience rows moved."""
    deadline = time.monotonic() + budget_seconds
    total = 0
    for campaign_id in pending_campaigns():
        while time.monotonic() < deadline:
            moved = step(campaign_id)
            total += moved
            if not moved:
                break
    return total
