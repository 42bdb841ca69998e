"""The email and push sender (campaigns/channel_sending.py): dispatcher, claim, transport outcomes,
write-back, crashes and the sweeper, with a fake transport registered for each test; and
``sendpolicy.decide`` for those rows (consent of the row's channel, one cap and quiet hours)."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_dramatiq.utils import load_middleware
from dramatiq.brokers.stub import StubBroker

from campaigns import actors, channel_policy, channel_sending, channels, sending, sendpolicy
from campaigns.channels import Delivery
from campaigns.models import Channel, Message, MessageKind, MessageStatus, SendingPolicy
from campaigns.outcomes import Hold
from controlpanel import scheduler
from controlpanel.management.commands.serve import start_workers
from subscribers.models import ConsentState, Device
from tests.factories import ProjectFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


class FakeTransport:
    """Answers each message with ``answer(message)``; records what it was handed, per call."""

    def __init__(self, channel: str, answer: Callable[[Message], Delivery] | None = None) -> None:
        self.channel = channel
        self.answer = answer or (lambda m: Delivery(ok=True, provider_message_id=f"id-{m.pk}"))
        self.calls: list[tuple[int, list[int]]] = []
        self.lock = threading.Lock()

    def send(self, project, messages: Sequence[Message]) -> list[Delivery]:
        with self.lock:
            self.calls.append((project.pk, [m.pk for m in messages]))
        return [self.answer(m) for m in messages]

    @property
    def sent_ids(self) -> list[int]:
        return [pk for _, ids in self.calls for pk in ids]


@pytest.fixture
def email(monkeypatch) -> FakeTransport:
    transport = FakeTransport(Channel.EMAIL)
    monkeypatch.setitem(channels._transports, Channel.EMAIL, transport)
    return transport


@pytest.fixture
def push(monkeypatch) -> FakeTransport:
    transport = FakeTransport(Channel.PUSH)
    monkeypatch.setitem(channels._transports, Channel.PUSH, transport)
    return transport


@pytest.fixture
def enqueued(monkeypatch) -> list[tuple[list[int], str | None]]:
    """What the dispatcher puts on the broker: (ids, lease token) per batch."""
    sent: list[tuple[list[int], str | None]] = []
    monkeypatch.setattr(actors.send_channel_messages, "send", lambda ids, lease: sent.append((ids, lease)))
    return sent


@pytest.fixture
def project():
    return ProjectFactory(time_zone="UTC")


def person(project, **kw):
    defaults = {
        "project": project,
        "email": "anna@example.com",
        "email_consent": ConsentState.OPTED_IN,
        "push_consent": ConsentState.UNKNOWN,
        "time_zone": "UTC",
    }
    return SubscriberFactory(**{**defaults, **kw})


def device(subscriber, **kw) -> Device:
    return Device.objects.create(
        project=subscriber.project,
        subscriber=subscriber,
        token=kw.pop("token", f"token-{Device.objects.count()}-{subscriber.pk}"),
        platform="android",
        **kw,
    )


def row(subscriber, channel=Channel.EMAIL, *, marketing=False, status=MessageStatus.QUEUED, **kw) -> Message:
    """An outbox row as the send services write it (content rendered, kind template)."""
    content = (
        {"subject": "Your order", "preheader": "On its way", "html": "<p>Hi</p>", "text": "Hi"}
        if channel == Channel.EMAIL
        else {"title": "Your order", "body": "On its way", "data": {}}
    )
    fields = {"kind": MessageKind.TEMPLATE, "content": content, "history": [{"status": "queued"}], **kw}
    fields.update(channel=channel, marketing=marketing, status=status)
    return Message.objects.create(project=subscriber.project, subscriber=subscriber, **fields)


_numbers = itertools.count()


def rows(project, n: int, channel=Channel.EMAIL, **kw) -> list[Message]:
    made = []
    for _ in range(n):
        subscriber = person(project, email=f"p{next(_numbers)}@example.com")
        if channel == Channel.PUSH:
            device(subscriber)
        made.append(row(subscriber, channel, **kw))
    return made


def fresh(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)


@pytest.fixture
def tick(django_capture_on_commit_callbacks) -> Callable[[], int]:
    """A dispatcher tick whose batches reach the (patched) broker: they are enqueued on commit."""

    def run() -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return channel_sending.dispatch()

    return run


@pytest.fixture
def dispatch_and_send(tick, enqueued) -> Callable[[], dict[str, int]]:
    """A tick, then every batch it enqueued sent; counts by outcome."""

    def run() -> dict[str, int]:
        tick()
        counts: dict[str, int] = {}
        for ids, token in enqueued:
            for status, n in channel_sending.send_batch(ids, token).items():
                counts[status] = counts.get(status, 0) + n
        enqueued.clear()
        return counts

    return run


# --- the dispatcher ------------------------------------------------------------------------------


def test_the_dispatcher_leases_due_rows_of_each_channel_in_batches_of_its_size(
    project, email, push, enqueued, settings, tick
):
    settings.EMAIL_SEND_BATCH = 2
    settings.PUSH_SEND_BATCH = 3
    mails = rows(project, 5)
    pushes = rows(project, 4, Channel.PUSH)
    later = row(person(project), send_after=timezone.now() + timedelta(hours=1))
    assert tick() == 9
    batches = [ids for ids, _ in enqueued]
    assert sorted(len(b) for b in batches) == [1, 1, 2, 2, 3]
    assert sorted(pk for b in batches for pk in b) == sorted(m.pk for m in mails + pushes)
    assert all(token == enqueued[0][1] for _, token in enqueued)  # one lease per tick
    assert later.pk not in {pk for b in batches for pk in b}
    # Leased rows are not leased again by the next tick (nor by a concurrent one).
    enqueued.clear()
    assert tick() == 0 and enqueued == []


def test_rows_in_flight_bound_what_a_tick_leases(project, email, enqueued, settings, tick):
    settings.EMAIL_SEND_BATCH = 2
    settings.CHANNEL_SEND_IN_FLIGHT_BATCHES = 2
    rows(project, 7)
    assert tick() == 4  # two batches of two
    assert tick() == 0  # still leased, unclaimed
    for ids, token in enqueued:
        channel_sending.send_batch(ids, token)
    enqueued.clear()
    assert tick() == 3  # those were sent: room again


def test_a_channel_without_a_transport_is_not_dispatched(project, email, enqueued, monkeypatch, tick):
    monkeypatch.delitem(channels._transports, Channel.PUSH, raising=False)
    pushes = rows(project, 2, Channel.PUSH)
    assert tick() == 0
    assert all(fresh(m).status == MessageStatus.QUEUED and fresh(m).send_after is None for m in pushes)


def test_whatsapp_and_channel_senders_keep_to_their_own_rows(
    project, email, enqueued, monkeypatch, tick, django_capture_on_commit_callbacks
):
    """Email rows have no account: the WhatsApp dispatcher's "account removed" scan must not take
    them (it would skip them as "account removed"), nor a WhatsApp batch claim them, and back."""
    mail = row(person(project))
    whatsapp = Message.objects.create(
        project=project, subscriber=person(project, email=""), status=MessageStatus.QUEUED
    )
    wa_batches: list = []
    monkeypatch.setattr(actors.send_messages, "send", lambda ids, lease: wa_batches.append(ids))
    with django_capture_on_commit_callbacks(execute=True):
        sending.dispatch()
    assert wa_batches == [[whatsapp.pk]]
    assert sending.send_batch([mail.pk]) == {} and fresh(mail).status == MessageStatus.QUEUED
    assert channel_sending.send_batch([whatsapp.pk]) == {}
    assert fresh(whatsapp).status == MessageStatus.QUEUED  # the WhatsApp batch's to send
    assert tick() == 1 and enqueued[0][0] == [mail.pk]


def test_the_dispatch_scan_uses_the_channel_index(project, email, enqueued, tick):
    if connection.vendor != "postgresql":
        pytest.skip("EXPLAIN output of PostgreSQL")
    rows(project, 3)
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        with CaptureQueriesContext(connection) as queries:
            tick()
        lease_sql = next(q["sql"] for q in queries if "WITH picked" in q["sql"])
        cursor.execute(f"EXPLAIN {lease_sql}")
        plan = "\n".join(r[0] for r in cursor.fetchall())
        cursor.execute("SET enable_seqscan = on")
    assert "message_channel_due" in plan


def test_the_lease_of_rows_without_a_time_reads_the_index_in_order(project, email, enqueued, tick):
    """No Sort node and no walk of the primary key: the lease takes the first rows of the index's
    range and stops (it read and sorted every queued row, or every sent row, before)."""
    if connection.vendor != "postgresql":
        pytest.skip("EXPLAIN output of PostgreSQL")
    rows(project, 3)
    with CaptureQueriesContext(connection) as queries:
        tick()
    lease_sql = next(
        q["sql"] for q in queries if "WITH picked" in q["sql"] and "send_after IS NULL" in q["sql"]
    )
    with connection.cursor() as cursor:
        # Planner statistics that make the primary key's order look cheap, as a big outbox does.
        cursor.execute("SET enable_sort = off")
        cursor.execute(f"EXPLAIN {lease_sql}")
        plan = "\n".join(r[0] for r in cursor.fetchall())
        cursor.execute("SET enable_sort = on")
    # The CTE's part of the plan; the UPDATE then looks its rows up by primary key (= ANY).
    picked, _, update = plan.partition("InitPlan")
    assert "message_channel_due" in picked and "Sort" not in picked and "pkey" not in picked
    assert "campaigns_message_pkey" in update and "Sort" not in update


def test_kick_asks_for_one_dispatch_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    kicks: list[int] = []
    monkeypatch.setattr(actors.dispatch_channel_messages, "send", lambda: kicks.append(1))
    monkeypatch.setattr(channel_sending, "_last_kick", 0.0)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        channel_sending.kick()
    assert kicks == [] and len(callbacks) == 1  # nothing before the commit
    for callback in callbacks:
        callback()
    assert kicks == [1]
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(50):  # a journey writing many rows: one dispatch, not fifty
            channel_sending.kick()
    assert kicks == [1]


def test_the_embedded_mode_ticks_and_runs_the_channel_actors(monkeypatch):
    """`manage.py serve`: the scheduler's tick enqueues a dispatch, its workers run both actors."""
    [job] = [j for j in scheduler.jobs() if j.name == "dispatch-channel-messages"]
    assert job.seconds == 1
    middleware = django_settings.DRAMATIQ_BROKER["MIDDLEWARE"]
    broker = StubBroker(middleware=[load_middleware(path) for path in middleware])
    for actor in (actors.send_channel_messages, actors.dispatch_channel_messages):
        monkeypatch.setattr(actor, "broker", broker)
        broker.declare_actor(actor)
    ran = {"dispatch": threading.Event(), "send": threading.Event()}
    monkeypatch.setattr(channel_sending, "dispatch", lambda: ran["dispatch"].set())
    monkeypatch.setattr(channel_sending, "send_batch", lambda ids, lease=None: ran["send"].set())
    workers = start_workers(broker)
    try:
        job.send()
        actors.send_channel_messages.send([1], None)
        assert ran["dispatch"].wait(10) and ran["send"].wait(10)
    finally:
        for worker in workers:
            worker.stop(timeout=5_000)
        broker.close()


