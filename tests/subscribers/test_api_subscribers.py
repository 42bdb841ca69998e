"""The /api/v1/subscribers endpoints, through HTTP with a real API key."""

from __future__ import annotations

import json
import uuid

import pytest
from django.apps import apps
from django.db import connection, models
from django.utils import timezone

from controlpanel.models import AuditEntry
from controlpanel.services import Actor, create_api_key
from subscribers.models import (
    ConsentChange,
    ConsentSource,
    ConsentState,
    Event,
    Subscriber,
    TagDefinition,
    TagType,
    TagValue,
)
from subscribers.services import clean_subscriber_data, tags_of, upsert_subscriber
from tests.factories import ProjectFactory, SubscriberFactory
from whatsapp.models import WebhookDelivery, WhatsAppAccount


class ApiClient:
    """The Django test client speaking JSON with a bearer key."""

    def __init__(self, client, raw_key: str):
        self.client = client
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}

    def _send(self, method: str, path: str, body=None):
        kwargs = {"content_type": "application/json", **self.headers}
        if body is not None:
            kwargs["data"] = json.dumps(body)
        return getattr(self.client, method)(f"/api/v1{path}", **kwargs)

    def get(self, path: str, **params):
        return self.client.get(f"/api/v1{path}", params, **self.headers)

    def post(self, path: str, body=None):
        return self._send("post", path, body)

    def patch(self, path: str, body):
        return self._send("patch", path, body)

    def delete(self, path: str):
        return self._send("delete", path)


def key_for(project) -> str:
    return create_api_key(project=project, name="backend", actor=Actor(label="test"))[1]


@pytest.fixture
def api(client, project):
    return ApiClient(client, key_for(project))


@pytest.fixture
def other_project(db):
    return ProjectFactory()


# --- POST /subscribers ---------------------------------------------------------------------------


