"""The outbox's indexes: every one a fan-out pays for per row must serve a query (issue 9).

A campaign writes a million outbox rows in one statement, and each index on ``campaigns_message``
is a write per row. Migration 0009 dropped the ones that duplicated the leading column of
another (and ``wamid``'s pattern-ops index); these tests keep them out, and keep what the
lookups and the parents' deletes still need.
"""

from __future__ import annotations

import pytest
from django.db import connection

from campaigns.models import Message

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="index definitions of PostgreSQL"),
]


def _indexes() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [Message._meta.db_table]
        )
        return dict(cursor.fetchall())


def test_no_index_repeats_the_leading_column_of_another():
    indexes = _indexes()
    for gone in (
        "campaigns_message_project_id_a07cd870",
        "campaigns_message_subscriber_id_da059e95",
        "campaigns_message_campaign_id_de4b21fa",
        "campaigns_message_wamid_b0dac114_like",
    ):
        assert gone not in indexes
    single = [
        definition.split("(", 1)[1].rstrip(")")
        for definition in indexes.values()
        if " WHERE " not in definition and "," not in definition.split("(", 1)[1]
    ]
    # A plain one-column index is worth its write only when no composite index over every row (not
    # a partial one) leads with it.
    for column in single:
        leading = [
            d for d in indexes.values() if " WHERE " not in d and d.split("(", 1)[1].startswith(f"{column},")
        ]
        assert not leading, f"the index on ({column}) repeats {leading}"


def test_every_parent_reaches_its_messages_through_an_index():
    """Deleting a project, subscriber, campaign, account or template finds its messages by index,
    not by reading the whole outbox."""
    definitions = list(_indexes().values())
    for column in ("project_id", "subscriber_id", "campaign_id", "account_id", "template_id"):
        assert any(
            d.split("(", 1)[1].startswith((f"{column})", f"{column},", f"{column} ")) and " WHERE " not in d
            for d in definitions
        ), column


def test_the_idempotency_key_is_unique_only_where_there_is_one():
    definition = _indexes()["message_unique_idempotency_key"]
    assert definition.startswith("CREATE UNIQUE INDEX")
    assert "WHERE (idempotency_key IS NOT NULL)" in definition


def test_status_webhooks_find_their_messages_by_wamid_through_the_unique_index():
    assert _indexes()["message_unique_wamid"].startswith("CREATE UNIQUE INDEX")
    query = Message.objects.filter(wamid__in=["wamid.A", "wamid.B"]).values("pk")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = query.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "message_unique_wamid" in plan, plan


def _plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def test_the_dispatchers_lease_finds_its_rows_by_key_whatever_the_estimates(account):
    """A campaign launched after the outbox's last ANALYZE is estimated at one row. The lease's UPDATE
    then met every queued row of the table in a nested loop against its CTE (10 s for 2,000 rows of
    30,000 in the pipeline benchmark); it must look the picked rows up by primary key. Planned here
    on the test database's guesses (no ANALYZE: its statistics would outlive the test's rollback),
    on which the old ``status = 'queued' AND id IN (...)`` also walked the due index."""
    from datetime import timedelta

    from django.utils import timezone

    from campaigns import sending

    from .outbox import fill, make_campaign

    campaign = make_campaign(account)
    fill(campaign, 1500)
    now = timezone.now()
    sql = sending._lease_sql("campaign_id = %s AND send_after IS NULL", "send_after, id")
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", [campaign.pk, 400, now + timedelta(minutes=1)])
        plan = cursor.fetchone()[0][0]["Plan"]
    assert plan["Node Type"] == "ModifyTable"
    by_key = [n for n in _plan_nodes(plan) if "ANY" in n.get("Index Cond", "")]
    assert [n["Index Name"] for n in by_key] == ["campaigns_message_pkey"], plan
    assert not any(n["Node Type"] == "Nested Loop" for n in _plan_nodes(plan))
    leased = sending._lease_due("campaign_id = %s", [campaign.pk], 400, now, now + timedelta(minutes=1))
    assert len(leased) == 400 and len(set(leased)) == 400