# --- outcomes ------------------------------------------------------------------------------------


def test_accepted_rows_are_sent_with_the_provider_id(project, email, enqueued, dispatch_and_send):
    mails = rows(project, 3)
    assert dispatch_and_send() == {"sent": 3}
    assert email.calls == [(project.pk, [m.pk for m in mails])]
    for m in map(fresh, mails):
        assert m.status == MessageStatus.SENT and m.provider_message_id == f"id-{m.pk}"
        assert m.sent_at is not None and m.attempts == 1 and m.reason == ""
        assert m.history[-1]["status"] == "sent" and "email provider" in m.history[-1]["note"]


def test_a_transient_answer_queues_the_row_again_with_backoff_then_fails_it(
    project, email, enqueued, dispatch_and_send
):
    email.answer = lambda m: Delivery(ok=False, retry=True, error_code="421", error="Try again later.")
    mail = row(person(project))
    before = timezone.now()
    assert dispatch_and_send() == {"requeued": 1}
    m = fresh(mail)
    assert m.status == MessageStatus.QUEUED and m.attempts == 1 and m.reason == "Try again later."
    assert timedelta(seconds=1.5) < m.send_after - before < timedelta(seconds=4)  # 2 s, then 8, 32 ...
    assert m.error_code == 421 and m.history[-1]["note"] == "retry after error 421"
    assert dispatch_and_send() == {}  # not due yet
    Message.objects.filter(pk=mail.pk).update(attempts=sending.MAX_ATTEMPTS - 1, send_after=None)
    assert dispatch_and_send() == {"failed": 1}
    m = fresh(mail)
    assert m.status == MessageStatus.FAILED and m.attempts == sending.MAX_ATTEMPTS and m.failed_at