def test_create_returns_201_with_normalized_phone_tags_and_opt_in(api, project):
    response = api.post(
        "/subscribers",
        {
            "phone": "0151 1234 5678",
            "external_id": "user-1",
            "name": "Ada Lovelace",
            "email": "Ada@Example.com",
            "language": "de",
            "country": "de",
            "timezone": "Europe/Berlin",
            "tags": {"city": "Berlin", "orders": 3},
            "whatsapp_opt_in": {"evidence": "Checkout checkbox, 2026-01-31"},
        },
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    subscriber = Subscriber.objects.get(project=project)
    assert body["id"] == str(subscriber.public_id)
    assert body["phone"] == "+4915112345678"
    assert body["status"] == "created"
    assert body["external_id"] == "user-1"
    assert body["name"] == "Ada Lovelace"
    assert body["email"] == "ada@example.com"
    assert body["country"] == "DE"
    assert body["timezone"] == "Europe/Berlin"
    assert body["tags"]["city"] == "Berlin"
    assert body["tags"]["orders"] == 3
    assert body["tags"]["Language"] == "de"
    assert body["whatsapp_consent"] == "opted_in"
    assert body["created_at"]
    ledger = ConsentChange.objects.get(subscriber=subscriber)
    assert (ledger.source, ledger.state, ledger.evidence) == (
        ConsentSource.API,
        ConsentState.OPTED_IN,
        "Checkout checkbox, 2026-01-31",
    )
    assert "backend" in ledger.actor_label
    assert list(Event.objects.filter(subscriber=subscriber).values_list("name", flat=True)) == ["Subscribed"]


def test_same_body_twice_is_200_unchanged_and_duplicates_nothing(api, project):
    body = {
        "phone": "+4915112345678",
        "name": "Ada",
        "tags": {"city": "Berlin", "interests": ["food", "travel"]},
        "whatsapp_opt_in": {"evidence": "web form"},
    }
    first = api.post("/subscribers", body)
    second = api.post("/subscribers", body)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["status"] == "unchanged"
    assert second.json()["changed"] is False
    assert second.json()["id"] == first.json()["id"]
    assert Subscriber.objects.for_project(project).count() == 1
    assert TagValue.objects.for_project(project).count() == 3
    assert ConsentChange.objects.for_project(project).count() == 1
    assert Event.objects.for_project(project).filter(name="Subscribed").count() == 1


def test_existing_phone_is_updated_with_200(api, project):
    api.post("/subscribers", {"phone": "+4915112345678", "name": "Ada"})
    response = api.post("/subscribers", {"phone": "015112345678", "name": "Ada L."})
    assert response.status_code == 200
    assert response.json()["changed"] is True
    assert Subscriber.objects.get(project=project).name == "Ada L."


def test_upsert_by_external_id_without_phone(api, project):
    SubscriberFactory(project=project, phone="+4915112345678", external_id="crm-7", name="Old")
    response = api.post("/subscribers", {"external_id": "crm-7", "name": "New"})
    assert response.status_code == 200
    assert response.json()["phone"] == "+4915112345678"
    assert Subscriber.objects.get(project=project).name == "New"


def test_unknown_external_id_without_phone_is_refused(api, project):
    response = api.post("/subscribers", {"external_id": "nobody", "name": "Ghost"})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert response.json()["field"] == "phone"
    assert not Subscriber.objects.for_project(project).exists()


def test_phone_and_external_id_of_two_people_is_a_conflict(api, project):
    SubscriberFactory(project=project, phone="+4915111111111", name="One")
    SubscriberFactory(project=project, phone="+4915122222222", external_id="two", name="Two")
    response = api.post("/subscribers", {"phone": "+4915111111111", "external_id": "two", "name": "X"})
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert response.json()["field"] == "external_id"
    assert set(Subscriber.objects.values_list("name", flat=True)) == {"One", "Two"}


@pytest.mark.parametrize(
    ("phone", "reason"),
    [
        ("12", "too short"),
        ("+49 151 1234 5678 9999 1", "too long"),
        ("hello", "is not a phone number: use digits"),
        ("+999 1234567", "country code is unknown"),
    ],
)
def test_invalid_phone_is_422_naming_the_field(api, project, phone, reason):
    response = api.post("/subscribers", {"phone": phone, "name": "X"})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "phone"
    assert body["code"] == "invalid_phone"
    assert reason in body["message"]
    assert not Subscriber.objects.for_project(project).exists()


def test_phone_or_external_id_is_required(api):
    response = api.post("/subscribers", {"name": "Nobody"})
    assert response.status_code == 422
    assert response.json()["field"] == "phone"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"country": "Germany"}, "country"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"name": 5}, "name"),
        ({"tags": ["a"]}, "tags"),
        ({"nickname": "Ada"}, "nickname"),
        ({"whatsapp_opt_in": {}}, "whatsapp_opt_in.evidence"),
        ({"whatsapp_opt_in": {"evidence": "  "}}, "whatsapp_opt_in.evidence"),
    ],
)
def test_bad_fields_are_422_naming_the_field_and_write_nothing(api, project, body, field):
    response = api.post("/subscribers", {"phone": "+4915112345678", **body})
    assert response.status_code == 422, response.json()
    assert response.json()["field"] == field
    assert response.json()["message"]
    assert not Subscriber.objects.for_project(project).exists()


