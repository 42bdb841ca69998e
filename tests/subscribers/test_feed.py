"""The durable event feed: every event reaches each consumer once its transaction commits, in order,
from a committed position that survives a failed or killed consumer.

These tests commit for real (``transactional_db``): on PostgreSQL the feed hands out only events of
transactions that ended, so the test's own open transaction would hide them.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from controlpanel import health, scheduler
from subscribers import feed
from subscribers.actors import pump_feed
from subscribers.models import Event, FeedCursor, FeedFailure
from subscribers.services import record_event
from tests.factories import ProjectFactory, SubscriberFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seen():
    """A consumer that remembers what it got; unregistered afterwards."""
    got: list[tuple[int, str]] = []
    feed.register("test-consumer", lambda events: got.extend((e.pk, e.name) for e in events), batch_size=3)
    feed.ensure_cursor("test-consumer")
    yield got
    feed.unregister("test-consumer")


def _record(subscriber, name: str, **kwargs) -> Event:
    return record_event(project=subscriber.project, subscriber=subscriber, name=name, **kwargs)


def test_a_consumer_gets_every_event_in_order_once(seen):
    project = ProjectFactory()
    alice, bob = SubscriberFactory(project=project), SubscriberFactory(project=project)
    recorded = [_record(s, f"Step{i}") for i in range(4) for s in (alice, bob)]

    assert feed.pump("test-consumer") == 8
    assert seen == [(e.pk, e.name) for e in recorded]
    # The position is committed: pumping again hands nothing out twice.
    assert feed.pump("test-consumer") == 0
    assert len(seen) == 8
    cursor = FeedCursor.objects.get(consumer="test-consumer")
    assert cursor.handled == 8
    assert cursor.position_event_id == recorded[-1].pk


def test_a_new_consumer_starts_at_the_end_of_the_feed():
    subscriber = SubscriberFactory()
    _record(subscriber, "Old")
    got = []
    feed.register("late-consumer", lambda events: got.extend(e.name for e in events))
    try:
        feed.ensure_cursor("late-consumer")
        _record(subscriber, "New")
        feed.pump("late-consumer")
    finally:
        feed.unregister("late-consumer")
    assert got == ["New"]


def test_bulk_and_status_writers_feed_it_too(seen):
    """Events inserted with bulk_create (the bulk API, status batches) are in the feed like any other."""
    subscriber = SubscriberFactory()
    Event.objects.bulk_create(
        [
            Event(project=subscriber.project, subscriber=subscriber, name="Bulk", occurred_at=timezone.now())
            for _ in range(5)
        ]
    )
    feed.pump("test-consumer")
    assert [name for _, name in seen] == ["Bulk"] * 5


def test_a_failing_handler_leaves_the_position_and_is_retried():
    subscriber = SubscriberFactory()
    calls = []

    def flaky(events):
        calls.append([e.name for e in events])
        Event.objects.filter(pk=events[0].pk).update(name="Touched")  # work that must roll back
        if len(calls) == 1:
            raise RuntimeError("worker died")

    feed.register("flaky", flaky)
    try:
        feed.ensure_cursor("flaky")
        event = _record(subscriber, "Once")
        with pytest.raises(RuntimeError):
            feed.process_batch("flaky")
        cursor = FeedCursor.objects.get(consumer="flaky")
        assert (cursor.failures, cursor.handled) == (1, 0)
        assert "worker died" in cursor.last_error
        event.refresh_from_db()
        assert event.name == "Once"  # the handler's write rolled back with the position

        assert feed.process_batch("flaky") == 1
    finally:
        feed.unregister("flaky")
    assert calls == [["Once"], ["Once"]]
    cursor.refresh_from_db()
    assert (cursor.failures, cursor.handled, cursor.last_error) == (0, 1, "")


def test_a_poisoned_event_is_set_aside_after_repeated_failures_and_the_rest_flow():
    subscriber = SubscriberFactory()
    handled = []

    def picky(events):
        for event in events:
            if event.name == "Poison":
                raise ValueError("cannot handle this one")
        handled.extend(e.name for e in events)

    feed.register("picky", picky)
    try:
        feed.ensure_cursor("picky")
        for name in ("Before", "Poison", "After"):
            _record(subscriber, name)
        for _ in range(feed.MAX_ATTEMPTS):
            with pytest.raises(ValueError):
                feed.process_batch("picky")
        assert handled == []
        assert feed.process_batch("picky") == 3
    finally:
        feed.unregister("picky")
    assert handled == ["Before", "After"]
    failure = FeedFailure.objects.get(consumer="picky")
    assert Event.objects.get(pk=failure.event_id).name == "Poison"
    assert "cannot handle" in failure.error


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_an_event_committed_after_a_later_one_is_not_skipped(seen):
    """The reason for transaction ids: A takes the smaller event id but commits after B.

    A cursor on the event id alone would pass A's event while A was still open and never see it.
    """
    subscriber = SubscriberFactory()
    a_inserted, release_a = threading.Event(), threading.Event()
    ids = {}

    def slow_writer():
        try:
            with transaction.atomic():
                ids["a"] = _record(subscriber, "A").pk
                a_inserted.set()
                assert release_a.wait(10)
        finally:
            connection.close()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert a_inserted.wait(10)
    ids["b"] = _record(subscriber, "B").pk  # committed
    assert ids["a"] < ids["b"]
    # While A is open nothing after it is handed out: B waits behind A.
    feed.pump("test-consumer")
    assert seen == []
    release_a.set()
    writer.join(10)
    feed.pump("test-consumer")
    assert [name for _, name in seen] == ["A", "B"]


def test_pumps_are_sent_every_second_for_each_consumer(seen, monkeypatch):
    sent = []
    monkeypatch.setattr(pump_feed, "send", lambda name: sent.append(name))
    job = next(job for job in scheduler.jobs() if job.name == "event-feed")
    assert job.seconds == 1
    job.send()
    assert "test-consumer" in sent


def test_the_actor_pumps_its_consumer(seen):
    _record(SubscriberFactory(), "ViaActor")
    pump_feed.fn("test-consumer")
    assert [name for _, name in seen] == ["ViaActor"]
    pump_feed.fn("no-such-consumer")  # a consumer gone since the tick is no error


def test_health_shows_each_consumers_lag(seen, client):
    event = _record(SubscriberFactory(), "Waiting")
    Event.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(seconds=30))

    body = client.get("/healthz").json()
    lag = body["event_feed"]["test-consumer"]
    assert lag["pending"] == 1
    assert 29 <= lag["lag_seconds"] < 60

    feed.pump("test-consumer")
    assert client.get("/healthz").json()["event_feed"]["test-consumer"] == {
        "lag_seconds": 0.0,
        "pending": 0,
        "failures": 0,
    }
    assert health.check().ok