def test_the_providers_retry_after_is_honoured(project, push, enqueued, dispatch_and_send):
    push.answer = lambda m: Delivery(ok=False, retry=True, retry_after=120, error_code="QUOTA_EXCEEDED")
    [message] = rows(project, 1, Channel.PUSH)
    before = timezone.now()
    dispatch_and_send()
    m = fresh(message)
    assert timedelta(seconds=119) < m.send_after - before < timedelta(seconds=125)
    assert m.error_code is None and m.error_title == "QUOTA_EXCEEDED"


def test_a_permanent_answer_fails_the_row_with_the_providers_code_and_words(
    project, email, push, enqueued, dispatch_and_send
):
    email.answer = lambda m: Delivery(ok=False, error_code="550", error="Mailbox unavailable.")
    push.answer = lambda m: Delivery(ok=False, error_code="UNREGISTERED", error="The token is gone.")
    mail = row(person(project))
    [message] = rows(project, 1, Channel.PUSH)
    assert dispatch_and_send() == {"failed": 2}
    m, p = fresh(mail), fresh(message)
    assert (m.status, m.error_code, m.error_title, m.reason) == ("failed", 550, "550", "Mailbox unavailable.")
    assert (p.status, p.error_code, p.error_title, p.reason) == (
        "failed",
        None,
        "UNREGISTERED",
        "The token is gone.",
    )
    assert m.failed_at and m.history[-1]["note"] == "error 550"