def test_wrong_tag_type_is_422_naming_tag_and_type_and_changes_nothing(api, project):
    api.post("/subscribers", {"phone": "+4915112345678", "name": "Ada", "tags": {"orders": 3}})
    assert TagDefinition.objects.get(project=project, name="orders").type == TagType.INTEGER

    response = api.post(
        "/subscribers", {"phone": "+4915112345678", "name": "Changed", "tags": {"orders": "abc", "new": "x"}}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "wrong_tag_type"
    assert body["field"] == "tags.orders"
    assert "'orders'" in body["message"]
    assert "integer" in body["message"]
    subscriber = Subscriber.objects.get(project=project)
    assert subscriber.name == "Ada"
    assert not TagDefinition.objects.filter(project=project, name="new").exists()


@pytest.mark.parametrize(
    ("value", "tag_type", "shown"),
    [
        ("Berlin", TagType.STRING, "Berlin"),
        (42, TagType.INTEGER, 42),
        (19.99, TagType.DECIMAL, "19.99"),
        (True, TagType.BOOLEAN, True),
        (["asian", "italian"], TagType.LIST, ["asian", "italian"]),
        ("1990-05-17", TagType.DATE, "1990-05-17"),
    ],
)
def test_new_tag_takes_the_type_of_its_first_value(api, project, value, tag_type, shown):
    response = api.post("/subscribers", {"phone": "+4915112345678", "tags": {"my tag": value}})
    assert response.status_code == 201, response.json()
    assert TagDefinition.objects.get(project=project, name="my tag").type == tag_type
    assert response.json()["tags"]["my tag"] == shown


@pytest.mark.parametrize(
    ("first", "later", "expected"),
    [
        ("Berlin", 5, "string"),
        (19.99, "cheap", "decimal"),
        (True, "yes", "boolean"),
        (["a"], "a", "list of strings"),
        ("1990-05-17", "soon", "date"),
    ],
)
def test_later_values_must_fit_the_first_type(api, project, first, later, expected):
    api.post("/subscribers", {"phone": "+4915112345678", "tags": {"t": first}})
    response = api.post("/subscribers", {"phone": "+4915199999999", "tags": {"t": later}})
    assert response.status_code == 422
    assert f"Tag 't' expects {expected}" in response.json()["message"]
    assert Subscriber.objects.for_project(project).count() == 1


def test_tag_set_to_null_is_removed(api, project):
    api.post("/subscribers", {"phone": "+4915112345678", "tags": {"city": "Berlin", "vip": True}})
    response = api.post("/subscribers", {"phone": "+4915112345678", "tags": {"city": None}})
    assert response.status_code == 200
    assert "city" not in response.json()["tags"]
    assert response.json()["tags"]["vip"] is True


def test_unauthenticated_requests_are_401(client, project):
    response = client.post("/api/v1/subscribers", data="{}", content_type="application/json")
    assert response.status_code == 401
    assert client.get(f"/api/v1/subscribers/{uuid.uuid4()}").status_code == 401


# --- POST /subscribers/bulk ----------------------------------------------------------------------


def test_bulk_applies_valid_items_refuses_invalid_ones_in_order(api, project):
    existing = SubscriberFactory(project=project, phone="+4915100000000", name="Existing")
    api.post("/subscribers", {"phone": "+4915100000001", "tags": {"orders": 1}})
    response = api.post(
        "/subscribers/bulk",
        {
            "subscribers": [
                {"phone": "+4915111111111", "name": "New"},
                {"phone": "not a phone", "name": "Bad phone"},
                {"phone": "+4915122222222", "tags": {"fresh": "x", "orders": "many"}},
                {"phone": "0151 11111111", "name": "New, renamed"},
                "not an object",
                {"phone": "+4915133333333", "surname": "typo"},
                {"phone": "+4915100000000", "name": "Existing, renamed"},
                {"phone": "+4915100000000", "name": "Existing, renamed"},
            ]
        },
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(8))
    new = Subscriber.objects.get(project=project, phone="+4915111111111")
    assert results[0] == {"index": 0, "id": str(new.public_id), "status": "created", "changed": True}
    assert results[1]["error"]["field"] == "phone"
    assert results[1]["error"]["code"] == "invalid_phone"
    assert results[2]["error"]["field"] == "tags.orders"
    assert "integer" in results[2]["error"]["message"]
    assert results[3] == {"index": 3, "id": str(new.public_id), "status": "updated", "changed": True}
    assert results[4]["error"]["code"] == "validation_error"
    assert results[5]["error"]["field"] == "surname"
    assert results[6]["status"] == "updated"
    assert results[6]["id"] == str(existing.public_id)
    assert results[7]["changed"] is False
    for failed in (1, 2, 4, 5):
        assert set(results[failed]) == {"index", "error"}

    new.refresh_from_db()
    existing.refresh_from_db()
    assert new.name == "New, renamed"
    assert existing.name == "Existing, renamed"
    phones = set(Subscriber.objects.for_project(project).values_list("phone", flat=True))
    assert phones == {"+4915100000000", "+4915100000001", "+4915111111111"}
    # The invalid item's new tag was rolled back with it.
    assert not TagDefinition.objects.filter(project=project, name="fresh").exists()


# Each item exercises one rule of upsert_subscriber; bulk must end exactly where one POST per
# item in the same order ends (it takes shortcuts for plain items, see api.SubscriberBatch).
PARITY_ITEMS = [
    {"phone": "+4915100000001", "name": "A", "tags": {"orders": 1, "city": "Berlin"}},
    {"phone": "+4915100000002", "external_id": "e2", "whatsapp_opt_in": {"evidence": "form"}},
    {"phone": "+4915100000001", "tags": {"orders": 2}},
    {"phone": "+4915100000003", "tags": {"fresh": "x", "orders": "many"}},
    {"phone": "+4915100000004", "tags": {"fresh": 5}},
    {"external_id": "e2", "phone": "+4915100000005"},
    {"phone": "+4915100000002", "name": "New person on the freed number"},
    {"phone": "+4915100000009", "external_id": "pre", "name": "Renamed"},
    {"phone": "+4915100000008", "tags": {"vip": True, "Language": "en"}},
    {"external_id": "ghost", "name": "Nobody"},
    {"phone": "+4915100000007", "whatsapp_opt_in": {"evidence": "later"}},
    {"phone": "+4915100000006", "tags": {"score": None, "vip": True}},
    {"phone": "+4915100000006", "external_id": "pre"},
    {"phone": "+4915100000010", "tags": {"City": "Hamburg", "city": "Köln"}},
    {"phone": "+4915100000011", "tags": {"when": "2026-01-31"}, "name": "Date"},
    {"phone": "+4915100000012", "tags": {"when": "not a date"}},
    {"phone": "+4915100000013", "tags": {"orders": "3"}},
    {"phone": "+4915100000014", "tags": {"unset": None, "price": 9.5}},
    {"phone": "+4915100000015", "name": "Unchanged", "tags": {"score": 1}},
    {"phone": "+4915100000016", "tags": {"score": 2.5}},
    {"phone": "+4915100000009", "external_id": "pre", "email": "pre@example.com"},
    {"phone": "+4915100000017", "external_id": "e17", "tags": {"interests": ["a", "b"]}},
    {"phone": "+4915100000018", "external_id": "e17"},
    {"external_id": "e19", "phone": "+4915100000020"},
    {"phone": "+4915100000019", "name": "Fresh on the freed number"},
]


def seed(project) -> None:
    for raw in [
        {"phone": "+4915100000006", "tags": {"score": 5, "vip": False}},
        {"phone": "+4915100000007"},
        {"phone": "+4915100000008"},
        {"phone": "+4915100000009", "external_id": "pre"},
        {"phone": "+4915100000015", "name": "Unchanged", "tags": {"score": 1}},
        {"phone": "+4915100000019", "external_id": "e19"},
    ]:
        upsert_subscriber(
            project=project, data=clean_subscriber_data(project, raw), actor=Actor(label="seed")
        )


def state_of(project) -> dict:
    subscribers = {}
    for s in Subscriber.objects.for_project(project).order_by("phone"):
        tags = tags_of(s)
        tags.pop("First seen")
        subscribers[s.phone] = {
            "fields": (s.external_id, s.name, s.email, s.language, s.whatsapp_consent),
            "tags": tags,
            "consent": list(s.consent_changes.order_by("id").values_list("state", "source", "evidence")),
            "events": sorted(s.events.values_list("name", flat=True)),
        }
    definitions = set(TagDefinition.objects.for_project(project).values_list("name", "type"))
    return {"subscribers": subscribers, "definitions": definitions}


def test_bulk_ends_where_one_post_per_item_ends(client, project, other_project):
    seed(project)
    seed(other_project)
    one_by_one = ApiClient(client, key_for(other_project))
    expected = []
    for index, item in enumerate(PARITY_ITEMS):
        response = one_by_one.post("/subscribers", item)
        body = response.json()
        if response.status_code >= 400:
            expected.append((index, "error", body["code"], body.get("field")))
        else:
            expected.append((index, body["status"], body["changed"], uuid.UUID(body["id"])))
    final_phones = dict(Subscriber.objects.for_project(other_project).values_list("public_id", "phone"))
    expected = [(*row[:3], final_phones[row[3]]) if row[1] != "error" else row for row in expected]

    bulk = ApiClient(client, key_for(project)).post("/subscribers/bulk", {"subscribers": PARITY_ITEMS})
    phones = dict(Subscriber.objects.for_project(project).values_list("public_id", "phone"))
    got = []
    for result in bulk.json()["results"]:
        if "error" in result:
            got.append((result["index"], "error", result["error"]["code"], result["error"].get("field")))
        else:
            phone = phones[uuid.UUID(result["id"])]
            got.append((result["index"], result["status"], result["changed"], phone))
    assert got == expected
    assert state_of(project) == state_of(other_project)
    # The sequence covers creates, real updates, no-ops, conflicts and type errors.
    kinds = {row[1:3] for row in expected}
    assert {("created", True), ("updated", True), ("unchanged", False)} <= kinds
    assert {("error", "conflict"), ("error", "wrong_tag_type"), ("error", "not_found")} <= kinds


def test_bulk_of_more_than_1000_is_refused_whole(api, project):
    items = [{"phone": f"+49151{n:08d}"} for n in range(1001)]
    response = api.post("/subscribers/bulk", {"subscribers": items})
    assert response.status_code == 422
    assert response.json()["field"] == "subscribers"
    assert not Subscriber.objects.for_project(project).exists()


def test_bulk_of_1000_takes_a_few_statements_per_batch_not_per_item(
    api, project, django_assert_max_num_queries
):
    items = [
        {
            "phone": f"+49151{n:08d}",
            "external_id": f"u{n}",
            "tags": {"city": "Berlin", "score": n, "interests": ["a", "b"]},
            "whatsapp_opt_in": {"evidence": "signup form"},
        }
        for n in range(1000)
    ]
    with django_assert_max_num_queries(31):
        response = api.post("/subscribers/bulk", {"subscribers": items})
    assert response.status_code == 200
    assert {r["status"] for r in response.json()["results"]} == {"created"}
    assert Subscriber.objects.for_project(project).count() == 1000
    assert TagValue.objects.for_project(project).count() == 4000
    assert ConsentChange.objects.for_project(project).count() == 1000
    assert Event.objects.for_project(project).filter(name="Subscribed").count() == 1000

    with django_assert_max_num_queries(10):
        again = api.post("/subscribers/bulk", {"subscribers": items})
    assert {(r["status"], r["changed"]) for r in again.json()["results"]} == {("unchanged", False)}

    changed = [{**item, "name": "Renamed", "tags": {"score": -1}} for item in items]
    with django_assert_max_num_queries(30):
        updated = api.post("/subscribers/bulk", {"subscribers": changed})
    assert {(r["status"], r["changed"]) for r in updated.json()["results"]} == {("updated", True)}
    assert set(Subscriber.objects.for_project(project).values_list("name", flat=True)) == {"Renamed"}
    assert TagValue.objects.for_project(project).filter(tag__name="score", value_number=-1).count() == 1000
    assert TagValue.objects.for_project(project).count() == 4000


def test_bulk_falls_back_to_one_by_one_when_a_concurrent_request_wins(api, project, monkeypatch):
    from subscribers.api import SubscriberBatch

    original = SubscriberBatch.load_existing

    def then_another_request_inserts(self, items):
        original(self, items)
        SubscriberFactory(project=project, phone="+4915111111111", name="Concurrent")

    monkeypatch.setattr(SubscriberBatch, "load_existing", then_another_request_inserts)
    items = [{"phone": "+4915111111111", "name": "Mine"}, {"phone": "+4915122222222", "name": "Other"}]
    response = api.post("/subscribers/bulk", {"subscribers": items})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["status"], r["changed"]) for r in results] == [("updated", True), ("created", True)]
    assert dict(Subscriber.objects.for_project(project).values_list("phone", "name")) == {
        "+4915111111111": "Mine",
        "+4915122222222": "Other",
    }


