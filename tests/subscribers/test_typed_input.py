"""Typed input refused at the shared parsers: yes/no words, what the columns hold, text the
database cannot store, times without a UTC form, and limits on new tag and event names.

Every path (API single and bulk, panel forms, services) answers with a per-item error, not a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from controlpanel.models import AuditEntry, Role
from controlpanel.services import SYSTEM
from subscribers import events as eventdefs
from subscribers import services
from subscribers import tags as tagtypes
from subscribers.errors import InvalidInput
from subscribers.models import EventDefinition, Segment, Subscriber, TagDefinition, TagType, TagValue
from subscribers.segments import parse_rule, save_segment
from tests.subscribers.test_api_subscribers import ApiClient, key_for
from tests.subscribers.test_pages_forms import add

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
LONE = "\ud800"  # a lone UTF-16 surrogate: valid JSON ("\ud800"), no UTF-8 form
TOO_BIG = 10**20  # 21 digits
LARGEST = 2**53 - 1  # exact in SQLite and for JSON readers


@pytest.fixture
def api(client, project):
    return ApiClient(client, key_for(project))


@pytest.fixture
def mc(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


# --- yes/no -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("YES", True),
        ("Ja", True),
        ("1", True),
        ("False", False),
        ("no", False),
        ("NEIN", False),
        ("0", False),
    ],
)
def test_yes_no_words(text, expected):
    assert tagtypes.parse_text("vip", TagType.BOOLEAN, text) is expected


@pytest.mark.parametrize("text", ["maybe", "y", "on", "off", "2"])
def test_other_words_are_an_error_naming_the_value(text):
    with pytest.raises(InvalidInput) as caught:
        tagtypes.parse_text("vip", TagType.BOOLEAN, text)
    assert f"got {text!r}" in caught.value.message
    assert caught.value.field == "tags.vip"


@pytest.mark.parametrize(
    ("typed", "stored"), [("false", False), ("no", False), ("Nein", False), ("ja", True)]
)
def test_panel_add_form_stores_what_was_typed_for_a_yes_no_tag(mc, project, typed, stored):
    TagDefinition.objects.create(project=project, name="vip", type=TagType.BOOLEAN)
    s = add(project, "+4915112340001")
    url = reverse("subscribers:tag_add", args=[project.slug, s.public_id])
    assert mc.post(url, {"name": "vip", "value": typed}, headers=HTMX).status_code == 200
    assert services.tags_of(s)["vip"] is stored


def test_panel_add_form_refuses_maybe_for_a_yes_no_tag(mc, project):
    TagDefinition.objects.create(project=project, name="vip", type=TagType.BOOLEAN)
    s = add(project, "+4915112340001")
    url = reverse("subscribers:tag_add", args=[project.slug, s.public_id])
    html = mc.post(url, {"name": "vip", "value": "maybe"}, headers=HTMX).content.decode()
    assert "got &#x27;maybe&#x27;" in html
    assert "vip" not in services.tags_of(s)
    html = mc.post(url, {"name": "vip", "value": ""}, headers=HTMX).content.decode()
    assert "Give the tag a value." in html


def test_list_filter_on_a_yes_no_tag_reads_the_word(mc, project):
    yes = add(project, "+4915112340001", tags={"vip": True})
    no = add(project, "+4915112340002", tags={"vip": False})
    url = reverse("subscribers:list", args=[project.slug])
    for word, expected in [("no", no), ("Nein", no), ("ja", yes)]:
        html = mc.get(url, {"tag": "vip", "value": word}).content.decode()
        assert str(expected.public_id) in html
        assert str((no if expected == yes else yes).public_id) not in html
    html = mc.get(url, {"tag": "vip", "value": "maybe"}).content.decode()
    assert "got &#x27;maybe&#x27;" in html


# --- numbers: what TagValue.value_number holds ---------------------------------------------------


def test_largest_integer_round_trips_and_one_more_is_out_of_range(project):
    s = add(project, "+4915112340001", tags={"points": LARGEST, "neg": -LARGEST})
    assert services.tags_of(s)["points"] == LARGEST and services.tags_of(s)["neg"] == -LARGEST
    for value in (LARGEST + 1, TOO_BIG, -TOO_BIG):
        with pytest.raises(InvalidInput) as caught:
            tagtypes.coerce("points", TagType.INTEGER, value)
        assert caught.value.code == "out_of_range"
        assert "9,007,199,254,740,991" in caught.value.message


@pytest.mark.parametrize("text", ["1" * 21, "-" + "9" * 17, "1" * 5000])
def test_integer_cells_out_of_range_name_the_limit(text):
    with pytest.raises(InvalidInput) as caught:
        tagtypes.parse_text("points", TagType.INTEGER, text)
    assert caught.value.code == "out_of_range"


@pytest.mark.parametrize("value", ["9007199254740991.000000005", "1e16", "-9007199254740992", 1e300])
def test_decimals_out_of_range_after_rounding_to_the_column(value):
    with pytest.raises(InvalidInput) as caught:
        tagtypes.coerce("price", TagType.DECIMAL, value)
    assert caught.value.code == "out_of_range"


def test_bulk_item_with_a_21_digit_integer_is_an_error_and_poisons_nobody(api, project):
    response = api.post(
        "/subscribers/bulk",
        {
            "subscribers": [
                {"phone": "+4915112340001", "tags": {"points": TOO_BIG}},
                {"phone": "+4915112340002"},
            ]
        },
    )
    results = response.json()["results"]
    assert response.status_code == 200
    assert results[0]["error"]["code"] == "out_of_range" and results[0]["error"]["field"] == "tags.points"
    assert results[1]["status"] == "created"
    assert not Subscriber.objects.filter(phone="+4915112340001").exists()
    existing = add(project, "+4915112340003", tags={"points": 1})
    patched = api.patch(f"/subscribers/{existing.public_id}", {"tags": {"points": TOO_BIG}})
    assert patched.status_code == 422 and patched.json()["code"] == "out_of_range"
    assert api.get(f"/subscribers/{existing.public_id}").json()["tags"]["points"] == 1


def test_panel_tag_forms_say_out_of_range(mc, project):
    s = add(project, "+4915112340001", tags={"points": 1})
    add_url = reverse("subscribers:tag_add", args=[project.slug, s.public_id])
    html = mc.post(add_url, {"name": "points", "value": "1" * 21}, headers=HTMX).content.decode()
    assert "out of range" in html
    key = str(TagDefinition.objects.get(name="points").public_id)
    row_url = reverse("subscribers:tag_row", args=[project.slug, s.public_id, key])
    response = mc.post(row_url, {"value": "1" * 21}, headers=HTMX)
    assert response.status_code == 200 and "out of range" in response.content.decode()
    assert services.tags_of(s)["points"] == 1


def test_event_attribute_numbers_share_the_range(api, project):
    s = add(project, "+4915112340001")
    body = {"subscriber": {"id": str(s.public_id)}, "name": "OrderPlaced", "attributes": {"amount": TOO_BIG}}
    response = api.post("/events", body)
    assert response.status_code == 422
    assert response.json()["code"] == "out_of_range" and response.json()["field"] == "attributes.amount"
    # An attribute the default event does not declare is checked as well.
    body = {"subscriber": {"id": str(s.public_id)}, "name": "PushOpened", "attributes": {"n": -TOO_BIG}}
    assert api.post("/events", body).json()["code"] == "out_of_range"
    assert not s.events.filter(name__in=["OrderPlaced", "PushOpened"]).exists()


# --- times without a UTC form --------------------------------------------------------------------

END = "9999-12-31T23:59:59-14:00"


def test_event_time_past_the_calendar_is_a_422_not_a_500(api, project):
    s = add(project, "+4915112340001")
    ref = {"id": str(s.public_id)}
    response = api.post("/events", {"subscriber": ref, "name": "OrderPlaced", "occurred_at": END})
    assert response.status_code == 422
    assert response.json()["code"] == "out_of_range" and response.json()["field"] == "occurred_at"
    bulk = api.post(
        "/events/bulk",
        {"events": [{"subscriber": ref, "name": "A", "occurred_at": END}, {"subscriber": ref, "name": "A"}]},
    )
    results = bulk.json()["results"]
    assert results[0]["error"]["field"] == "occurred_at" and results[1]["status"] == "created"


def test_datetime_tag_and_attribute_past_the_calendar_are_refused(api, project):
    with pytest.raises(InvalidInput) as caught:
        tagtypes.coerce("seen", TagType.DATETIME, END)
    assert caught.value.code == "out_of_range" and "years 1 and 9999" in caught.value.message
    with pytest.raises(InvalidInput):
        tagtypes.parse_text("seen", TagType.DATETIME, "0001-01-01T00:00:00+01:00")
    s = add(project, "+4915112340001", tags={"seen": "2026-01-01T10:00:00+00:00"})
    response = api.patch(f"/subscribers/{s.public_id}", {"tags": {"seen": END}})
    assert response.status_code == 422 and response.json()["code"] == "out_of_range"
    ref = {"id": str(s.public_id)}
    api.post("/events", {"subscriber": ref, "name": "Visit", "attributes": {"at": "2026-01-01T10:00:00Z"}})
    response = api.post("/events", {"subscriber": ref, "name": "Visit", "attributes": {"at": END}})
    assert response.status_code == 422
    assert response.json()["message"].startswith("Attribute 'at' of 'Visit' is out of range")
    assert tagtypes.coerce("seen", TagType.DATETIME, "9999-12-31T23:59:59+00:00") == datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=UTC
    )


# --- text no column can store --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": f"Ada{LONE}"}, "name"),
        ({"external_id": LONE}, "external_id"),
        ({"tags": {"city": f"Ber{LONE}lin"}}, "tags.city"),
        ({"tags": {"likes": ["ok", LONE]}}, "tags.likes"),
        ({"tags": {"Name": LONE}}, "name"),
        ({"tags": {f"city{LONE}": "x"}}, "tags"),
        ({"name": "nul\x00"}, "name"),
    ],
)
def test_lone_surrogates_and_nul_are_a_422_naming_the_field(api, body, field):
    response = api.post("/subscribers", {"phone": "+4915112340001", **body})
    assert response.status_code == 422
    assert response.json()["field"] == field
    bulk = api.post("/subscribers/bulk", {"subscribers": [{"phone": "+4915112340001", **body}]})
    assert bulk.json()["results"][0]["error"]["field"] == field
    assert not Subscriber.objects.exists() and not TagDefinition.objects.exists()


def test_lone_surrogate_in_an_event_attribute_name_or_reference(api, project):
    s = add(project, "+4915112340001")
    ref = {"id": str(s.public_id)}
    for name in ("OrderPlaced", "WhatsAppReceived"):
        body = {"subscriber": ref, "name": name, "attributes": {"text": LONE}}
        response = api.post("/events", body)
        assert response.status_code == 422 and response.json()["field"] == "attributes.text"
    for body, field in [
        ({"subscriber": ref, "name": f"A{LONE}"}, "name"),
        ({"subscriber": ref, "name": "A", "attributes": {f"k{LONE}": 1}}, f"attributes.k{LONE}"),
        ({"subscriber": ref, "name": "A", "dedup_key": LONE}, "dedup_key"),
        ({"subscriber": {"external_id": LONE}, "name": "A"}, "subscriber.external_id"),
    ]:
        response = api.post("/events", body)
        assert response.status_code == 422 and response.json()["field"] == field
        bulk = api.post("/events/bulk", {"events": [body]})
        assert bulk.json()["results"][0]["error"]["field"] == field
    assert not s.events.exclude(name="Subscribed").exists()


def test_lone_surrogate_in_consent_evidence(api, project):
    s = add(project, "+4915112340001")
    response = api.post(f"/subscribers/{s.public_id}/opt-in", {"evidence": f"web form {LONE}"})
    assert response.status_code == 422 and response.json()["field"] == "evidence"
    assert not s.consent_changes.exists()


def test_lone_surrogate_in_the_edit_service_and_a_segment_name(project):
    # Browsers cannot send one in a form; the services behind the panel refuse it all the same.
    s = add(project, "+4915112340001", name="Anna")
    with pytest.raises(InvalidInput) as caught:
        services.update_subscriber(project=project, subscriber=s, changes={"name": LONE}, actor=SYSTEM)
    assert caught.value.field == "name"
    with pytest.raises(InvalidInput) as caught:
        save_segment(project=project, name=f"VIP{LONE}", rule=parse_rule("ALL"), actor=SYSTEM)
    assert caught.value.field == "name"
    assert not Segment.objects.exists()


# --- all or nothing, one definition of equal values ----------------------------------------------


def test_set_tags_leaves_no_new_definition_when_a_later_tag_fails(project):
    s = add(project, "+4915112340001", tags={"orders": 1})
    with pytest.raises(InvalidInput):
        services.set_tags(project=project, subscriber=s, tags={"brand_new": "x", "orders": "many"})
    assert not TagDefinition.objects.filter(name="brand_new").exists()


def test_same_values_compares_values_not_spellings(project):
    s = add(project, "+4915112340001", tags={"n": 3, "price": 2.5, "at": "2026-01-01T10:00:00+02:00"})
    rows = {r.tag.name: [r] for r in TagValue.objects.filter(subscriber=s).select_related("tag")}
    assert tagtypes.same_values(rows["n"], TagType.INTEGER, 3)
    assert tagtypes.same_values(rows["price"], TagType.DECIMAL, Decimal("2.500000001"))  # stored rounded
    assert not tagtypes.same_values(rows["price"], TagType.DECIMAL, Decimal("2.50000001"))
    when = tagtypes.coerce("at", TagType.DATETIME, "2026-01-01T08:00:00Z")
    assert tagtypes.same_values(rows["at"], TagType.DATETIME, when)
    assert tagtypes.same_values([], TagType.STRING, None)


def test_event_attributes_added_at_the_same_time_both_stay(project, monkeypatch):
    """schema_for reads the definition again under a lock before adding attributes."""
    EventDefinition.objects.create(project=project, name="OrderPlaced", attributes={"amount": "decimal"})
    infer = tagtypes.infer_type

    def another_request_adds_an_attribute_meanwhile(value):
        EventDefinition.objects.filter(name="OrderPlaced").update(
            attributes={"amount": "decimal", "channel": "string"}
        )
        return infer(value)

    monkeypatch.setattr(tagtypes, "infer_type", another_request_adds_an_attribute_meanwhile)
    eventdefs.schema_for(project, "OrderPlaced", create_with={"amount": 1.5, "cuisine": "asian"})
    assert EventDefinition.objects.get(name="OrderPlaced").attributes == {
        "amount": "decimal",
        "channel": "string",
        "cuisine": "string",
    }


# --- limits on new names -------------------------------------------------------------------------


@pytest.fixture
def small_limits(settings):
    settings.TAGS_NEW_PER_REQUEST = 3
    settings.TAGS_PER_PROJECT = 5
    settings.EVENT_ATTRIBUTES_PER_EVENT = 3
    settings.EVENT_NAMES_PER_PROJECT = 2


def test_new_tags_per_request_are_limited(api, small_limits):
    tags = {f"t{n}": n for n in range(4)}
    response = api.post("/subscribers", {"phone": "+4915112340001", "tags": tags})
    assert response.status_code == 422 and response.json()["code"] == "too_many_tags"
    assert "at most 3 new tags" in response.json()["message"]
    bulk = api.post("/subscribers/bulk", {"subscribers": [{"phone": "+4915112340002", "tags": tags}]})
    assert bulk.json()["results"][0]["error"]["code"] == "too_many_tags"
    assert not TagDefinition.objects.exists() and not Subscriber.objects.exists()


def test_tags_per_project_are_limited_on_every_path(api, mc, project, small_limits):
    add(project, "+4915112340001", tags={"a": 1, "b": 1, "c": 1})
    response = api.post("/subscribers", {"phone": "+4915112340002", "tags": {"d": 1, "e": 1, "f": 1}})
    assert response.status_code == 422 and "at most 5" in response.json()["message"]
    assert api.post("/subscribers", {"phone": "+4915112340002", "tags": {"d": 1, "e": 1}}).status_code == 201
    bulk = api.post("/subscribers/bulk", {"subscribers": [{"phone": "+4915112340003", "tags": {"g": 1}}]})
    assert bulk.json()["results"][0]["error"]["code"] == "too_many_tags"
    page = mc.post(reverse("subscribers:tags", args=[project.slug]), {"name": "h", "type": "string"})
    assert page.status_code == 200 and "at most 5" in page.content.decode()
    assert TagDefinition.objects.count() == 5


def test_event_names_and_attributes_are_limited(project, small_limits):
    s = add(project, "+4915112340001")
    services.record_event(project=project, subscriber=s, name="A", attributes={"x": 1, "y": 1})
    services.record_event(project=project, subscriber=s, name="A", attributes={"z": 1})
    with pytest.raises(InvalidInput) as caught:
        services.record_event(project=project, subscriber=s, name="A", attributes={"w": 1})
    assert caught.value.code == "too_many_attributes"
    services.record_event(project=project, subscriber=s, name="B")
    with pytest.raises(InvalidInput) as caught:
        services.record_event(project=project, subscriber=s, name="C")
    assert caught.value.code == "too_many_events"
    services.record_event(project=project, subscriber=s, name="WhatsAppRead")  # defaults are free


# --- one update service, answers that say what happened ------------------------------------------


def test_saved_message_after_a_rename_uses_the_new_name(mc, project):
    s = add(project, "+4915112340001", name="Anna")
    url = reverse("subscribers:edit", args=[project.slug, s.public_id])
    response = mc.post(url, {"phone": "+4915112340001", "name": "Berta"}, follow=True)
    assert "Berta was saved." in response.content.decode()
    # The panel's edits are audited as the API's are.
    assert AuditEntry.objects.get(project=project, action="subscriber.updated").changes == {
        "fields": ["name"]
    }


def test_panel_and_api_edits_share_rules(api, mc, project):
    add(project, "+4915112340009", name="Other", external_id="crm-9")
    s = add(project, "+4915112340001", name="Anna")
    response = api.patch(f"/subscribers/{s.public_id}", {"external_id": "crm-9"})
    assert response.status_code == 409 and response.json()["field"] == "external_id"
    assert api.patch(f"/subscribers/{s.public_id}", {"phone": None}).status_code == 422
    # The panel's edit now says which subscriber holds an external id, as it did for phones.
    url = reverse("subscribers:edit", args=[project.slug, s.public_id])
    html = mc.post(url, {"phone": "+4915112340001", "external_id": "crm-9"}).content.decode()
    assert "Other has this external id already." in html


def test_api_says_unchanged_and_documents_it(api, client):
    body = {"phone": "+4915112340001", "name": "Ada"}
    api.post("/subscribers", body)
    again = api.post("/subscribers", body)
    assert (again.status_code, again.json()["status"], again.json()["changed"]) == (200, "unchanged", False)
    schema = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    assert schema["UpsertOut"]["properties"]["status"]["enum"] == ["created", "updated", "unchanged"]