def test_an_unknown_answer_is_never_sent_again(project, email, enqueued, settings, dispatch_and_send):
    email.answer = lambda m: Delivery(ok=False, unknown=True, error="Timed out after sending.")
    mail = row(person(project))
    assert dispatch_and_send() == {"unknown": 1}
    assert fresh(mail).reason == "Timed out after sending."
    settings.UNKNOWN_RESEND_AFTER = 0
    Message.objects.filter(pk=mail.pk).update(sending_at=timezone.now() - timedelta(days=1))
    sending.sweep_stuck()
    assert fresh(mail).status == MessageStatus.UNKNOWN
    assert dispatch_and_send() == {} and len(email.calls) == 1


def test_a_transport_that_raises_queues_the_whole_batch_again(
    project, email, enqueued, caplog, dispatch_and_send
):
    def broken(project, messages):
        raise ConnectionRefusedError("smtp down")

    email.send = broken
    mails = rows(project, 3)
    assert dispatch_and_send() == {"requeued": 3}
    for m in map(fresh, mails):
        assert m.status == MessageStatus.QUEUED and m.attempts == 1 and m.send_after > timezone.now()
        assert m.reason == "The email transport failed (ConnectionRefusedError)."
    assert "email transport failed" in caplog.text


def test_a_mixed_batch_is_written_back_in_one_statement(project, email, enqueued, tick):
    answers = {
        0: Delivery(ok=True, provider_message_id="<a@mail>"),
        1: Delivery(ok=False, retry=True, error_code="451"),
        2: Delivery(ok=False, error_code="550", error="No such user."),
        3: Delivery(ok=False, unknown=True),
    }
    mails = rows(project, 8)
    index = {m.pk: i % 4 for i, m in enumerate(mails)}
    email.answer = lambda m: answers[index[m.pk]]
    tick()
    [(ids, token)] = enqueued
    with CaptureQueriesContext(connection) as queries:
        counts = channel_sending.send_batch(ids, token)
    assert counts == {"sent": 2, "requeued": 2, "failed": 2, "unknown": 2}
    assert [fresh(m).status for m in mails[:4]] == ["sent", "queued", "failed", "unknown"]
    # On PostgreSQL the claim and the write-back are UPDATEs in a WITH that also moves the counters.
    writes = [q["sql"] for q in queries if re.match(r"(WITH \w+ AS \()?UPDATE", q["sql"].lstrip().upper())]
    assert len(writes) == 3  # the claim, the posting mark, the write-back


