"""One service records events, single and bulk: the API, status batches and the bulk API all use it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from datetime import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from subscribers.errors import InvalidInput
from subscribers.models import Event, EventQuerySet
from subscribers.services import NewEvent, Recorded, record_event, record_events
from tests.factories import SubscriberFactory
from tests.subscribers.test_api_subscribers import ApiClient, key_for

pytestmark = pytest.mark.django_db

FAR_EAST_END_OF_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))


def test_bulk_form_keeps_good_items_and_names_the_bad_ones(project):
    ada = SubscriberFactory(project=project)
    results = record_events(
        project=project,
        events=[
            NewEvent(ada.pk, "OrderPlaced", {"amount": 10}),
            NewEvent(ada.pk, "Not a name!"),
            NewEvent(ada.pk, "OrderPlaced", {"amount": "lots"}),
            NewEvent(ada.pk, "OrderPlaced", {"amount": 12}, datetime(2026, 1, 1, 12, 0)),
        ],
    )
    assert [type(r) for r in results] == [Recorded, InvalidInput, InvalidInput, Recorded]
    assert results[2].code == "wrong_attribute_type"
    assert Event.objects.filter(subscriber=ada).count() == 2
    # A time without an offset is the project's local time.
    zone = ZoneInfo(project.time_zone)
    assert results[3].event.occurred_at == datetime(2026, 1, 1, 12, 0, tzinfo=zone)


def test_dedup_keys_against_the_database_and_within_the_batch(project):
    ada = SubscriberFactory(project=project)
    first = record_event(project=project, subscriber=ada, name="Paid", dedup_key="pay-1")
    results = record_events(
        project=project,
        events=[
            NewEvent(ada.pk, "Paid", dedup_key="pay-1"),
            NewEvent(ada.pk, "Paid", dedup_key="pay-2"),
            NewEvent(ada.pk, "Paid", dedup_key="pay-2"),
        ],
    )
    assert [(r.event.pk == first.pk, r.duplicate) for r in results[:1]] == [(True, True)]
    assert results[1].duplicate is False and results[2].duplicate is True
    assert results[1].event.pk == results[2].event.pk
    assert Event.objects.filter(subscriber=ada, name="Paid").count() == 2


def test_a_key_taken_meanwhile_falls_back_one_by_one(project, monkeypatch):
    """A concurrent writer recorded a key between our look-up and our INSERT: nothing twice, no error."""
    ada = SubscriberFactory(project=project)
    original = EventQuerySet.filter
    raced = []

    def other_writer_commits_after_our_lookup(self, *args, **kwargs):
        if "dedup_key__in" not in kwargs or raced:
            return original(self, *args, **kwargs)
        raced.append(
            Event.objects.create(
                project=project, subscriber=ada, name="Paid", dedup_key="race", occurred_at=dt.now(UTC)
            )
        )
        return self.none()  # our look-up ran before the other writer's commit

    monkeypatch.setattr(EventQuerySet, "filter", other_writer_commits_after_our_lookup)
    results = record_events(
        project=project,
        events=[NewEvent(ada.pk, "Paid", dedup_key="race"), NewEvent(ada.pk, "Other")],
    )
    assert raced
    assert [r.duplicate for r in results] == [True, False]
    assert results[0].event.pk == raced[0].pk
    assert Event.objects.filter(subscriber=ada, name="Paid").count() == 1
    assert Event.objects.filter(subscriber=ada, name="Other").count() == 1


def test_an_event_time_out_of_range_is_an_error_not_a_crash(project):
    ada = SubscriberFactory(project=project)
    with pytest.raises(InvalidInput) as exc:
        record_event(project=project, subscriber=ada, name="Late", occurred_at=FAR_EAST_END_OF_TIME)
    assert (exc.value.code, exc.value.field) == ("out_of_range", "occurred_at")
    [result] = record_events(
        project=project, events=[NewEvent(ada.pk, "Late", occurred_at=FAR_EAST_END_OF_TIME)]
    )
    assert isinstance(result, InvalidInput)


def test_api_refuses_an_event_time_out_of_range_per_item(client, project):
    api = ApiClient(client, key_for(project))
    ada = SubscriberFactory(project=project)
    ref = {"id": str(ada.public_id)}
    single = api.post(
        "/events", {"subscriber": ref, "name": "Late", "occurred_at": "9999-12-31T23:59:59-14:00"}
    )
    assert single.status_code == 422, single.content
    assert single.json()["code"] == "out_of_range"
    bulk = api.post(
        "/events/bulk",
        {
            "events": [
                {"subscriber": ref, "name": "Late", "occurred_at": "9999-12-31T23:59:59-14:00"},
                {"subscriber": ref, "name": "OnTime", "occurred_at": "2026-12-01T10:00:00Z"},
            ]
        },
    )
    assert bulk.status_code == 200
    [late, on_time] = bulk.json()["results"]
    assert late["error"]["code"] == "out_of_range"
    assert on_time["status"] == "created"
    assert Event.objects.get(subscriber=ada).occurred_at == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
