"""Status-only deliveries are applied set-based, ending exactly where one by one would."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from campaigns.models import Message, MessageStatus
from controlpanel import fields
from controlpanel.fields import decrypt
from subscribers.facets import facets_of
from subscribers.models import Event
from subscribers.signals import event_recorded
from tests.factories import SubscriberFactory
from whatsapp import processing
from whatsapp.models import WebhookDelivery
from whatsapp.processing import process_delivery, process_pending
from whatsapp.signals import status_received

from . import payloads as p
from .conftest import APP_SECRET

T0 = 1750000000
FAILED = [{"code": 131026, "title": "Message undeliverable", "error_data": {"details": "not on WhatsApp"}}]
STATE_FIELDS = (
    "status",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "error_code",
    "error_title",
    "error_details",
    "reason",
    "pricing_category",
    "pricing_type",
    "billable",
)


def outbound(account, **kw) -> Message:
    subscriber = SubscriberFactory(project=account.project)
    fields = {"status": MessageStatus.SENDING, "template_name": "order_update", "wamid": p.wamid(), **kw}
    return Message.objects.create(project=account.project, subscriber=subscriber, account=account, **fields)


def statuses(*payloads: dict) -> dict:
    """One delivery carrying the statuses of several p.status payloads, as Meta may batch them."""
    merged = json.loads(json.dumps(payloads[0]))
    value = merged["entry"][0]["changes"][0]["value"]
    for payload in payloads[1:]:
        value["statuses"] += payload["entry"][0]["changes"][0]["value"]["statuses"]
    return merged


def store(account, *bodies: dict | str, processed: bool = False) -> list[WebhookDelivery]:
    """Deliveries as the intake stores them, in this arrival order."""
    start = timezone.now()
    deliveries = []
    for i, body in enumerate(bodies):
        raw = body if isinstance(body, str) else p.body(body).decode()
        deliveries.append(
            WebhookDelivery.objects.create(
                project=account.project,
                account=account,
                body_sha256=hashlib.sha256(raw.encode()).hexdigest(),
                body=raw,
                received_at=start + timedelta(milliseconds=i),
                processed_at=start if processed else None,
            )
        )
    return deliveries


def state(message: Message) -> tuple:
    message.refresh_from_db()
    history = [(h["status"], h["at"], h.get("note")) for h in message.history]
    return (*(getattr(message, name) for name in STATE_FIELDS), history)


def events_of(message: Message) -> list[tuple]:
    """Its status events, with its own wamid written as WAMID so two messages compare equal."""
    rows = Event.objects.filter(subscriber_id=message.subscriber_id).order_by("occurred_at", "id")
    return [
        (
            e.name,
            json.dumps(e.attributes, sort_keys=True).replace(message.wamid, "WAMID"),
            e.facets == e.attributes,
            e.occurred_at,
            e.dedup_key.replace(message.wamid, "WAMID"),
        )
        for e in rows
    ]


ORDERS = {
    "read, sent, delivered, failed": [("read", 30), ("sent", 10), ("delivered", 20), ("failed", 40)],
    "sent, delivered, failed, read": [("sent", 10), ("delivered", 20), ("failed", 25), ("read", 30)],
    "delivered twice, read, sent": [("delivered", 20), ("delivered", 20), ("read", 30), ("sent", 10)],
    "failed first, then progress": [("failed", 5), ("sent", 10), ("read", 30)],
}


@pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS.keys())
@pytest.mark.parametrize("in_one_delivery", [False, True], ids=["one-per-delivery", "one-delivery"])
def test_batch_ends_where_one_by_one_ends(account, order, in_one_delivery):
    batched, one_by_one = outbound(account), outbound(account)

    def bodies(message):
        # A distinct recipient per element keeps repeated statuses distinct bodies (the intake
        # drops identical ones as Meta retries).
        payloads = [
            p.status(
                message.wamid,
                status,
                T0 + ts,
                wa_id=f"165055512{i:02d}",
                errors=FAILED if status == "failed" else None,
            )
            for i, (status, ts) in enumerate(order)
        ]
        return [statuses(*payloads)] if in_one_delivery else payloads

    for delivery in store(account, *bodies(one_by_one), processed=True):
        process_delivery(delivery)  # the per-delivery path: apply_status for each status
    store(account, *bodies(batched))
    process_pending(account.pk)

    assert state(batched) == state(one_by_one)
    assert events_of(batched) == events_of(one_by_one)
    assert events_of(batched)  # the comparison covers recorded events
    assert not WebhookDelivery.objects.filter(processed_at__isnull=True).exists()


def test_read_before_delivered_in_one_batch_stays_read_with_both_timestamps(account):
    message = outbound(account, status=MessageStatus.SENT)
    store(account, p.status(message.wamid, "read", T0 + 30), p.status(message.wamid, "delivered", T0 + 20))
    process_pending(account.pk)
    message.refresh_from_db()
    assert message.status == MessageStatus.READ
    assert (message.delivered_at.timestamp(), message.read_at.timestamp()) == (T0 + 20, T0 + 30)
    assert (message.pricing_category, message.billable) == ("marketing", True)
    assert list(Event.objects.values_list("name", flat=True)) == ["WhatsAppRead"]


def test_failed_keeps_metas_error_and_a_plain_reason(account):
    message = outbound(account, status=MessageStatus.SENT)
    store(
        account,
        p.status(message.wamid, "delivered", T0 + 20),
        p.status(message.wamid, "failed", T0 + 25, errors=FAILED),
    )
    process_pending(account.pk)
    message.refresh_from_db()
    assert (message.status, message.error_code, message.error_title) == (
        MessageStatus.FAILED,
        131026,
        "Message undeliverable",
    )
    assert message.error_details == "not on WhatsApp"
    assert "not on WhatsApp" in message.reason
    failed = Event.objects.get(name="WhatsAppFailed")
    assert failed.attributes == {
        "message_id": message.wamid,
        "template": "order_update",
        "error_code": 131026,
        "error_title": "Message undeliverable",
    }
    assert failed.facets == facets_of(failed.attributes)  # folded texts, for segments


def test_duplicates_across_deliveries_record_each_event_once_and_replay_changes_nothing(
    account, django_capture_on_commit_callbacks
):
    first, second = outbound(account), outbound(account)
    delivered = [p.status(m.wamid, "delivered", T0 + 20) for m in (first, second)]
    read = p.status(first.wamid, "read", T0 + 30)
    store(account, delivered[0], statuses(delivered[0], delivered[1], read), statuses(read, delivered[1]))
    announced = []

    def receiver(sender, payload, **kwargs):
        announced.append(payload)

    def process_all() -> None:
        event_recorded.connect(receiver)
        try:
            with django_capture_on_commit_callbacks(execute=True):
                assert process_pending(account.pk) == 3
        finally:
            event_recorded.disconnect(receiver)

    process_all()

    keys = sorted(Event.objects.values_list("dedup_key", flat=True))
    assert keys == sorted(
        [f"st:{first.wamid}:delivered", f"st:{first.wamid}:read", f"st:{second.wamid}:delivered"]
    )
    assert sorted((a.event_id, a.name, a.subscriber_id) for a in announced) == sorted(
        Event.objects.values_list("id", "name", "subscriber_id")
    )
    before = (state(first), state(second), sorted(Event.objects.values_list("id", "dedup_key")))
    assert [h[0] for h in before[0][-1]] == ["delivered", "read"]

    WebhookDelivery.objects.update(processed_at=None)  # replay the whole inbox
    announced.clear()
    process_all()
    assert (state(first), state(second), sorted(Event.objects.values_list("id", "dedup_key"))) == before
    assert announced == []


def test_a_broken_delivery_fails_alone(account):
    good, cursed = outbound(account), outbound(account)
    bad_json, raising, fine = store(
        account,
        p.status(good.wamid, "delivered", T0 + 20),
        "{not json",
        p.status(cursed.wamid, "delivered", T0 + 20),
        p.status(good.wamid, "read", T0 + 30),
    )[1:]

    def receiver(sender, update, **kwargs):
        if update.wamid == cursed.wamid:
            raise RuntimeError("receiver bug")

    status_received.connect(receiver, dispatch_uid="test-raising-receiver")
    try:
        assert process_pending(account.pk, limit=4) == 4  # one pass: no retry of the failed one yet
    finally:
        status_received.disconnect(dispatch_uid="test-raising-receiver")

    good.refresh_from_db()
    cursed.refresh_from_db()
    assert good.status == MessageStatus.READ
    assert cursed.status == MessageStatus.SENDING  # its delivery was rolled back, to be retried
    for delivery in (bad_json, raising, fine):
        delivery.refresh_from_db()
    assert bad_json.processed_at is not None and bad_json.error.startswith("not JSON")
    assert (raising.processed_at, raising.attempts, raising.error) == (None, 1, "RuntimeError: receiver bug")
    assert fine.processed_at is not None and fine.error == ""
    assert sorted(Event.objects.values_list("name", flat=True)) == ["WhatsAppDelivered", "WhatsAppRead"]

    process_pending(account.pk)  # the receiver is fixed: the retry goes through
    cursed.refresh_from_db()
    assert cursed.status == MessageStatus.DELIVERED


def test_other_deliveries_between_statuses_keep_their_path_and_the_order(account):
    message = outbound(account, status=MessageStatus.SENT)
    store(
        account,
        p.status(message.wamid, "delivered", T0 + 20),
        p.text("Hello"),
        p.status(message.wamid, "read", T0 + 30),
    )
    assert process_pending(account.pk) == 3
    message.refresh_from_db()
    assert message.status == MessageStatus.READ
    assert sorted(Event.objects.values_list("name", flat=True)) == [
        "Subscribed",
        "WhatsAppDelivered",
        "WhatsAppRead",
        "WhatsAppReceived",
    ]
    account.refresh_from_db()
    assert account.last_webhook_at == WebhookDelivery.objects.latest("received_at").received_at


def test_callback_data_settles_a_message_whose_wamid_arrives_in_the_batch(account):
    message = outbound(account, status=MessageStatus.UNKNOWN, wamid=None)
    late = p.wamid()
    store(
        account,
        p.status(late, "delivered", T0 + 20, callback=f"m:{message.public_id}"),
        p.status(late, "read", T0 + 30),  # names it by the wamid the first one set
    )
    process_pending(account.pk)
    message.refresh_from_db()
    assert (message.wamid, message.status) == (late, MessageStatus.READ)


@pytest.mark.parametrize("count", [3, 90])
def test_the_batch_path_is_set_based(account, count, django_assert_max_num_queries):
    messages = [outbound(account, status=MessageStatus.SENT) for _ in range(count)]
    store(account, *(p.status(m.wamid, "delivered", T0 + 20) for m in messages))
    # Per batch: claim, savepoint, lock messages, bulk UPDATE, event check, project, the hold on
    # the events' subscribers (subscribers/holds.py), INSERT in record_events' savepoint (it falls
    # back one by one if a concurrent writer took a dedup key), deliveries UPDATE, account UPDATE,
    # release; then an empty claim. The savepoints of process_pending's transaction (nested in the
    # test's) count too: 18, for any number.
    with django_assert_max_num_queries(18):
        assert process_pending(account.pk) == count
    assert Message.objects.filter(status=MessageStatus.DELIVERED).count() == count
    assert Event.objects.filter(name="WhatsAppDelivered").count() == count


class _LockCycle(Exception):
    sqlstate = "40P01"  # what psycopg's DeadlockDetected carries


def test_a_batch_that_loses_a_lock_cycle_is_claimed_again_whole_with_no_attempt_counted(account):
    """PostgreSQL aborts one of two workers whose batches lock the same rows in opposite orders.
    Retrying its deliveries one by one inside the same transaction kept its other locks and met
    the cycle again; the whole batch is rolled back and claimed anew instead."""
    first, second = outbound(account), outbound(account)
    deliveries = store(
        account,
        p.status(first.wamid, "delivered", T0 + 20),
        p.text("hallo"),  # another path between the two status runs
        p.status(second.wamid, "delivered", T0 + 22),
    )
    lost, seen = [], []

    def receiver(sender, update, **kwargs):
        seen.append(update.wamid)
        if update.wamid == second.wamid and not lost:
            lost.append(update.wamid)
            victim = OperationalError("deadlock detected")
            victim.__cause__ = _LockCycle()
            raise victim

    status_received.connect(receiver, dispatch_uid="test-lock-cycle")
    try:
        assert process_pending(account.pk) == 3
    finally:
        status_received.disconnect(dispatch_uid="test-lock-cycle")

    assert lost == [second.wamid]
    # The whole batch again, the first run too: nothing of the victim's transaction was kept.
    assert seen == [first.wamid, second.wamid, first.wamid, second.wamid]
    for message in (first, second):
        message.refresh_from_db()
        assert message.status == MessageStatus.DELIVERED
    for delivery in deliveries:
        delivery.refresh_from_db()
        assert (delivery.processed_at is not None, delivery.attempts, delivery.error) == (True, 0, "")
    # The first run's work was rolled back with the batch and done once, on the second claim.
    assert Event.objects.filter(name="WhatsAppDelivered").count() == 2
    assert Event.objects.filter(name="WhatsAppReceived").count() == 1


def test_a_batch_that_keeps_losing_lock_cycles_gives_up_for_the_next_call(account, monkeypatch):
    message = outbound(account)
    (delivery,) = store(account, p.status(message.wamid, "delivered", T0 + 20))
    monkeypatch.setattr(processing, "MAX_VICTIM_RETRIES", 2)
    calls = []

    def always(run):
        calls.append(len(run))
        victim = OperationalError("deadlock detected")
        victim.__cause__ = _LockCycle()
        raise victim

    monkeypatch.setattr(processing, "process_status_deliveries", always)
    with pytest.raises(processing._Victim):
        process_pending(account.pk)
    assert calls == [1, 1, 1]
    delivery.refresh_from_db()
    assert (delivery.processed_at, delivery.attempts) == (None, 0)  # nothing counted against it


@pytest.mark.django_db(transaction=True)
def test_two_workers_drain_one_account_without_doing_a_delivery_twice(account):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time; row locks are PostgreSQL's")
    messages = [outbound(account, status=MessageStatus.SENT) for _ in range(60)]
    store(
        account,
        *(p.status(m.wamid, s, T0 + ts) for s, ts in (("delivered", 20), ("read", 30)) for m in messages),
    )
    counts: list[int] = []

    def worker() -> None:
        try:
            counts.append(process_pending(account.pk, batch=15))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(counts) == 120  # each delivery claimed by exactly one worker
    assert not WebhookDelivery.objects.exclude(error="").exists()
    assert not WebhookDelivery.objects.filter(processed_at__isnull=True).exists()
    assert Message.objects.filter(status=MessageStatus.READ).count() == 60
    assert Event.objects.filter(name="WhatsAppRead").count() == 60


@pytest.fixture
def decryptions(monkeypatch) -> list[str]:
    """Every plain text EncryptedTextField decrypts from here on."""
    seen: list[str] = []

    def counting(token: str) -> str:
        seen.append(decrypt(token))
        return seen[-1]

    monkeypatch.setattr(fields, "decrypt", counting)
    return seen


@pytest.mark.parametrize("count", [2, 30])
def test_a_batch_does_not_decrypt_the_account_secrets_per_delivery(account, count, decryptions):
    messages = [outbound(account, status=MessageStatus.SENT) for _ in range(count)]
    # Both paths: status runs (set-based) and deliveries processed one by one.
    store(
        account,
        *(p.status(m.wamid, "delivered", T0 + 20) for m in messages),
        *(p.text(f"Hello {i}") for i in range(count)),
    )
    assert process_pending(account.pk) == 2 * count
    assert len(decryptions) <= 2  # at most this account's access token and app secret, once
    assert Message.objects.filter(status=MessageStatus.DELIVERED).count() == count
    assert Event.objects.filter(name="WhatsAppReceived").count() == count


def test_a_handler_reading_a_secret_decrypts_it_once_per_batch(account, decryptions, monkeypatch):
    seen: list[str] = []
    for_this_account = processing._for_this_account

    def reading_the_secret(account, entry, value):
        seen.append(account.app_secret)
        return for_this_account(account, entry, value)

    monkeypatch.setattr(processing, "_for_this_account", reading_the_secret)
    messages = [outbound(account, status=MessageStatus.SENT) for _ in range(10)]
    store(account, *(p.status(m.wamid, "delivered", T0 + 20) for m in messages), p.text("Hello"))
    assert process_pending(account.pk) == 11
    assert seen == [APP_SECRET] * 11
    assert decryptions == [APP_SECRET]