def test_queries_per_batch_do_not_grow_with_its_size(project, email, push, enqueued, tick):
    SendingPolicy.objects.create(project=project, cap_messages=5, cap_days=7)

    def queries_for(n: int) -> int:
        rows(project, n, marketing=True)
        rows(project, n, Channel.PUSH, marketing=True)
        tick()
        with CaptureQueriesContext(connection) as queries:
            for ids, token in enqueued:
                channel_sending.send_batch(ids, token)
        enqueued.clear()
        return len(queries)

    small = queries_for(2)
    assert small == queries_for(20)
    assert Message.objects.filter(status="sent").count() == 44


# --- claims and crashes --------------------------------------------------------------------------


def test_a_batch_delivered_twice_sends_once(project, email, enqueued, tick):
    mails = rows(project, 3)
    tick()
    [(ids, token)] = enqueued
    assert channel_sending.send_batch(ids, token) == {"sent": 3}
    assert channel_sending.send_batch(ids, token) == {}
    assert channel_sending.send_batch(ids, None) == {}
    assert sorted(email.sent_ids) == sorted(m.pk for m in mails)


def test_a_stale_token_does_not_send_a_row_early(project, email, enqueued):
    held = row(person(project), send_after=timezone.now() + timedelta(minutes=30))
    assert channel_sending.send_batch([held.pk], (timezone.now() + timedelta(minutes=1)).isoformat()) == {}
    assert fresh(held).status == MessageStatus.QUEUED and email.calls == []


def at_once(n: int, work: Callable[[], object]) -> None:
    """``work`` on ``n`` threads (each its own connection), started together."""
    barrier = threading.Barrier(n)

    def run() -> None:
        try:
            barrier.wait()
            work()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_senders_send_each_row_once(email):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent claims need PostgreSQL (SQLite serialises writers)")
    project = ProjectFactory(time_zone="UTC")
    mails = rows(project, 40)
    ids = [m.pk for m in mails]
    results: list[dict] = []
    at_once(4, lambda: results.append(channel_sending.send_batch(ids)))
    assert sum(r.get("sent", 0) for r in results) == 40
    assert sorted(email.sent_ids) == sorted(ids)  # nobody got a second email
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_dispatchers_lease_each_row_once(email, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED needs PostgreSQL")
    project = ProjectFactory(time_zone="UTC")
    rows(project, 60)
    leased: list[list[int]] = []
    lock = threading.Lock()

    def collect(ids, token):
        with lock:
            leased.append(ids)

    monkeypatch.setattr(actors.send_channel_messages, "send", collect)
    at_once(3, channel_sending.dispatch)
    all_ids = [pk for ids in leased for pk in ids]
    assert len(all_ids) == len(set(all_ids)) == 60


@pytest.mark.django_db(transaction=True)
def test_a_dispatch_leaves_while_another_runs(email, monkeypatch):
    """Single flight: a backlog of kicks must not become many dispatches scanning the same rows."""
    if connection.vendor != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's")
    rows(ProjectFactory(time_zone="UTC"), 5)
    monkeypatch.setattr(actors.send_channel_messages, "send", lambda ids, token: None)
    other = connections.create_connection("default")
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [channel_sending.DISPATCH_LOCK])
        assert channel_sending.dispatch() == 0
        assert not Message.objects.exclude(send_after=None).exists()
        other.rollback()
    finally:
        other.close()
    assert channel_sending.dispatch() == 5


