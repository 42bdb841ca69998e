"""Unit tests of the audience core: phones, typed tags, events and the subscriber services."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import QuerySet
from django.utils import timezone

from controlpanel.models import AuditEntry
from controlpanel.services import Actor
from subscribers import tags as tagtypes
from subscribers.errors import InvalidInput
from subscribers.events import all_definitions, clean_attributes, validate_event_name
from subscribers.models import (
    ConsentChange,
    ConsentChannel,
    ConsentSource,
    ConsentState,
    Event,
    EventDefinition,
    Subscriber,
    TagDefinition,
    TagType,
    TagValue,
)
from subscribers.phones import normalize_phone
from subscribers.services import (
    SubscriberData,
    change_consent,
    clean_subscriber_data,
    erase_subscriber,
    export_subscriber,
    record_event,
    set_tags,
    tags_of,
    upsert_subscriber,
)
from subscribers.signals import event_recorded, subscriber_erased
from tests.factories import ProjectFactory, SubscriberFactory

ACTOR = Actor(label="tester")

# --- phones --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+49 151 12345678", "DE", "+4915112345678"),
        ("0151 1234 5678", "DE", "+4915112345678"),
        ("0049 151 12345678", "FR", "+4915112345678"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("(650) 253-0000", "US", "+16502530000"),
        ("+1 650 253 0000", "DE", "+16502530000"),
        ("  +4915112345678  ", "", "+4915112345678"),
    ],
)
def test_normalize_phone_to_e164_with_the_default_country(raw, country, expected):
    assert normalize_phone(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "A phone number is required"),
        ("hello", "is not a phone number: use digits"),
        ("+999 1234567", "the country code is unknown"),
        ("12", "too short"),
        ("+49 30 1", "too short"),
        ("+49 151 1234 5678 9999 1", "too long"),
        ("0151 123", "not a valid phone number for DE"),
    ],
)
def test_normalize_phone_rejects_with_the_reason(raw, reason):
    with pytest.raises(InvalidInput) as caught:
        normalize_phone(raw, "DE", field="subscriber.phone")
    assert reason in caught.value.message
    assert caught.value.field == "subscriber.phone"
    assert caught.value.code == "invalid_phone"


def test_a_number_without_prefix_needs_the_default_country():
    with pytest.raises(InvalidInput):
        normalize_phone("015112345678", "")


# --- tag types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Berlin", TagType.STRING),
        (3, TagType.INTEGER),
        (3.5, TagType.DECIMAL),
        (Decimal("3.5"), TagType.DECIMAL),
        (True, TagType.BOOLEAN),
        (["a", "b"], TagType.LIST),
        ("2026-01-31", TagType.DATE),
        ("2026-01-31T10:00:00Z", TagType.DATETIME),
        ("2026-13-45", TagType.STRING),
    ],
)
def test_infer_type_of_a_json_value(value, expected):
    assert tagtypes.infer_type(value) == expected


def test_infer_type_refuses_objects():
    with pytest.raises(InvalidInput, match="cannot be dict"):
        tagtypes.infer_type({"a": 1})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", TagType.BOOLEAN),
        ("42", TagType.INTEGER),
        ("-3", TagType.INTEGER),
        ("007", TagType.STRING),  # a code with a leading zero is not a number
        ("4.50", TagType.DECIMAL),
        ("[a, b]", TagType.LIST),
        ("2026-01-31", TagType.DATE),
        ("2026-01-31 10:00", TagType.DATETIME),
        ("Berlin", TagType.STRING),
    ],
)
def test_infer_type_of_a_csv_cell(text, expected):
    assert tagtypes.infer_type_from_text(text) == expected


@pytest.mark.parametrize(
    ("type_", "value", "expected"),
    [
        (TagType.STRING, "Berlin", "Berlin"),
        (TagType.INTEGER, 7, 7),
        (TagType.INTEGER, -7, -7),
        (TagType.DECIMAL, 19.99, Decimal("19.99")),
        (TagType.DECIMAL, 20, Decimal(20)),
        (TagType.DECIMAL, "19.99", Decimal("19.99")),
        (TagType.BOOLEAN, False, False),
        (TagType.DATE, "2026-01-31", date(2026, 1, 31)),
        (TagType.DATETIME, "2026-01-31T10:00:00+01:00", datetime(2026, 1, 31, 9, 0, tzinfo=UTC)),
        (TagType.DATETIME, "2026-01-31T10:00:00", datetime(2026, 1, 31, 10, 0, tzinfo=UTC)),
        (TagType.LIST, ["a", 2, "a"], ["a", "2"]),
        (TagType.LIST, [], []),
    ],
)
def test_coerce_accepts_values_of_the_type(type_, value, expected):
    assert tagtypes.coerce("t", type_, value) == expected


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        (TagType.STRING, 5),
        (TagType.STRING, ["a"]),
        (TagType.INTEGER, "abc"),
        (TagType.INTEGER, "5"),
        (TagType.INTEGER, True),
        (TagType.INTEGER, 2.5),
        (TagType.DECIMAL, "cheap"),
        (TagType.DECIMAL, True),
        (TagType.DECIMAL, "NaN"),
        (TagType.BOOLEAN, "yes"),
        (TagType.BOOLEAN, 1),
        (TagType.DATE, "2026-02-30"),
        (TagType.DATE, "31.01.2026"),
        (TagType.DATE, 20260131),
        (TagType.DATETIME, "yesterday"),
        (TagType.LIST, "a,b"),
        (TagType.LIST, [{"a": 1}]),
        (TagType.LIST, [True]),
    ],
)
def test_coerce_refuses_other_values_naming_tag_and_type(type_, value):
    with pytest.raises(InvalidInput) as caught:
        tagtypes.coerce("my tag", type_, value)
    expected = TagType(type_).label.lower()
    assert caught.value.message.startswith(f"Tag 'my tag' expects {expected}, got ")
    assert caught.value.field == "tags.my tag"
    assert caught.value.code == "wrong_tag_type"


def test_coerce_refuses_too_long_text_and_lists():
    with pytest.raises(InvalidInput, match="longer than 255"):
        tagtypes.coerce("t", TagType.STRING, "x" * 256)
    with pytest.raises(InvalidInput, match="too many"):
        tagtypes.coerce("t", TagType.LIST, [str(n) for n in range(101)])


@pytest.mark.parametrize(
    ("type_", "text", "expected"),
    [
        (TagType.STRING, " Berlin ", "Berlin"),
        (TagType.STRING, "", None),
        (TagType.INTEGER, " 42 ", 42),
        (TagType.INTEGER, "-1", -1),
        (TagType.DECIMAL, "4.50", Decimal("4.50")),
        (TagType.DECIMAL, "4,50", Decimal("4.50")),
        (TagType.BOOLEAN, "yes", True),
        (TagType.BOOLEAN, "JA", True),
        (TagType.BOOLEAN, "1", True),
        (TagType.BOOLEAN, "Nein", False),
        (TagType.BOOLEAN, "false", False),
        (TagType.DATE, "2026-01-31", date(2026, 1, 31)),
        (TagType.DATETIME, "2026-01-31 10:00", datetime(2026, 1, 31, 10, 0, tzinfo=UTC)),
        (TagType.LIST, "asian, italian,", ["asian", "italian"]),
        (TagType.LIST, '["a", "b"]', ["a", "b"]),
        (TagType.INTEGER, "   ", None),
    ],
)
def test_parse_text_reads_cells_into_the_type(type_, text, expected):
    assert tagtypes.parse_text("t", type_, text) == expected


@pytest.mark.parametrize(
    ("type_", "text"),
    [
        (TagType.INTEGER, "4.2"),
        (TagType.INTEGER, "many"),
        (TagType.DECIMAL, "1.000,50"),
        (TagType.BOOLEAN, "maybe"),
        (TagType.BOOLEAN, "Y"),
        (TagType.BOOLEAN, "off"),
        (TagType.DATE, "31/01/2026"),
        (TagType.DATETIME, "soon"),
        (TagType.LIST, '["a", '),
    ],
)
def test_parse_text_refuses_cells_of_another_type(type_, text):
    with pytest.raises(InvalidInput) as caught:
        tagtypes.parse_text("score", type_, text)
    assert f"Tag 'score' expects {TagType(type_).label.lower()}" in caught.value.message


@pytest.mark.parametrize("name", ["", "   ", "bad$name", "-starts-with-dash", "x" * 65])
def test_tag_names_are_checked(name):
    with pytest.raises(InvalidInput) as caught:
        tagtypes.validate_tag_name(name)
    assert caught.value.code == "invalid_tag_name"


# --- clean_subscriber_data -----------------------------------------------------------------------


def test_clean_subscriber_data_normalizes(project):
    data = clean_subscriber_data(
        project,
        {
            "phone": "0151 12345678",
            "external_id": "  crm-1 ",
            "email": "Ada@Example.COM",
            "country": "de",
            "timezone": "Europe/Berlin",
            "whatsapp_opt_in": {"evidence": " form "},
        },
    )
    assert data.phone == "+4915112345678"
    assert data.external_id == "crm-1"
    assert data.profile == {"email": "ada@example.com", "country": "DE", "time_zone": "Europe/Berlin"}
    assert data.opt_in_evidence == "form"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "phone"),
        ({"phone": "12"}, "phone"),
        ({"phone": "+4915112345678", "email": "x@"}, "email"),
        ({"phone": "+4915112345678", "country": "DEU"}, "country"),
        ({"phone": "+4915112345678", "timezone": "Berlin"}, "timezone"),
        ({"phone": "+4915112345678", "language": "x" * 17}, "language"),
        ({"phone": "+4915112345678", "name": "x" * 201}, "name"),
        ({"phone": "+4915112345678", "external_id": "x" * 201}, "external_id"),
        ({"phone": "+4915112345678", "tags": "vip"}, "tags"),
        ({"phone": "+4915112345678", "whatsapp_opt_in": {"evidence": ""}}, "whatsapp_opt_in.evidence"),
        ({"phone": "+4915112345678", "whatsapp_opt_in": True}, "whatsapp_opt_in.evidence"),
    ],
)
def test_clean_subscriber_data_refuses_bad_fields(project, raw, field):
    with pytest.raises(InvalidInput) as caught:
        clean_subscriber_data(project, raw)
    assert caught.value.field == field


# --- upsert_subscriber ---------------------------------------------------------------------------


def upsert(project, **raw):
    return upsert_subscriber(project=project, data=clean_subscriber_data(project, raw), actor=ACTOR)


def test_upsert_by_phone_creates_then_finds(project):
    created, status = upsert(project, phone="+4915112345678", name="Ada", tags={"orders": 2})
    assert status == "created"
    again, status = upsert(project, phone="015112345678", name="Ada", tags={"orders": 2})
    assert (again.pk, status) == (created.pk, "unchanged")
    changed, status = upsert(project, phone="+4915112345678", name="Ada L.")
    assert (changed.pk, status) == (created.pk, "updated")
    assert Subscriber.objects.for_project(project).count() == 1
    assert Event.objects.filter(subscriber=created, name="Subscribed").count() == 1


def test_upsert_by_external_id_finds_and_can_set_the_phone(project):
    existing = SubscriberFactory(project=project, phone="+4915111111111", external_id="crm-1")
    found, status = upsert(project, external_id="crm-1", name="Found")
    assert (found.pk, status) == (existing.pk, "updated")
    moved, status = upsert(project, external_id="crm-1", phone="+4915122222222")
    assert moved.pk == existing.pk
    existing.refresh_from_db()
    assert existing.phone == "+4915122222222"


def test_upsert_by_unknown_external_id_without_phone_is_not_found(project):
    with pytest.raises(InvalidInput) as caught:
        upsert(project, external_id="nobody")
    assert caught.value.code == "not_found"
    assert not Subscriber.objects.exists()


def test_upsert_with_phone_and_external_id_of_two_subscribers_is_a_conflict(project):
    SubscriberFactory(project=project, phone="+4915111111111", name="One")
    SubscriberFactory(project=project, phone="+4915122222222", external_id="two", name="Two")
    with pytest.raises(InvalidInput) as caught:
        upsert(project, phone="+4915111111111", external_id="two", name="Merged")
    assert caught.value.code == "conflict"
    assert caught.value.field == "external_id"
    assert sorted(Subscriber.objects.values_list("name", flat=True)) == ["One", "Two"]


def test_upsert_is_all_or_nothing_on_a_bad_tag(project):
    upsert(project, phone="+4915112345678", name="Ada", tags={"orders": 1})
    with pytest.raises(InvalidInput):
        upsert(project, phone="+4915112345678", name="Changed", tags={"new": "x", "orders": "many"})
    subscriber = Subscriber.objects.get(project=project)
    assert subscriber.name == "Ada"
    assert not TagDefinition.objects.filter(project=project, name="new").exists()


def test_upsert_with_opt_in_writes_the_ledger_once(project):
    subscriber, _ = upsert(project, phone="+4915112345678", whatsapp_opt_in={"evidence": "form"})
    _, status = upsert(project, phone="+4915112345678", whatsapp_opt_in={"evidence": "form again"})
    assert status == "unchanged"
    change = ConsentChange.objects.get(subscriber=subscriber)
    assert (change.state, change.source, change.evidence, change.actor_label) == (
        ConsentState.OPTED_IN,
        ConsentSource.API,
        "form",
        "tester",
    )


def test_same_phone_in_two_projects_is_two_subscribers(project):
    other = ProjectFactory()
    a, _ = upsert(project, phone="+4915112345678")
    b, status = upsert(other, phone="+4915112345678")
    assert status == "created"
    assert a.pk != b.pk


# --- set_tags / tags_of --------------------------------------------------------------------------


@pytest.fixture
def subscriber(project):
    return SubscriberFactory(project=project, phone="+4915112345678", name="Ada", language="de")


def test_set_tags_creates_typed_definitions_and_reads_back(project, subscriber):
    tags = {
        "city": "Berlin",
        "orders": 3,
        "spent": 19.99,
        "vip": True,
        "birthday": "1990-05-17",
        "last order": "2026-01-31T10:00:00+00:00",
        "cuisines": ["asian", "italian"],
    }
    assert set_tags(project=project, subscriber=subscriber, tags=tags) is True
    types = dict(TagDefinition.objects.for_project(project).values_list("name", "type"))
    assert types == {
        "city": "string",
        "orders": "integer",
        "spent": "decimal",
        "vip": "boolean",
        "birthday": "date",
        "last order": "datetime",
        "cuisines": "list",
    }
    read = tags_of(subscriber)
    assert read["city"] == "Berlin"
    assert read["orders"] == 3
    assert read["spent"] == "19.99"
    assert read["vip"] is True
    assert read["birthday"] == "1990-05-17"
    assert read["last order"] == "2026-01-31T10:00:00+00:00"
    assert read["cuisines"] == ["asian", "italian"]
    assert read["Name"] == "Ada"
    assert read["Language"] == "de"
    assert read["Phone"] == "+4915112345678"
    assert read["WhatsApp opt-in"] is True


def test_set_tags_again_with_the_same_values_changes_nothing(project, subscriber):
    tags = {
        "orders": 3,
        "spent": 19.99,
        "vip": False,
        "birthday": "1990-05-17",
        "seen": "2026-01-31T10:00:00+02:00",
        "cuisines": ["asian"],
        "city": "Berlin",
    }
    set_tags(project=project, subscriber=subscriber, tags=tags)
    ids = set(TagValue.objects.filter(subscriber=subscriber).values_list("id", flat=True))
    assert set_tags(project=project, subscriber=subscriber, tags=tags) is False
    assert set_tags(project=project, subscriber=subscriber, tags={"spent": "19.990", "orders": 3}) is False
    # Rows were not rewritten either.
    assert set(TagValue.objects.filter(subscriber=subscriber).values_list("id", flat=True)) == ids


def test_set_tags_removes_with_none_and_keeps_the_others(project, subscriber):
    set_tags(project=project, subscriber=subscriber, tags={"city": "Berlin", "cuisines": ["a", "b"]})
    assert set_tags(project=project, subscriber=subscriber, tags={"cuisines": None, "unknown": None}) is True
    assert "cuisines" not in tags_of(subscriber)
    assert tags_of(subscriber)["city"] == "Berlin"
    assert not TagDefinition.objects.filter(project=project, name="unknown").exists()
    # The definition stays for other subscribers and keeps its type.
    assert TagDefinition.objects.get(project=project, name="cuisines").type == TagType.LIST


def test_set_tags_from_text_parses_and_empty_removes(project, subscriber):
    set_tags(project=project, subscriber=subscriber, tags={"orders": "5", "vip": "true"}, from_text=True)
    assert tags_of(subscriber)["orders"] == 5
    assert tags_of(subscriber)["vip"] is True
    set_tags(project=project, subscriber=subscriber, tags={"orders": ""}, from_text=True)
    assert "orders" not in tags_of(subscriber)


def test_set_tags_validates_everything_before_writing(project, subscriber):
    set_tags(project=project, subscriber=subscriber, tags={"orders": 1})
    with pytest.raises(InvalidInput) as caught:
        set_tags(project=project, subscriber=subscriber, tags={"city": "Berlin", "orders": "many"})
    assert caught.value.message == "Tag 'orders' expects integer, got 'many'."
    assert "city" not in tags_of(subscriber)
    assert tags_of(subscriber)["orders"] == 1


def test_tag_names_match_without_case(project, subscriber):
    set_tags(project=project, subscriber=subscriber, tags={"City": "Berlin"})
    set_tags(project=project, subscriber=subscriber, tags={"city": "Hamburg"})
    assert TagDefinition.objects.for_project(project).count() == 1
    assert tags_of(subscriber)["City"] == "Hamburg"


def test_builtin_tags_write_profile_fields_or_are_refused(project, subscriber):
    set_tags(project=project, subscriber=subscriber, tags={"language": "en", "Country": "fr"})
    subscriber.refresh_from_db()
    assert (subscriber.language, subscriber.country) == ("en", "FR")
    for name, value in [("Phone", "+4915100000000"), ("WhatsApp opt-in", "yes"), ("First seen", "x")]:
        with pytest.raises(InvalidInput, match="maintained by the platform"):
            set_tags(project=project, subscriber=subscriber, tags={name: value})
    with pytest.raises(InvalidInput, match="expects string"):
        set_tags(project=project, subscriber=subscriber, tags={"Language": 5})
    assert not TagDefinition.objects.for_project(project).exists()


def test_tag_definitions_are_per_project(project, subscriber):
    other = SubscriberFactory(project=ProjectFactory())
    set_tags(project=project, subscriber=subscriber, tags={"score": 1})
    set_tags(project=other.project, subscriber=other, tags={"score": "high"})
    assert TagDefinition.objects.get(project=project, name="score").type == TagType.INTEGER
    assert TagDefinition.objects.get(project=other.project, name="score").type == TagType.STRING


# --- events --------------------------------------------------------------------------------------


def test_record_event_with_dedup_key_is_recorded_once(
    project, subscriber, django_capture_on_commit_callbacks
):
    received = []

    def receiver(sender, payload, **kwargs):
        received.append(payload)

    event_recorded.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            first = record_event(
                project=project, subscriber=subscriber, name="OrderPlaced", dedup_key="order-1"
            )
            second = record_event(
                project=project, subscriber=subscriber, name="OrderPlaced", dedup_key="order-1"
            )
    finally:
        event_recorded.disconnect(receiver)
    assert first.pk == second.pk
    assert Event.objects.filter(project=project, name="OrderPlaced").count() == 1
    assert [(p.event_id, p.name, p.subscriber_id) for p in received] == [
        (first.pk, "OrderPlaced", subscriber.pk)
    ]
    other = SubscriberFactory(project=ProjectFactory())
    elsewhere = record_event(project=other.project, subscriber=other, name="OrderPlaced", dedup_key="order-1")
    assert elsewhere.pk != first.pk


def test_record_event_with_a_dedup_key_that_races_returns_the_winner(project, subscriber, monkeypatch):
    winner = Event.objects.create(
        project=project, subscriber=subscriber, name="PushOpened", occurred_at=timezone.now(), dedup_key="k"
    )
    # The duplicate check runs before a concurrent request commits: it sees nothing.
    monkeypatch.setattr(QuerySet, "first", lambda self: None)
    event = record_event(project=project, subscriber=subscriber, name="PushOpened", dedup_key="k")
    assert event.pk == winner.pk
    assert Event.objects.filter(project=project, dedup_key="k").count() == 1


def test_record_event_without_dedup_key_records_each_time(project, subscriber):
    record_event(project=project, subscriber=subscriber, name="Opened")
    record_event(project=project, subscriber=subscriber, name="Opened")
    assert Event.objects.filter(subscriber=subscriber, name="Opened").count() == 2


def test_record_event_times(project, subscriber):
    naive = record_event(
        project=project, subscriber=subscriber, name="A", occurred_at=datetime(2026, 1, 31, 10, 0)
    )
    assert naive.occurred_at == datetime(2026, 1, 31, 9, 0, tzinfo=UTC)  # 10:00 in the project's Berlin
    before = timezone.now()
    now = record_event(project=project, subscriber=subscriber, name="A")
    assert before <= now.occurred_at <= timezone.now() + timedelta(seconds=1)


def test_custom_event_attributes_take_the_types_of_the_first_occurrence(project, subscriber):
    record_event(
        project=project,
        subscriber=subscriber,
        name="OrderPlaced",
        attributes={"cuisine": "asian", "amount": 23.5, "items": 2, "paid": True, "day": "2026-01-31"},
    )
    definition = EventDefinition.objects.get(project=project, name="OrderPlaced")
    assert definition.attributes == {
        "cuisine": "string",
        "amount": "decimal",
        "items": "integer",
        "paid": "boolean",
        "day": "date",
    }
    event = record_event(
        project=project,
        subscriber=subscriber,
        name="OrderPlaced",
        attributes={"amount": 10, "coupon": "X1"},
    )
    assert event.attributes == {"amount": 10.0, "coupon": "X1"}
    definition.refresh_from_db()
    assert definition.attributes["coupon"] == "string"
    assert all_definitions(project)["OrderPlaced"]["coupon"] == "string"

    with pytest.raises(InvalidInput) as caught:
        record_event(project=project, subscriber=subscriber, name="OrderPlaced", attributes={"items": "two"})
    assert caught.value.message == "Attribute 'items' of 'OrderPlaced' expects integer, got 'two'."
    assert caught.value.field == "attributes.items"
    assert caught.value.code == "wrong_attribute_type"
    assert Event.objects.filter(project=project, name="OrderPlaced").count() == 2


def test_default_event_attributes_are_typed(project, subscriber):
    with pytest.raises(InvalidInput, match="'error_code' of 'WhatsAppFailed' expects integer"):
        clean_attributes(project, "WhatsAppFailed", {"error_code": "131026"})
    assert clean_attributes(project, "WhatsAppFailed", {"error_code": 131026, "extra": [1]}) == {
        "error_code": 131026,
        "extra": "[1]",
    }
    assert not EventDefinition.objects.for_project(project).exists()


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"tags": ["a", "b"]}, "attributes.tags"),
        ({"bad key!": 1}, "attributes.bad key!"),
        ("not a dict", "attributes"),
        ({f"a{n}": n for n in range(51)}, "attributes"),
    ],
)
def test_bad_event_attributes_are_refused(project, attributes, field):
    with pytest.raises(InvalidInput) as caught:
        clean_attributes(project, "Custom", attributes)
    assert caught.value.field == field


@pytest.mark.parametrize("name", ["", "1Order", "Order Placed", "x" * 65])
def test_event_names_are_checked(name):
    with pytest.raises(InvalidInput) as caught:
        validate_event_name(name)
    assert caught.value.field == "name"


# --- consent -------------------------------------------------------------------------------------


def test_change_consent_writes_the_ledger_and_is_a_no_op_when_unchanged(project):
    subscriber = SubscriberFactory(project=project, whatsapp_consent=ConsentState.UNKNOWN)
    change = change_consent(
        subscriber=subscriber,
        channel=ConsentChannel.WHATSAPP,
        state=ConsentState.OPTED_IN,
        source=ConsentSource.PANEL,
        evidence=" signed paper form ",
        actor=ACTOR,
    )
    assert change is not None
    assert (change.evidence, change.actor_label, change.source) == ("signed paper form", "tester", "panel")
    again = change_consent(
        subscriber=subscriber,
        channel=ConsentChannel.WHATSAPP,
        state=ConsentState.OPTED_IN,
        source=ConsentSource.API,
        evidence="again",
        actor=ACTOR,
    )
    assert again is None
    assert ConsentChange.objects.filter(subscriber=subscriber).count() == 1
    subscriber.refresh_from_db()
    assert subscriber.whatsapp_consent == ConsentState.OPTED_IN
    assert subscriber.whatsapp_consent_at is not None


def test_opt_out_records_unsubscribed_and_opt_in_needs_evidence(project):
    subscriber = SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_IN)
    change_consent(
        subscriber=subscriber,
        channel=ConsentChannel.WHATSAPP,
        state=ConsentState.OPTED_OUT,
        source=ConsentSource.KEYWORD,
        evidence="",
        actor=ACTOR,
    )
    event = Event.objects.get(subscriber=subscriber, name="Unsubscribed")
    assert event.attributes == {"channel": "whatsapp", "source": "keyword"}
    with pytest.raises(InvalidInput) as caught:
        change_consent(
            subscriber=subscriber,
            channel=ConsentChannel.WHATSAPP,
            state=ConsentState.OPTED_IN,
            source=ConsentSource.API,
            evidence="  ",
            actor=ACTOR,
        )
    assert caught.value.field == "evidence"
    subscriber.refresh_from_db()
    assert subscriber.whatsapp_consent == ConsentState.OPTED_OUT
    assert ConsentChange.objects.filter(subscriber=subscriber).count() == 1


# --- export and erase ----------------------------------------------------------------------------


def test_export_holds_profile_tags_consent_and_events_and_is_audited(project):
    subscriber, _ = upsert(
        project,
        phone="+4915112345678",
        external_id="crm-1",
        name="Ada",
        email="ada@example.com",
        timezone="Europe/Berlin",
        tags={"vip": True},
        whatsapp_opt_in={"evidence": "form"},
    )
    record_event(
        project=project,
        subscriber=subscriber,
        name="OrderPlaced",
        attributes={"amount": 5},
        occurred_at=timezone.now() + timedelta(minutes=1),
    )
    data = export_subscriber(subscriber=subscriber, actor=ACTOR)
    assert data["id"] == str(subscriber.public_id)
    assert (data["phone"], data["external_id"], data["name"], data["email"], data["timezone"]) == (
        "+4915112345678",
        "crm-1",
        "Ada",
        "ada@example.com",
        "Europe/Berlin",
    )
    assert data["whatsapp_consent"] == "opted_in"
    assert data["tags"]["vip"] is True
    assert [(c["state"], c["source"], c["evidence"]) for c in data["consent_history"]] == [
        ("opted_in", "api", "form")
    ]
    assert [(e["name"], e["attributes"]) for e in data["events"]] == [
        ("Subscribed", {"source": "api"}),
        ("OrderPlaced", {"amount": 5}),
    ]
    entry = AuditEntry.objects.get(project=project, action="subscriber.exported")
    assert entry.object_id == str(subscriber.public_id)


def test_erase_deletes_everything_scrubs_audit_and_announces_identifiers(
    project, django_capture_on_commit_callbacks
):
    subscriber, _ = upsert(
        project, phone="+4915112345678", external_id="crm-1", email="ada@example.com", tags={"vip": True}
    )
    export_subscriber(subscriber=subscriber, actor=ACTOR)
    keep = SubscriberFactory(project=project)
    received = []

    def receiver(sender, payload, **kwargs):
        received.append(payload)

    subscriber_erased.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            erase_subscriber(subscriber=subscriber, actor=ACTOR)
    finally:
        subscriber_erased.disconnect(receiver)
    assert list(Subscriber.objects.for_project(project)) == [keep]
    assert not TagValue.objects.for_project(project).exists()
    assert not Event.objects.filter(subscriber_id=subscriber.pk).exists()
    exported = AuditEntry.objects.get(project=project, action="subscriber.exported")
    assert exported.object_repr == "(erased)"
    assert AuditEntry.objects.filter(project=project, action="subscriber.erased").exists()
    assert len(received) == 1
    assert set(received[0].identifiers) == {"+4915112345678", "crm-1", "ada@example.com"}
    assert received[0].public_id == str(subscriber.public_id)


def test_subscriber_data_defaults():
    data = SubscriberData(phone="+4915112345678")
    assert (data.tags, data.profile, data.opt_in_evidence, data.tags_are_text) == ({}, {}, None, False)
