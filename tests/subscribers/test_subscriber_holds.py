"""Tag values and events have no database foreign key to their subscriber (ADR 0001): writers
hold the subscribers they write for, and an erasure locks the subscriber first. No tag value or
event may outlive its subscriber, whichever comes first."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from controlpanel.services import Actor
from subscribers import tags as tagtypes
from subscribers.errors import InvalidInput
from subscribers.holds import hold_subscribers
from subscribers.imports.stores import store_for
from subscribers.models import Event, Subscriber, TagDefinition, TagType, TagValue
from subscribers.services import NewEvent, erase_subscriber, record_event, record_events, set_tags
from subscribers.upsert import Item, upsert_subscribers
from tests.factories import SubscriberFactory

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks of PostgreSQL")
ACTOR = Actor(label="test")


def orphans() -> int:
    alive = Subscriber.objects.values("pk")
    return (
        TagValue.objects.exclude(subscriber_id__in=alive).count()
        + Event.objects.exclude(subscriber_id__in=alive).count()
    )


@pytest.mark.django_db
def test_hold_returns_the_subscribers_that_still_exist():
    person = SubscriberFactory()
    with transaction.atomic():
        assert hold_subscribers([person.pk, person.pk, 999_999_999]) == {person.pk}
        assert hold_subscribers([]) == set()


@pytest.mark.django_db(transaction=True)
def test_holding_outside_a_transaction_is_a_programming_error():
    with pytest.raises(RuntimeError, match="transaction"):
        hold_subscribers([1])


@pytest.mark.django_db
def test_events_for_a_subscriber_that_is_gone_are_refused_per_item_and_the_others_kept():
    person = SubscriberFactory()
    gone = SubscriberFactory(project=person.project)
    gone_id = gone.pk
    gone.delete()
    results = record_events(
        project=person.project,
        events=[NewEvent(person.pk, "OrderPlaced"), NewEvent(gone_id, "OrderPlaced")],
    )
    assert not isinstance(results[0], InvalidInput)
    assert isinstance(results[1], InvalidInput) and results[1].code == "not_found"
    assert Event.objects.filter(subscriber_id=person.pk, name="OrderPlaced").count() == 1
    assert orphans() == 0
    with pytest.raises(InvalidInput):
        record_event(project=person.project, subscriber=gone, name="OrderPlaced")
    assert orphans() == 0


@pytest.mark.django_db
def test_an_upsert_whose_subscriber_was_erased_since_it_was_read_writes_nothing_and_retries():
    person = SubscriberFactory(phone="+4915112345678")
    project = person.project
    city = TagDefinition.objects.create(project=project, name="city", type=TagType.STRING)
    store = store_for(project)
    existing = store.fetch_subscribers(
        [person.phone], [], ("id", "phone", "external_id", "whatsapp_consent", "email_consent")
    )
    erase_subscriber(subscriber=person, actor=ACTOR)
    item = Item(phone="+4915112345678", tags={city.pk: tagtypes.value_tuples(TagType.STRING, "Berlin")})
    with pytest.raises(Exception) as raised, transaction.atomic():
        upsert_subscribers(
            project=project, items=[item], source="import", actor=ACTOR, store=store, existing=existing
        )
    assert type(raised.value).__name__ == "IntegrityError"  # the import and the API retry on it
    assert orphans() == 0


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_an_erasure_waits_for_a_writer_that_holds_the_subscriber_then_removes_its_rows():
    person = SubscriberFactory()
    project = person.project
    held, release = threading.Event(), threading.Event()

    def writer():
        try:
            with transaction.atomic():
                record_events(project=project, events=[NewEvent(person.pk, "OrderPlaced")])
                held.set()
                release.wait(10)
                set_tags(project=project, subscriber=person, tags={"city": "Berlin"})
        finally:
            connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    assert held.wait(10)
    erased = threading.Event()

    def eraser():
        try:
            erase_subscriber(subscriber=Subscriber.objects.get(pk=person.pk), actor=ACTOR)
            erased.set()
        finally:
            connections.close_all()

    other = threading.Thread(target=eraser)
    other.start()
    time.sleep(0.5)
    assert not erased.is_set()  # waits for the writer's hold
    release.set()
    thread.join(10)
    other.join(10)
    assert erased.is_set()
    assert not Subscriber.objects.filter(pk=person.pk).exists()
    assert orphans() == 0


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_writer_that_comes_during_an_erasure_waits_and_then_writes_nothing():
    person = SubscriberFactory()
    project = person.project
    locked, release = threading.Event(), threading.Event()

    def eraser():
        # erase_subscriber's first statement, then the deletion held open for a moment.
        try:
            with transaction.atomic():
                Subscriber.objects.select_for_update().filter(pk=person.pk).exists()
                locked.set()
                release.wait(10)
                Subscriber.objects.filter(pk=person.pk).delete()
        finally:
            connections.close_all()

    thread = threading.Thread(target=eraser)
    thread.start()
    assert locked.wait(10)
    threading.Timer(0.5, release.set).start()
    results = record_events(project=project, events=[NewEvent(person.pk, "OrderPlaced")])
    assert release.is_set()  # it waited for the erasure
    assert isinstance(results[0], InvalidInput) and results[0].code == "not_found"
    with pytest.raises(InvalidInput):
        set_tags(project=project, subscriber=person, tags={"city": "Berlin"})
    thread.join(10)
    assert orphans() == 0


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_foreign_keys_to_subscribers_are_gone_from_tag_values_and_events():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' "
            "AND confrelid = 'subscribers_subscriber'::regclass"
        )
        referencing = {row[0] for row in cursor.fetchall()}
    assert "subscribers_tagvalue" not in referencing and "subscribers_event" not in referencing
    assert "subscribers_consentchange" in referencing  # the ledger keeps its key