def test_rows_claimed_but_never_handed_over_are_queued_again_by_the_sweeper(
    project, email, enqueued, dispatch_and_send
):
    """A worker killed between its claim and the posting mark: nothing went out, so it goes again."""
    mail = row(person(project))
    claimed_at = timezone.now() - timedelta(minutes=2)
    assert sending._claim([mail.pk], claimed_at, None, rows=sending.CHANNEL_ROWS) == [mail.pk]
    assert sending.sweep_stuck() == 0
    m = fresh(mail)
    assert m.status == MessageStatus.QUEUED and m.history[-1]["note"] == sending.UNPOSTED_NOTE
    assert dispatch_and_send() == {"sent": 1}


def test_a_failure_before_the_transport_gives_the_rows_back(project, email, monkeypatch):
    mail = row(person(project))

    def broken(messages, now):
        raise RuntimeError("policy bug")

    monkeypatch.setattr(sendpolicy, "decide", broken)
    with pytest.raises(RuntimeError):
        channel_sending.send_batch([mail.pk])
    assert fresh(mail).status == MessageStatus.QUEUED and email.calls == []


def test_rows_handed_over_and_stuck_become_unknown_not_resent(project, email, enqueued, dispatch_and_send):
    mail = row(person(project))

    def killed(project, messages):
        raise KeyboardInterrupt  # stands for a time limit: an interrupt while the transport works

    email.send = killed
    with pytest.raises(KeyboardInterrupt):
        channel_sending.send_batch([mail.pk])
    m = fresh(mail)
    # The transport held it without answering: it may have gone out, so it is unknown, not queued.
    assert m.status == MessageStatus.UNKNOWN and m.reason == channel_sending.UNANSWERED
    # A row left "sending" after its posting mark (a SIGKILL) is moved to unknown by the sweeper.
    Message.objects.filter(pk=mail.pk).update(
        status=MessageStatus.SENDING, sending_at=timezone.now() - timedelta(hours=1), send_after=None
    )
    assert sending.sweep_stuck() == 1 and fresh(mail).status == MessageStatus.UNKNOWN
    assert dispatch_and_send() == {}


@pytest.mark.parametrize("taken_back", ["one", "all"])
def test_rows_the_sweeper_took_back_meanwhile_are_neither_sent_nor_written_back(
    project, email, monkeypatch, taken_back
):
    kept, taken = row(person(project)), row(person(project, email="b@example.com"))
    gone = [taken.pk] if taken_back == "one" else [kept.pk, taken.pk]
    decide = sendpolicy.decide

    def stalled_decide(messages, now):
        # The worker stalled past LEASE here, and the sweeper queued the rows again (requeue_unposted).
        Message.objects.filter(pk__in=gone).update(status=MessageStatus.QUEUED, send_after=None)
        return decide(messages, now)

    monkeypatch.setattr(sendpolicy, "decide", stalled_decide)
    counts = channel_sending.send_batch([kept.pk, taken.pk])
    assert email.sent_ids == ([kept.pk] if taken_back == "one" else [])
    assert counts == ({"sent": 1} if taken_back == "one" else {})
    for pk in gone:  # left as the sweeper wrote them: queued, for the next claim
        m = Message.objects.get(pk=pk)
        assert (m.status, m.attempts, len(m.history)) == (MessageStatus.QUEUED, 0, 1)