# --- GET / PATCH ---------------------------------------------------------------------------------


def test_get_returns_the_subscriber(api, project):
    created = api.post("/subscribers", {"phone": "+4915112345678", "name": "Ada", "tags": {"vip": True}})
    response = api.get(f"/subscribers/{created.json()['id']}")
    assert response.status_code == 200
    assert response.json()["phone"] == "+4915112345678"
    assert response.json()["tags"]["vip"] is True
    assert response.json()["whatsapp_consent"] == "unknown"


def test_get_unknown_or_malformed_id(api):
    missing = api.get(f"/subscribers/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["code"] == "subscriber_not_found"
    malformed = api.get("/subscribers/123")
    assert malformed.status_code == 422
    assert malformed.json()["field"] == "id"


def test_lookup_by_phone_or_external_id(api, project):
    subscriber = SubscriberFactory(project=project, phone="+4915112345678", external_id="crm-1")
    by_phone = api.get("/subscribers", phone="0151 12345678")
    assert [r["id"] for r in by_phone.json()["results"]] == [str(subscriber.public_id)]
    by_external = api.get("/subscribers", external_id="crm-1")
    assert [r["id"] for r in by_external.json()["results"]] == [str(subscriber.public_id)]
    assert api.get("/subscribers", phone="+4915112345678", external_id="other").json()["results"] == []
    assert api.get("/subscribers", phone="+4915199999999").json()["results"] == []
    assert api.get("/subscribers").status_code == 422
    assert api.get("/subscribers", phone="nonsense").json()["field"] == "phone"


def test_patch_changes_only_given_fields_and_merges_tags(api, project):
    created = api.post(
        "/subscribers",
        {"phone": "+4915112345678", "name": "Ada", "email": "ada@example.com", "tags": {"a": "1", "b": 2}},
    ).json()
    response = api.patch(
        f"/subscribers/{created['id']}",
        {"name": "Ada L.", "language": "en", "tags": {"a": None, "c": ["x"]}},
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["name"] == "Ada L."
    assert body["email"] == "ada@example.com"
    assert body["language"] == "en"
    assert "a" not in body["tags"]
    assert body["tags"]["b"] == 2
    assert body["tags"]["c"] == ["x"]
    assert AuditEntry.objects.filter(project=project, action="subscriber.updated").exists()


def test_patch_clears_profile_fields_with_null(api, project):
    created = api.post("/subscribers", {"phone": "+4915112345678", "email": "a@example.com"}).json()
    response = api.patch(f"/subscribers/{created['id']}", {"email": None, "external_id": None})
    assert response.status_code == 200
    assert response.json()["email"] == ""
    assert Subscriber.objects.get(project=project).email == ""


def test_patch_phone_to_a_free_number(api, project):
    created = api.post("/subscribers", {"phone": "+4915112345678"}).json()
    response = api.patch(f"/subscribers/{created['id']}", {"phone": "0151 87654321"})
    assert response.status_code == 200
    assert response.json()["phone"] == "+4915187654321"
    assert Subscriber.objects.get(project=project).phone == "+4915187654321"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"phone": "+4915100000000"}, 409, "phone"),
        ({"external_id": "taken"}, 409, "external_id"),
        ({"phone": "123"}, 422, "phone"),
        ({"phone": None}, 422, "phone"),
        ({"name": "Changed", "tags": {"orders": "many"}}, 422, "tags.orders"),
        ({"name": "Changed", "email": "nope"}, 422, "email"),
        ({"name": "Changed", "tags": {"WhatsApp opt-in": True}}, 422, "tags.WhatsApp opt-in"),
        ({"nmae": "typo"}, 422, "nmae"),
    ],
)
def test_patch_errors_change_nothing(api, project, body, status, field):
    SubscriberFactory(project=project, phone="+4915100000000", external_id="taken")
    created = api.post(
        "/subscribers", {"phone": "+4915112345678", "name": "Ada", "tags": {"orders": 2}}
    ).json()
    response = api.patch(f"/subscribers/{created['id']}", body)
    assert response.status_code == status, response.json()
    assert response.json()["field"] == field
    subscriber = Subscriber.objects.get(public_id=created["id"])
    assert (subscriber.phone, subscriber.name, subscriber.external_id) == ("+4915112345678", "Ada", None)
    assert api.get(f"/subscribers/{created['id']}").json()["tags"]["orders"] == 2


