"""The audience snapshot: one ``INSERT ... SELECT`` of a row for every recipient of a campaign.

Launch writes one narrow ``AudienceRow`` per recipient in a single statement, never a Python loop
per row (design section 4, ADR 0009): the audience comes from the segment compiler's id query (or
a rule, everyone opted in, the uploaded list), and what can be decided in SQL is decided there, as
a skip reason a marketer reads (sendpolicy's words): no number, opted out, no opt-in (marketing),
frequency cap (marketing), a local send time that had passed. ``send_after`` carries the schedule:
a fixed time, or a local time per subscriber time zone, computed in Python for the few distinct
zones and applied with a ``CASE``. The primary key and ``ON CONFLICT DO NOTHING`` make a re-run
add nobody twice. The outbox rows (``Message``, queued or skipped) follow from these rows in
chunks (materialize.py): the first ones in the snapshot's transaction, the rest while it sends.

``plan`` is shared with preflight.py, so the counts shown before launch are the rows launch writes.
The SQL is plain enough for PostgreSQL and SQLite alike; the few differences are in
``controlpanel.sql`` (``new_uuid_sql``, ``json_param``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from controlpanel.sql import json_param
from subscribers.errors import InvalidInput
from subscribers.models import ConsentState, Subscriber
from subscribers.segments import compiler
from subscribers.segments.text import parse_rule
from whatsapp.models import TemplateCategory

from . import counters, materialize, sendpolicy
from .models import (
    AudienceKind,
    AudienceRow,
    Campaign,
    CampaignRecipient,
    Message,
    MessageStatus,
    PassedLocalTime,
    ScheduleKind,
    SendingPolicy,
)

# The subscriber columns the snapshot and preflight read from the audience query.
AUDIENCE_COLUMNS = (
    "id", "phone", "wa_id", "bsuid", "external_id", "whatsapp_consent", "time_zone", "country",
)  # fmt: skip
# The earliest local time on Earth is UTC+14: a local-time campaign's snapshot runs when the first
# zone reaches its hour.
EARLIEST_OFFSET = dt_timezone(timedelta(hours=14))

# Exclusion codes (preflight's keys) -> the reason launch writes on the skipped row.
REASONS = {
    "missing_number": sendpolicy.NO_NUMBER,
    "opted_out": sendpolicy.OPTED_OUT,
    "no_opt_in": sendpolicy.NO_OPT_IN,
    "capped": sendpolicy.CAPPED,
    "local_time_passed": sendpolicy.LOCAL_TIME_PASSED,
}


def q(name: str) -> str:
    return connection.ops.quote_name(name)


@dataclass
class Condition:
    code: str
    sql: str
    params: list[Any] = field(default_factory=list)


@dataclass
class Plan:
    """The audience of a campaign as SQL: a FROM clause (alias ``s`` for the subscriber columns),
    the ordered skip conditions (the first that holds is the reason), ``send_after`` and ``values``."""

    from_sql: str
    from_params: list[Any]
    conditions: list[Condition]
    send_after_sql: str
    send_after_params: list[Any]
    values_sql: str
    values_params: list[Any]

    def reason_case(self, labels: dict[str, str], extra: list[Condition] = ()) -> tuple[str, list[Any]]:
        """``CASE WHEN <condition> THEN <label> ... END``: NULL when the recipient is sent to."""
        conditions = [*self.conditions, *extra]
        if not conditions:
            return "NULL", []
        sql, params = ["CASE"], []
        for condition in conditions:
            sql.append(f"WHEN {condition.sql} THEN %s")
            params += [*condition.params, labels[condition.code]]
        sql.append("ELSE NULL END")
        return " ".join(sql), params


def audience(campaign: Campaign) -> QuerySet[Subscriber]:
    """The campaign's audience as a query of the project's subscribers (not yet filtered by policy)."""
    project = campaign.project
    rows = Subscriber.objects.for_project(project)
    if campaign.audience_kind == AudienceKind.EVERYONE:
        return rows.filter(whatsapp_consent=ConsentState.OPTED_IN)
    if campaign.audience_kind == AudienceKind.LIST:
        if campaign.pk is None:
            return rows.none()
        keys = CampaignRecipient.objects.filter(campaign=campaign).values("key")
        return rows.filter(Q(phone__in=keys) | Q(external_id__in=keys))
    tree = campaign.rule or None
    if not tree and campaign.audience_kind == AudienceKind.SEGMENT and campaign.segment is not None:
        tree = campaign.segment.rule
    if isinstance(tree, str):
        tree = parse_rule(tree)
    if not tree:
        field_name = "segment" if campaign.audience_kind == AudienceKind.SEGMENT else "rule"
        raise InvalidInput(
            gettext("The campaign has no audience: choose a segment or write a rule."), field=field_name
        )
    return compiler.audience(project, tree)


def plan(campaign: Campaign, now: datetime, *, extra_columns: Sequence[str] = ()) -> Plan:
    """The campaign's audience and skip conditions as SQL, as of ``now``; ``extra_columns`` are
    further subscriber fields the caller reads from ``s``."""
    project = campaign.project
    columns = [*AUDIENCE_COLUMNS, *(c for c in extra_columns if c not in AUDIENCE_COLUMNS)]
    audience_sql, audience_params = audience(campaign).order_by().values(*columns).query.sql_with_params()
    from_sql = f"({audience_sql}) s"
    from_params = list(audience_params)
    conditions: list[Condition] = []
    marketing = campaign.marketing
    if campaign.category == TemplateCategory.AUTHENTICATION:
        conditions.append(Condition("missing_number", "s.phone IS NULL"))
    else:
        conditions.append(Condition("missing_number", "s.phone IS NULL AND s.wa_id = '' AND s.bsuid IS NULL"))
    conditions.append(Condition("opted_out", "s.whatsapp_consent = %s", [ConsentState.OPTED_OUT.value]))
    if marketing:
        conditions.append(Condition("no_opt_in", "s.whatsapp_consent <> %s", [ConsentState.OPTED_IN.value]))
        sending_policy = SendingPolicy.objects.filter(project=project).first()
        if sending_policy is not None and sending_policy.cap_messages is not None:
            capped = (
                Message.objects.filter(project=project)
                .filter(sendpolicy.counts_toward_cap(sendpolicy.cap_window(sending_policy, now)))
                .order_by()
                .values("subscriber_id")
                .annotate(n=Count("id"))
                .filter(n__gte=sending_policy.cap_messages)
                .values("subscriber_id")
            )
            capped_sql, capped_params = capped.query.sql_with_params()
            from_sql += f" LEFT JOIN ({capped_sql}) capped ON capped.subscriber_id = s.id"
            from_params += list(capped_params)
            conditions.append(Condition("capped", "capped.subscriber_id IS NOT NULL"))
    send_after_sql, send_after_params = _ts("NULL"), []
    if campaign.schedule_kind == ScheduleKind.AT and campaign.scheduled_at is not None:
        send_after_sql, send_after_params = _ts("%s"), [_datetime(campaign.scheduled_at)]
    elif campaign.schedule_kind == ScheduleKind.LOCAL_TIME and campaign.local_time is not None:
        times, passed = local_send_times(campaign, _distinct_zones(audience_sql, audience_params), now)
        send_after_sql, send_after_params = _zone_case(times)
        if passed:
            placeholders = ", ".join(["%s"] * len(passed))
            skip = Condition("local_time_passed", f"s.time_zone IN ({placeholders})", sorted(passed))
            conditions.append(skip)
    empty_sql, empty_params = json_param({})
    values_sql, values_params = empty_sql, empty_params
    if campaign.pk is not None and CampaignRecipient.objects.filter(campaign=campaign).exists():
        recipients = q(CampaignRecipient._meta.db_table)
        from_sql += (
            f" LEFT JOIN {recipients} rp ON rp.campaign_id = %s AND rp.{q('key')} = s.phone"
            f" LEFT JOIN {recipients} rx ON rx.campaign_id = %s AND rx.{q('key')} = s.external_id"
        )
        from_params += [campaign.pk, campaign.pk]
        values_sql = f"COALESCE(rp.{q('values')}, rx.{q('values')}, {empty_sql})"
        values_params = list(empty_params)
    return Plan(
        from_sql=from_sql,
        from_params=from_params,
        conditions=conditions,
        send_after_sql=send_after_sql,
        send_after_params=send_after_params,
        values_sql=values_sql,
        values_params=values_params,
    )


def snapshot(campaign: Campaign, now: datetime | None = None) -> int:
    """Write the campaign's audience in one ``INSERT ... SELECT`` of narrow ``AudienceRow``s, count
    them, and turn the first ``materialize.INLINE_ROWS`` into outbox rows; returns how many
    recipients were added. The rest become outbox rows from the start-due tick (materialize.py).

    Idempotent: a recipient who has an audience or outbox row already is not added again (0 on a
    re-run). Call it in the transaction that moves the campaign on (lifecycle.start_due), so a
    crash leaves neither. ``now``: the campaign's ``snapshot_at``, the outbox rows' creation time.
    """
    now = now or timezone.now()
    p = plan(campaign, now)
    reason_sql, reason_params = p.reason_case(_reason_labels(campaign))
    where, where_params = "WHERE 1 = 1", []  # SQLite needs a WHERE before ON CONFLICT in INSERT ... SELECT
    if Message.objects.filter(campaign=campaign).exists():
        # A re-run after outbox rows were written: the audience table alone no longer knows them.
        messages = q(Message._meta.db_table)
        where = f"WHERE NOT EXISTS (SELECT 1 FROM {messages} m WHERE m.campaign_id = %s AND m.subscriber_id = s.id)"  # noqa: S608, E501
        where_params = [campaign.pk]
    sql = (
        f"INSERT INTO {q(AudienceRow._meta.db_table)} "  # noqa: S608 - names and SQL from code
        f"(campaign_id, subscriber_id, send_after, reason, {q('values')}) "
        f"SELECT %s, s.id, {p.send_after_sql}, COALESCE({reason_sql}, ''), {p.values_sql} FROM {p.from_sql} "
        f"{where} ON CONFLICT DO NOTHING"
    )
    params = [
        campaign.pk,
        *p.send_after_params,
        *reason_params,
        *p.values_params,
        *p.from_params,
        *where_params,
    ]
    # The counters (counters.py) in the same transaction: on PostgreSQL from the statement's own
    # RETURNING, grouped (no second pass over the rows); SQLite has no INSERT in a CTE, so there the
    # campaign is recounted, exact too because nothing else writes a campaign's rows before it runs.
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(sql, params)
            written = max(cursor.rowcount, 0)
            if written:
                counters.recount([campaign.pk])
        else:
            cursor.execute(
                f"WITH written AS ({sql} RETURNING reason = '' AS to_send) "  # noqa: S608
                "SELECT to_send, COUNT(*) FROM written GROUP BY to_send",
                params,
            )
            groups = cursor.fetchall()
            delta = counters.Delta()
            for to_send, n in groups:
                delta.add(campaign.pk, MessageStatus.QUEUED if to_send else MessageStatus.SKIPPED, n=n)
            delta.apply()
            written = sum(n for _, n in groups)
    materialize.move(campaign, materialize.INLINE_ROWS, now)
    return written


def _reason_labels(campaign: Campaign) -> dict[str, str]:
    labels = dict(REASONS)
    if campaign.category == TemplateCategory.AUTHENTICATION:
        labels["missing_number"] = sendpolicy.NEEDS_PHONE
    return labels


# ---- schedules -------------------------------------------------------------------------------


def fallback_zone(campaign: Campaign) -> tzinfo:
    return sendpolicy.zone(campaign.fallback_time_zone or campaign.project.time_zone, ZoneInfo("UTC"))


def local_day(campaign: Campaign, now: datetime) -> date:
    """The day of a local-time campaign: the scheduled date (in the fallback zone), else today there."""
    return (campaign.scheduled_at or now).astimezone(fallback_zone(campaign)).date()


def due_at(campaign: Campaign, now: datetime) -> datetime:
    """When a launched campaign's snapshot is due."""
    if campaign.schedule_kind == ScheduleKind.AT and campaign.scheduled_at is not None:
        return campaign.scheduled_at
    if campaign.schedule_kind == ScheduleKind.LOCAL_TIME and campaign.local_time is not None:
        return datetime.combine(local_day(campaign, now), campaign.local_time, tzinfo=EARLIEST_OFFSET)
    return campaign.launched_at or now


