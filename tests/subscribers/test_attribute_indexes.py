"""Event attribute indexes: asked for by a marketer, built and dropped by an actor."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from controlpanel.services import SYSTEM
from subscribers import attribute_indexes
from subscribers.errors import InvalidInput
from subscribers.models import AttributeIndex, AttributeIndexStatus
from subscribers.segments import count, parse_rule
from subscribers.services import record_event
from tests.factories import ProjectFactory, SubscriberFactory

pytestmark = pytest.mark.django_db(transaction=True)  # CREATE INDEX CONCURRENTLY needs autocommit

postgres_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="indexes exist on PostgreSQL")


@pytest.fixture
def orders():
    project = ProjectFactory()
    now = timezone.now()
    for i, cuisine in enumerate(["asian", "asian", "italian", "asian"]):
        record_event(
            project=project,
            subscriber=SubscriberFactory(project=project),
            name="OrderPlaced",
            attributes={"cuisine": cuisine, "amount": 10.0 + i * 10, "channel": "app" if i % 2 else "web"},
            occurred_at=now - timedelta(days=i * 10),
        )
    return project


def pg_index_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE relname = %s",
            [name],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def explain(sql_and_params) -> str:
    sql, params = sql_and_params
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    return plan


@pytest.mark.parametrize(
    ("event", "attribute", "message"),
    [
        ("NoSuchEvent", "x", "has no event 'NoSuchEvent'"),
        ("OrderPlaced", "colour", "'OrderPlaced' has no attribute 'colour'"),
        ("OrderPlaced", "amount", "only texts and yes/no attributes are indexed"),
    ],
)
def test_requests_for_unknown_events_or_attributes_are_refused(orders, event, attribute, message):
    with pytest.raises(InvalidInput) as exc:
        attribute_indexes.request_index(project=orders, event_name=event, attribute=attribute, actor=SYSTEM)
    assert message in exc.value.message
    assert not AttributeIndex.objects.exists()


def test_an_attribute_is_indexed_once(orders):
    attribute_indexes.request_index(
        project=orders, event_name="OrderPlaced", attribute="cuisine", actor=SYSTEM
    )
    with pytest.raises(InvalidInput, match="indexed already"):
        attribute_indexes.request_index(
            project=orders, event_name="OrderPlaced", attribute="cuisine", actor=SYSTEM
        )


def test_build_is_safe_twice_and_counts_do_not_change(orders):
    rule = parse_rule('E("OrderPlaced", gte, 1, 25d, "cuisine" eq "asian")')
    before = count(orders, rule)
    index = attribute_indexes.request_index(
        project=orders, event_name="OrderPlaced", attribute="cuisine", actor=SYSTEM
    )
    attribute_indexes.build(index.pk)
    attribute_indexes.build(index.pk)
    index.refresh_from_db()
    assert index.status == AttributeIndexStatus.READY, index.error
    assert count(orders, rule) == before == 2


@postgres_only
@pytest.mark.parametrize(
    ("attribute", "rule"),
    [
        ("cuisine", 'E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian")'),
        ("channel", 'E("OrderPlaced", gte, 1, 90d, "channel" eq "app")'),
    ],
)
def test_the_segment_query_uses_the_built_index(orders, attribute, rule):
    index = attribute_indexes.request_index(
        project=orders, event_name="OrderPlaced", attribute=attribute, actor=SYSTEM
    )
    attribute_indexes.build(index.pk)
    assert pg_index_exists(index.db_name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_statistic_ext WHERE stxname = %s", [index.db_name])
        assert cursor.fetchone()[0] == 1
    compiler, part = attribute_indexes_compiled(orders, rule)
    assert index.db_name in explain(compiler.as_ids(part).query.sql_with_params())


def attribute_indexes_compiled(project, text):
    from subscribers.segments.compiler import _compile

    return _compile(project, parse_rule(text), None)


@postgres_only
def test_drop_removes_the_index_and_the_row(orders):
    index = attribute_indexes.request_index(
        project=orders, event_name="OrderPlaced", attribute="cuisine", actor=SYSTEM
    )
    attribute_indexes.build(index.pk)
    attribute_indexes.remove_index(index=index, actor=SYSTEM)
    attribute_indexes.drop(index.pk)
    attribute_indexes.drop(index.pk)  # twice: nothing left to do
    assert not pg_index_exists(index.db_name)
    assert not AttributeIndex.objects.filter(pk=index.pk).exists()


@postgres_only
def test_a_failed_build_is_shown_not_hidden(orders, monkeypatch):
    index = attribute_indexes.request_index(
        project=orders, event_name="OrderPlaced", attribute="cuisine", actor=SYSTEM
    )
    monkeypatch.setattr(
        attribute_indexes, "_statistics_sql", lambda editor, index: "SELECT no_such_function()"
    )
    attribute_indexes.build(index.pk)
    index.refresh_from_db()
    assert index.status == AttributeIndexStatus.FAILED
    assert "no_such_function" in index.error


def test_saving_a_segment_indexes_the_attributes_it_compares(orders):
    from subscribers.segments import save_segment

    rule = parse_rule(
        'E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian", "amount" between [10, 50])'
        ' + E("OrderPlaced", gte, 1, "cuisine" contains "as", "channel" in ["app"])'
    )
    save_segment(project=orders, name="Asian food", rule=rule, actor=SYSTEM)
    # Texts compared for equality; the amount range gains nothing from an index.
    assert set(AttributeIndex.objects.values_list("event_name", "attribute", "attribute_type")) == {
        ("OrderPlaced", "cuisine", "string"),
        ("OrderPlaced", "channel", "string"),
    }
    # Saving again, or another segment on the same attributes, asks for nothing new.
    save_segment(project=orders, name="Asian food again", rule=rule, actor=SYSTEM)
    assert AttributeIndex.objects.count() == 2


def test_contains_and_is_set_ask_for_no_index(orders):
    from subscribers.segments import save_segment

    rule = parse_rule('E("OrderPlaced", gte, 1, "cuisine" contains "as", "amount" any)')
    save_segment(project=orders, name="Loose", rule=rule, actor=SYSTEM)
    assert not AttributeIndex.objects.exists()


def test_the_project_limit_stops_automatic_indexes_quietly(orders, monkeypatch):
    from subscribers.segments import save_segment

    monkeypatch.setattr(attribute_indexes, "MAX_PER_PROJECT", 1)
    rule = parse_rule('E("OrderPlaced", gte, 1, "cuisine" eq "asian", "channel" eq "app")')
    segment = save_segment(project=orders, name="Capped", rule=rule, actor=SYSTEM)
    assert segment.pk and AttributeIndex.objects.count() == 1


# ---- counts of rules that are not saved ----------------------------------------------------------

ASIAN = 'E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian")'


def test_a_slow_unsaved_count_asks_for_the_indexes_saving_would(orders, monkeypatch):
    from subscribers.segments import count_unsaved, service

    monkeypatch.setattr(service, "SLOW_COUNT_SECONDS", -1)  # every count is "slow"
    assert count_unsaved(project=orders, rule=parse_rule(ASIAN), actor=SYSTEM) == 2
    assert set(AttributeIndex.objects.values_list("event_name", "attribute")) == {("OrderPlaced", "cuisine")}


def test_a_fast_unsaved_count_asks_for_nothing(orders):
    from subscribers.segments import count_unsaved

    assert count_unsaved(project=orders, rule=parse_rule(ASIAN), actor=SYSTEM) == 2
    assert not AttributeIndex.objects.exists()


def test_the_api_count_and_the_builder_preview_ask_when_slow(orders, client, monkeypatch):
    import json

    from controlpanel.services import Actor, create_api_key
    from subscribers.segments import service
    from tests.factories import MembershipFactory

    monkeypatch.setattr(service, "SLOW_COUNT_SECONDS", -1)
    key = create_api_key(project=orders, name="t", actor=Actor(label="t"))[1]
    response = client.post(
        "/api/v1/segments/count",
        json.dumps({"rule": ASIAN}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.json() == {"count": 2}
    assert AttributeIndex.objects.filter(attribute="cuisine").count() == 1

    viewer = MembershipFactory(project=orders, role="viewer").user
    client.force_login(viewer)
    rule = parse_rule('E("OrderPlaced", gte, 1, "channel" eq "app")')
    response = client.get(
        f"/p/{orders.slug}/segments/preview/", {"source": "builder", "rule": json.dumps(rule)}
    )
    assert response.status_code == 200
    assert 'data-count="2"' in response.content.decode()
    assert AttributeIndex.objects.filter(attribute="channel").count() == 1