# --- consent -------------------------------------------------------------------------------------


def test_opt_in_and_opt_out_write_the_ledger(api, project):
    created = api.post("/subscribers", {"phone": "+4915112345678"}).json()
    path = f"/subscribers/{created['id']}"

    opted_in = api.post(f"{path}/opt-in", {"evidence": "Double opt-in mail confirmed 2026-02-01"})
    assert opted_in.status_code == 200
    assert opted_in.json()["whatsapp_consent"] == "opted_in"
    again = api.post(f"{path}/opt-in", {"evidence": "again"})
    assert again.status_code == 200
    opted_out = api.post(f"{path}/opt-out", {"evidence": "Replied STOP"})
    assert opted_out.json()["whatsapp_consent"] == "opted_out"

    rows = list(
        ConsentChange.objects.for_project(project)
        .order_by("created_at", "id")
        .values_list("state", "source", "evidence")
    )
    assert rows == [
        ("opted_in", "api", "Double opt-in mail confirmed 2026-02-01"),
        ("opted_out", "api", "Replied STOP"),
    ]
    assert Event.objects.for_project(project).filter(name="Unsubscribed").count() == 1
    assert Subscriber.objects.get(project=project).whatsapp_consent == ConsentState.OPTED_OUT


def test_opt_out_without_a_body(api, project):
    subscriber = SubscriberFactory(project=project)
    response = api.post(f"/subscribers/{subscriber.public_id}/opt-out")
    assert response.status_code == 200
    assert ConsentChange.objects.get(subscriber=subscriber).evidence == ""