# --- policy: consent per channel, one cap and quiet hours across channels ------------------------

# 21:30 UTC on a winter day: 22:30 in Berlin (quiet), 16:30 in New York (not quiet).
NOW = datetime(2030, 1, 15, 21, 30, tzinfo=UTC)


def claimed(subscriber, channel=Channel.EMAIL, *, marketing=True) -> Message:
    """A row as the sender hands it to decide: claimed, subscriber loaded."""
    message = row(subscriber, channel, marketing=marketing, status=MessageStatus.SENDING, sending_at=NOW)
    return Message.objects.select_related("subscriber").get(pk=message.pk)


def went_out(subscriber, channel, *, at=NOW - timedelta(days=1), marketing=True) -> Message:
    return row(subscriber, channel, marketing=marketing, status=MessageStatus.SENT, sending_at=at, sent_at=at)


def reasons(messages) -> dict[int, str]:
    return {pk: d.reason for pk, d in sendpolicy.decide(messages, NOW).items()}


def test_email_rows_follow_the_email_consent_rules(project):
    no_address = claimed(person(project, email=""))
    bounced = claimed(person(project, email="b@example.com", email_undeliverable_at=NOW))
    opted_out = claimed(person(project, email_consent=ConsentState.OPTED_OUT), marketing=False)
    not_opted_in = claimed(person(project, email_consent=ConsentState.UNKNOWN))
    notice = claimed(person(project, email_consent=ConsentState.UNKNOWN), marketing=False)
    # WhatsApp's consent says nothing about email.
    whatsapp_out = claimed(person(project, whatsapp_consent=ConsentState.OPTED_OUT))
    assert reasons([no_address, bounced, opted_out, not_opted_in, notice, whatsapp_out]) == {
        no_address.pk: channel_policy.NO_EMAIL,
        bounced.pk: channel_policy.EMAIL_UNDELIVERABLE,
        opted_out.pk: channel_policy.EMAIL_OPTED_OUT,
        not_opted_in.pk: channel_policy.EMAIL_NO_OPT_IN,
    }


def test_push_rows_need_an_active_device_and_no_opt_out(project):
    none = person(project)
    removed = person(project)
    device(removed, removed_at=NOW, removed_reason="UNREGISTERED")
    disabled = person(project)
    device(disabled, push_enabled=False)
    opted_out = person(project, push_consent=ConsentState.OPTED_OUT)
    device(opted_out)
    reachable = person(project, whatsapp_consent=ConsentState.OPTED_OUT, email_consent=ConsentState.OPTED_OUT)
    device(reachable)
    device(reachable)
    messages = [
        claimed(s, Channel.PUSH, marketing=False) for s in (none, removed, disabled, opted_out, reachable)
    ]
    with CaptureQueriesContext(connection) as queries:
        decided = reasons(messages)
    assert decided == {
        messages[0].pk: channel_policy.NO_DEVICE,
        messages[1].pk: channel_policy.NO_DEVICE,
        messages[2].pk: channel_policy.NO_DEVICE,
        messages[3].pk: channel_policy.PUSH_OPTED_OUT,
    }
    assert len(queries) == 1  # the devices of the whole batch, counted in one query


def test_the_frequency_cap_counts_marketing_of_every_channel(project):
    SendingPolicy.objects.create(project=project, cap_messages=2, cap_days=7)
    anna = person(project)
    device(anna)
    went_out(anna, Channel.WHATSAPP)
    went_out(anna, Channel.EMAIL)
    went_out(anna, Channel.PUSH, marketing=False)  # transactional: does not count
    went_out(anna, Channel.PUSH, at=NOW - timedelta(days=8))  # outside the window
    capped = claimed(anna, Channel.PUSH)
    notice = claimed(anna, Channel.EMAIL, marketing=False)
    assert reasons([capped, notice]) == {capped.pk: sendpolicy.CAPPED}


