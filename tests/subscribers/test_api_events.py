"""The /api/v1/events endpoints, through HTTP with a real API key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from subscribers.models import Event, EventDefinition, Subscriber
from subscribers.signals import event_recorded
from tests.factories import ProjectFactory, SubscriberFactory
from tests.subscribers.test_api_subscribers import ApiClient, key_for


@pytest.fixture
def api(client, project):
    return ApiClient(client, key_for(project))


@pytest.fixture
def ada(project):
    return SubscriberFactory(project=project, phone="+4915112345678", external_id="crm-ada")


def test_event_by_id_is_201_with_the_event(api, project, ada):
    response = api.post(
        "/events",
        {
            "subscriber": {"id": str(ada.public_id)},
            "name": "OrderPlaced",
            "attributes": {"cuisine": "asian", "amount": 23.5},
            "occurred_at": "2026-01-31T12:00:00+01:00",
        },
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    event = Event.objects.get(project=project, name="OrderPlaced")
    assert body["id"] == str(event.pk)
    assert body["name"] == "OrderPlaced"
    assert body["subscriber"] == {"id": str(ada.public_id)}
    assert body["attributes"] == {"cuisine": "asian", "amount": 23.5}
    assert body["duplicate"] is False
    assert datetime.fromisoformat(body["occurred_at"]) == datetime(2026, 1, 31, 11, 0, tzinfo=UTC)
    assert event.subscriber == ada
    assert event.occurred_at == datetime(2026, 1, 31, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "ref", [{"phone": "0151 12345678"}, {"phone": "+49 151 1234 5678"}, {"external_id": "crm-ada"}]
)
def test_event_by_phone_or_external_id(api, ada, ref):
    response = api.post("/events", {"subscriber": ref, "name": "AppOpened"})
    assert response.status_code == 201, response.json()
    assert response.json()["subscriber"]["id"] == str(ada.public_id)
    assert Event.objects.filter(subscriber=ada, name="AppOpened").count() == 1


def test_event_without_time_happens_now_and_a_time_without_offset_is_the_projects(api, ada):
    now = api.post("/events", {"subscriber": {"id": str(ada.public_id)}, "name": "A"})
    assert abs(datetime.fromisoformat(now.json()["occurred_at"]) - datetime.now(UTC)).total_seconds() < 60
    naive = api.post(
        "/events",
        {"subscriber": {"id": str(ada.public_id)}, "name": "A", "occurred_at": "2026-01-31T10:00:00"},
    )
    # The factory's project is in Europe/Berlin: 10:00 there is 09:00 UTC.
    assert datetime.fromisoformat(naive.json()["occurred_at"]) == datetime(2026, 1, 31, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ref", "field"),
    [
        ({"id": "8d1c3bde-0c8b-4b1c-9e40-8a3f3c1e0f00"}, "subscriber.id"),
        ({"phone": "+4915199999999"}, "subscriber.phone"),
        ({"external_id": "nobody"}, "subscriber.external_id"),
    ],
)
def test_unknown_subscriber_is_refused_and_nobody_is_created(api, project, ada, ref, field):
    response = api.post("/events", {"subscriber": ref, "name": "OrderPlaced"})
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "subscriber_not_found"
    assert body["field"] == field
    assert "create the subscriber first" in body["message"]
    assert list(Subscriber.objects.for_project(project)) == [ada]
    assert not Event.objects.filter(name="OrderPlaced").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subscriber": {}, "name": "A"}, "subscriber"),
        ({"subscriber": {"phone": "+4915112345678", "external_id": "crm-ada"}, "name": "A"}, "subscriber"),
        ({"subscriber": {"phone": "12"}, "name": "A"}, "subscriber.phone"),
        ({"subscriber": {"id": "not-a-uuid"}, "name": "A"}, "subscriber.id"),
        ({"subscriber": {"external_id": "crm-ada"}}, "name"),
        ({"subscriber": {"external_id": "crm-ada"}, "name": "Order Placed"}, "name"),
        ({"subscriber": {"external_id": "crm-ada"}, "name": "A", "occurred_at": "yesterday"}, "occurred_at"),
        ({"subscriber": {"external_id": "crm-ada"}, "name": "A", "attributes": [1]}, "attributes"),
        ({"subscriber": {"external_id": "crm-ada"}, "name": "A", "attributes": {"x": [1]}}, "attributes.x"),
        ({"subscriber": {"external_id": "crm-ada"}, "name": "A", "dedup_key": "k" * 201}, "dedup_key"),
        ({"subscriber": {"external_id": "crm-ada"}, "name": "A", "when": "now"}, "when"),
    ],
)
def test_bad_event_input_is_422_naming_the_field(api, ada, body, field):
    response = api.post("/events", body)
    assert response.status_code == 422, response.json()
    assert response.json()["field"] == field
    assert response.json()["message"]
    assert not Event.objects.filter(subscriber=ada).exclude(name="Subscribed").exists()


def test_attribute_of_the_wrong_type_is_422_naming_attribute_and_type(api, project, ada):
    ref = {"id": str(ada.public_id)}
    api.post("/events", {"subscriber": ref, "name": "OrderPlaced", "attributes": {"amount": 23.5}})
    response = api.post(
        "/events", {"subscriber": ref, "name": "OrderPlaced", "attributes": {"amount": "lots"}}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "wrong_attribute_type"
    assert body["field"] == "attributes.amount"
    assert body["message"] == "Attribute 'amount' of 'OrderPlaced' expects decimal (price), got 'lots'."
    assert Event.objects.filter(project=project, name="OrderPlaced").count() == 1
    assert EventDefinition.objects.get(project=project, name="OrderPlaced").attributes == {
        "amount": "decimal"
    }


def test_default_event_attributes_are_typed_too(api, ada):
    response = api.post(
        "/events",
        {
            "subscriber": {"id": str(ada.public_id)},
            "name": "WhatsAppFailed",
            "attributes": {"error_code": "x"},
        },
    )
    assert response.status_code == 422
    assert "expects integer" in response.json()["message"]


def test_dedup_key_records_once_and_returns_the_first_event(api, project, ada):
    body = {"subscriber": {"id": str(ada.public_id)}, "name": "OrderPlaced", "dedup_key": "order-42"}
    first = api.post("/events", body)
    second = api.post("/events", {**body, "attributes": {"ignored": True}})
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["attributes"] == {}
    assert Event.objects.filter(project=project, dedup_key="order-42").count() == 1


def test_event_is_announced_after_commit(api, ada, django_capture_on_commit_callbacks):
    received = []

    def receiver(sender, payload, **kwargs):
        received.append(payload)

    event_recorded.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post("/events", {"subscriber": {"id": str(ada.public_id)}, "name": "Clicked"})
    finally:
        event_recorded.disconnect(receiver)
    assert [(p.name, p.subscriber_id, str(p.event_id)) for p in received] == [
        ("Clicked", ada.pk, response.json()["id"])
    ]


def test_key_of_project_a_cannot_record_events_for_project_b(api, project, client):
    other = ProjectFactory()
    theirs = SubscriberFactory(project=other, phone="+4915187654321", external_id="b-1")
    for ref in ({"id": str(theirs.public_id)}, {"phone": "+4915187654321"}, {"external_id": "b-1"}):
        response = api.post("/events", {"subscriber": ref, "name": "Hacked"})
        assert response.status_code == 404
        assert response.json()["code"] == "subscriber_not_found"
    bulk = api.post(
        "/events/bulk", {"events": [{"subscriber": {"id": str(theirs.public_id)}, "name": "Hacked"}]}
    )
    assert bulk.json()["results"][0]["error"]["code"] == "subscriber_not_found"
    assert not Event.objects.filter(name="Hacked").exists()
    # The same key in project B works, so the 404 above is about tenancy only.
    their_api = ApiClient(client, key_for(other))
    assert their_api.post("/events", {"subscriber": {"external_id": "b-1"}, "name": "Ok"}).status_code == 201


# --- bulk ----------------------------------------------------------------------------------------


def test_bulk_records_valid_events_and_reports_invalid_ones_in_order(api, project, ada):
    bob = SubscriberFactory(project=project, phone="+4915111111111")
    Event.objects.create(
        project=project, subscriber=ada, name="Old", occurred_at=datetime.now(UTC), dedup_key="seen"
    )
    response = api.post(
        "/events/bulk",
        {
            "events": [
                {"subscriber": {"id": str(ada.public_id)}, "name": "OrderPlaced", "attributes": {"n": 1}},
                {"subscriber": {"phone": "+4915199999999"}, "name": "OrderPlaced"},
                {"subscriber": {"phone": "0151 11111111"}, "name": "OrderPlaced", "attributes": {"n": "one"}},
                "not an object",
                {"subscriber": {"phone": "nonsense"}, "name": "OrderPlaced"},
                {"subscriber": {"external_id": "crm-ada"}, "name": "Rated", "dedup_key": "r-1"},
                {"subscriber": {"phone": "+4915111111111"}, "name": "Rated", "dedup_key": "r-1"},
                {"subscriber": {"id": str(ada.public_id)}, "name": "Again", "dedup_key": "seen"},
                {"subscriber": {"phone": "+4915111111111"}, "name": "OrderPlaced", "attributes": {"n": 2}},
                {"subscriber": {"id": str(bob.public_id)}, "name": "bad name!"},
            ]
        },
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(10))
    statuses = [r.get("status") or r["error"]["code"] for r in results]
    assert statuses == [
        "created",
        "subscriber_not_found",
        "wrong_attribute_type",
        "validation_error",
        "invalid_phone",
        "created",
        "duplicate",
        "duplicate",
        "created",
        "invalid_event_name",
    ]
    assert results[2]["error"]["field"] == "attributes.n"
    assert results[4]["error"]["field"] == "subscriber.phone"
    assert results[6]["id"] == results[5]["id"]
    assert results[7]["id"] == str(Event.objects.get(dedup_key="seen").pk)
    assert set(results[1]) == {"index", "error"}

    recorded = Event.objects.for_project(project).exclude(name="Old").order_by("id")
    assert [(e.subscriber_id, e.name, e.attributes) for e in recorded] == [
        (ada.pk, "OrderPlaced", {"n": 1}),
        (ada.pk, "Rated", {}),
        (bob.pk, "OrderPlaced", {"n": 2}),
    ]
    assert [str(e.pk) for e in recorded] == [results[0]["id"], results[5]["id"], results[8]["id"]]


def test_bulk_resolves_subscribers_with_one_query(api, project):
    people = [SubscriberFactory(project=project, external_id=f"u{n}") for n in range(30)]
    events = []
    for n, person in enumerate(people):
        ref = [{"id": str(person.public_id)}, {"phone": person.phone}, {"external_id": person.external_id}][
            n % 3
        ]
        events.append({"subscriber": ref, "name": "Viewed", "attributes": {"page": n}})
    with CaptureQueriesContext(connection) as queries:
        response = api.post("/events/bulk", {"events": events})
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["created"] * 30
    subscriber_reads = [q for q in queries.captured_queries if 'FROM "subscribers_subscriber"' in q["sql"]]
    # One to resolve the 30 references, one to hold the 30 subscribers while their events are
    # written (subscribers/holds.py): none per event.
    assert len(subscriber_reads) == 2
    assert "FOR KEY SHARE" in subscriber_reads[1]["sql"] or connection.vendor != "postgresql"
    assert Event.objects.filter(project=project, name="Viewed").count() == 30


def test_bulk_of_more_than_1000_is_refused_whole(api, project, ada):
    events = [{"subscriber": {"id": str(ada.public_id)}, "name": "A"}] * 1001
    response = api.post("/events/bulk", {"events": events})
    assert response.status_code == 422
    assert response.json()["field"] == "events"
    assert not Event.objects.filter(name="A").exists()


def test_bulk_of_1000_events_is_accepted(api, project, ada):
    events = [
        {"subscriber": {"external_id": "crm-ada"}, "name": "Viewed", "attributes": {"page": n}}
        for n in range(1000)
    ]
    response = api.post("/events/bulk", {"events": events})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1000
    assert Event.objects.filter(project=project, name="Viewed").count() == 1000


def test_events_require_a_key(client):
    response = client.post(
        "/api/v1/events",
        data={"subscriber": {"id": str(uuid.uuid4())}, "name": "A"},
        content_type="application/json",
    )
    assert response.status_code == 401