@pytest.mark.parametrize("body", [{}, {"evidence": "   "}, None])
def test_opt_in_without_evidence_is_422_and_records_nothing(api, project, body):
    subscriber = SubscriberFactory(project=project, whatsapp_consent=ConsentState.UNKNOWN)
    response = api.post(f"/subscribers/{subscriber.public_id}/opt-in", body)
    assert response.status_code == 422
    assert not ConsentChange.objects.filter(subscriber=subscriber).exists()
    subscriber.refresh_from_db()
    assert subscriber.whatsapp_consent == ConsentState.UNKNOWN


# --- erase and export ----------------------------------------------------------------------------


def rows_containing(needle: str) -> list[str]:
    """Every text or JSON value in every table that contains ``needle``, as 'model.field'."""
    hits = []
    tables = set(connection.introspection.table_names())
    for model in apps.get_models(include_auto_created=True):
        if model._meta.db_table not in tables:  # a model whose migration is still being written
            continue
        fields = [
            f.attname
            for f in model._meta.concrete_fields
            if isinstance(f, models.CharField | models.TextField | models.JSONField)
        ]
        if not fields:
            continue
        for row in model._base_manager.values(*fields):
            for name, value in row.items():
                if value is not None and needle in (value if isinstance(value, str) else json.dumps(value)):
                    hits.append(f"{model._meta.label}.{name}")
    return hits