def test_two_channels_to_one_person_in_one_batch_share_the_cap(project):
    SendingPolicy.objects.create(project=project, cap_messages=1, cap_days=7)
    ben = person(project)
    device(ben)
    first, second = claimed(ben, Channel.EMAIL), claimed(ben, Channel.PUSH)
    assert reasons([first, second]) == {second.pk: sendpolicy.CAPPED}


def test_an_email_sent_counts_toward_a_later_whatsapp_promotion(project):
    """The other direction: the WhatsApp sender's decide sees email rows as marketing sent."""
    SendingPolicy.objects.create(project=project, cap_messages=1, cap_days=7)
    cleo = person(project)
    went_out(cleo, Channel.EMAIL)
    promotion = claimed(cleo, Channel.WHATSAPP)
    assert reasons([promotion]) == {promotion.pk: sendpolicy.CAPPED}


def test_quiet_hours_hold_marketing_of_every_channel_in_the_subscribers_time(project):
    SendingPolicy.objects.create(project=project, quiet_start=time(22, 0), quiet_end=time(8, 0))
    berlin = person(project, time_zone="Europe/Berlin")
    device(berlin)
    new_york = person(project, time_zone="America/New_York")
    mail, note, push_row = (
        claimed(berlin, Channel.EMAIL),
        claimed(berlin, Channel.EMAIL, marketing=False),
        claimed(berlin, Channel.PUSH),
    )
    awake = claimed(new_york, Channel.EMAIL)
    decided = sendpolicy.decide([mail, note, push_row, awake], NOW)
    assert set(decided) == {mail.pk, push_row.pk}
    for pk in (mail.pk, push_row.pk):
        assert isinstance(decided[pk], Hold)
        assert decided[pk].until == datetime(2030, 1, 16, 8, 0, tzinfo=ZoneInfo("Europe/Berlin"))


# --- what the sender does with the answers -------------------------------------------------------


def test_a_refused_row_is_skipped_with_its_reason_and_never_handed_over(project, email, enqueued, tick):
    out = row(person(project, email_consent=ConsentState.OPTED_OUT))
    ok = row(person(project, email="ok@example.com"))
    tick()
    [(ids, token)] = enqueued
    assert channel_sending.send_batch(ids, token) == {"skipped": 1, "sent": 1}
    assert email.sent_ids == [ok.pk]
    skipped = Message.objects.get(pk=out.pk)
    assert skipped.status == MessageStatus.SKIPPED and skipped.reason == channel_policy.EMAIL_OPTED_OUT
    assert skipped.history[-1]["note"] == "policy"


def test_a_row_held_by_quiet_hours_goes_when_they_end(project, push, enqueued, tick, monkeypatch):
    SendingPolicy.objects.create(project=project, quiet_start=time(22, 0), quiet_end=time(8, 0))
    dana = person(project, time_zone="Europe/Berlin")
    device(dana)
    held = row(dana, Channel.PUSH, marketing=True)
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    tick()
    [(ids, token)] = enqueued
    assert channel_sending.send_batch(ids, token) == {"requeued": 1}
    m = Message.objects.get(pk=held.pk)
    morning = datetime(2030, 1, 16, 8, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert m.status == MessageStatus.QUEUED and m.send_after == morning and m.attempts == 0
    assert m.history[-1]["note"].startswith("held: Quiet hours")
    assert push.calls == []
    enqueued.clear()
    monkeypatch.setattr(timezone, "now", lambda: morning - timedelta(minutes=1))
    assert tick() == 0  # not before its time
    monkeypatch.setattr(timezone, "now", lambda: morning + timedelta(seconds=1))
    assert tick() == 1
    [(ids, token)] = enqueued
    assert channel_sending.send_batch(ids, token) == {"sent": 1}
    assert push.sent_ids == [held.pk]