def local_send_times(
    campaign: Campaign, zone_names: list[str], now: datetime
) -> tuple[dict[str, datetime | None], set[str]]:
    """For each time zone name (as stored on subscribers), when its recipients get the message, and
    the names where the local time had passed and ``passed_local_time`` is "skip".

    Empty or unknown names use the fallback zone. A passed time is sent now (None: no wait), the
    next day at that time, or skipped.
    """
    fallback = fallback_zone(campaign)
    day = local_day(campaign, now)
    times: dict[str, datetime | None] = {}
    passed: set[str] = set()
    for name in [*zone_names, ""]:
        at = datetime.combine(day, campaign.local_time, tzinfo=sendpolicy.zone(name, fallback))
        if at < now:
            if campaign.passed_local_time == PassedLocalTime.SKIP:
                passed.add(name)
                at = None
            elif campaign.passed_local_time == PassedLocalTime.NEXT_DAY:
                at = datetime.combine(day + timedelta(days=1), campaign.local_time, tzinfo=at.tzinfo)
            else:
                at = None
        times[name] = at.astimezone(UTC) if at is not None else None
    if "" not in zone_names:
        passed.discard("")
    return times, passed


def _distinct_zones(audience_sql: str, audience_params: Any) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT s.time_zone FROM ({audience_sql}) s", list(audience_params))  # noqa: S608
        return sorted(row[0] or "" for row in cursor.fetchall())


def _zone_case(times: dict[str, datetime | None]) -> tuple[str, list[Any]]:
    sql, params = ["CASE s.time_zone"], []
    for name, at in times.items():
        if name == "":
            continue
        sql.append(f"WHEN %s THEN {_ts('%s')}")
        params += [name, _datetime(at)]
    # The fallback zone: empty names, and a name that appeared after the distinct query.
    sql.append(f"ELSE {_ts('%s')} END")
    params.append(_datetime(times[""]))
    if len(sql) == 2:
        return _ts("%s"), [_datetime(times[""])]
    return " ".join(sql), params


# ---- vendor details --------------------------------------------------------------------------


def _datetime(value: datetime | None) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _ts(sql: str) -> str:
    """A timestamp expression typed for PostgreSQL (a bare NULL or parameter in a subquery is text)."""
    return f"CAST({sql} AS timestamptz)" if connection.vendor == "postgresql" else sql