def test_erase_leaves_no_trace_of_the_phone(api, project, django_capture_on_commit_callbacks, monkeypatch):
    from whatsapp import privacy

    # The scrub of stored webhook bodies runs in a worker; here it runs at once.
    monkeypatch.setattr(privacy.scrub_webhook_bodies, "send", privacy.scrub_webhook_bodies.fn)
    phone = "+4915112345678"
    created = api.post(
        "/subscribers",
        {
            "phone": phone,
            "external_id": "crm-erase",
            "tags": {"backup phone": phone, "city": "Berlin"},
            "whatsapp_opt_in": {"evidence": f"Texted JOIN from {phone}"},
        },
    ).json()
    api.post("/events", {"subscriber": {"phone": phone}, "name": "Called", "attributes": {"from": phone}})
    api.get(f"/subscribers/{created['id']}/export")  # audited with the subscriber's name or phone
    account = WhatsAppAccount.objects.create(
        project=project, waba_id="1", phone_number_id="100", access_token="t", app_secret="s"
    )
    inbound = {"contacts": [{"wa_id": phone[1:]}], "messages": [{"from": phone[1:], "text": {"body": "Hi"}}]}
    WebhookDelivery.objects.create(
        project=project,
        account=account,
        body_sha256="0" * 64,
        body=json.dumps(inbound),
        received_at=timezone.now(),
    )
    other = SubscriberFactory(project=project, phone="+4915199999999")
    before = rows_containing(phone)
    assert {
        "subscribers.Subscriber.phone",
        "subscribers.TagValue.value_text",
        "subscribers.ConsentChange.evidence",
        "subscribers.Event.attributes",
        "controlpanel.AuditEntry.object_repr",
    } <= set(before)
    assert "whatsapp.WebhookDelivery.body" in rows_containing(phone[1:])

    with django_capture_on_commit_callbacks(execute=True):  # other apps scrub their copies on commit
        response = api.delete(f"/subscribers/{created['id']}")
    assert response.status_code == 204

    assert rows_containing(phone) == []
    assert rows_containing(phone.lstrip("+")) == []
    assert rows_containing("crm-erase") == []
    assert api.get(f"/subscribers/{created['id']}").status_code == 404
    assert api.delete(f"/subscribers/{created['id']}").status_code == 404
    assert Subscriber.objects.filter(pk=other.pk).exists()
    assert AuditEntry.objects.filter(
        project=project, action="subscriber.erased", changes={"subscriber": created["id"]}
    ).exists()


def test_export_contains_everything_and_is_audited(api, project):
    created = api.post(
        "/subscribers",
        {
            "phone": "+4915112345678",
            "name": "Ada",
            "tags": {"vip": True},
            "whatsapp_opt_in": {"evidence": "x"},
        },
    ).json()
    api.post("/events", {"subscriber": {"id": created["id"]}, "name": "OrderPlaced", "attributes": {"n": 1}})
    response = api.get(f"/subscribers/{created['id']}/export")
    assert response.status_code == 200
    data = response.json()
    assert data["id"] == created["id"]
    assert data["phone"] == "+4915112345678"
    assert data["tags"]["vip"] is True
    assert [c["state"] for c in data["consent_history"]] == ["opted_in"]
    assert [e["name"] for e in data["events"]] == ["Subscribed", "OrderPlaced"]
    assert AuditEntry.objects.filter(
        project=project, action="subscriber.exported", object_id=created["id"]
    ).exists()


# --- tenancy -------------------------------------------------------------------------------------


def test_key_of_project_a_cannot_touch_project_b(api, project, client, other_project):
    theirs = SubscriberFactory(
        project=other_project, phone="+4915112345678", name="Theirs", external_id="b-1"
    )
    missing = uuid.uuid4()

    def same_as_missing(method: str, suffix: str = "", body=None):
        call = getattr(api, method)
        args = (body,) if body is not None else ()
        a = call(f"/subscribers/{theirs.public_id}{suffix}", *args)
        b = call(f"/subscribers/{missing}{suffix}", *args)
        assert a.status_code == b.status_code == 404
        assert a.json() == json.loads(json.dumps(b.json()).replace(str(missing), str(theirs.public_id)))

    same_as_missing("get")
    same_as_missing("get", "/export")
    same_as_missing("patch", body={"name": "Hacked"})
    same_as_missing("post", "/opt-out", {"evidence": "x"})
    same_as_missing("post", "/opt-in", {"evidence": "x"})
    same_as_missing("delete")
    assert api.get("/subscribers", phone="+4915112345678").json()["results"] == []
    assert api.get("/subscribers", external_id="b-1").json()["results"] == []

    # The same phone in project A is another person there.
    created = api.post("/subscribers", {"phone": "+4915112345678", "name": "Ours"})
    assert created.status_code == 201
    assert created.json()["id"] != str(theirs.public_id)

    theirs.refresh_from_db()
    assert (theirs.name, theirs.whatsapp_consent) == ("Theirs", ConsentState.OPTED_IN)
    assert not ConsentChange.objects.filter(subscriber=theirs).exists()
    their_key = ApiClient(client, key_for(other_project))
    assert their_key.get(f"/subscribers/{theirs.public_id}").json()["name"] == "Theirs"


# --- documentation -------------------------------------------------------------------------------


def test_every_endpoint_is_documented(client):
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    operations = [
        (path, method, op)
        for path, ops in paths.items()
        if path.startswith(("/api/v1/subscribers", "/api/v1/events"))
        for method, op in ops.items()
    ]
    assert len(operations) == 11
    for path, method, op in operations:
        assert op.get("summary"), (method, path)
        assert len(op.get("description", "")) > 40, (method, path)
    assert "subscriber_not_found" in paths["/api/v1/events"]["post"]["description"]
