"""The batch path: the dispatcher leases due rows, a sender claims a batch once, sends it concurrently
within the number's slots, and writes every row back in one statement."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import actors, rendering, sending, sendpolicy
from campaigns.models import CampaignCounter, CampaignStatus, Message, MessageStatus
from campaigns.outcomes import Hold, Skip
from campaigns.sending import dispatch, send_batch
from controlpanel.services import Actor
from tests.fakegraph import ok_answer
from whatsapp import client as wa_client
from whatsapp import ratelimit
from whatsapp.models import AccountStatus

from .outbox import fill, make_campaign, patch_render


@pytest.fixture
def rendered(monkeypatch):
    return patch_render(monkeypatch)


ACTOR = Actor(label="test")


@pytest.fixture
def enqueued(monkeypatch):
    """What the dispatcher puts on the broker: (ids, lease token) per batch."""
    sent: list[tuple[list[int], str | None]] = []
    monkeypatch.setattr(actors.send_messages, "send", lambda ids, lease: sent.append((ids, lease)))
    return sent


@pytest.fixture
def fast(account):
    account.throughput_mps = 1000
    account.save()
    return account


def run_dispatch(capture, now=None) -> int:
    with capture(execute=True):
        return dispatch(now)


def statuses() -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Message.objects.values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_dispatcher_leases_due_rows_of_running_campaigns_in_batches(
    fast, enqueued, django_capture_on_commit_callbacks
):
    running = make_campaign(fast)
    rows = fill(running, 450)
    paused = make_campaign(fast, status=CampaignStatus.PAUSED)
    fill(paused, 30)
    later = fill(running, 5, send_after=timezone.now() + timedelta(hours=1))  # quiet hours, a retry
    assert run_dispatch(django_capture_on_commit_callbacks) == 450
    assert [len(ids) for ids, _ in enqueued] == [200, 200, 50]
    leased = {i for ids, _ in enqueued for i in ids}
    assert leased == {r.pk for r in rows}
    assert not leased & {r.pk for r in later}
    # The lease moved send_after ahead: a second tick leases nothing twice...
    lease = enqueued[0][1]
    assert Message.objects.filter(pk=rows[0].pk, send_after=sending.datetime.fromisoformat(lease)).exists()
    enqueued.clear()
    assert run_dispatch(django_capture_on_commit_callbacks) == 0
    # ...until the lease runs out (the broker message was lost): then they come back.
    assert run_dispatch(django_capture_on_commit_callbacks, timezone.now() + sending.LEASE * 2) == 450


def test_dispatcher_leases_what_the_number_can_send_soon_singles_first(
    account, subscriber, template, enqueued, django_capture_on_commit_callbacks
):
    from campaigns.services import send_whatsapp

    from .conftest import params

    campaign = make_campaign(account)  # account limit: 80/s
    fill(campaign, 400)
    single = send_whatsapp(project=account.project, subscriber=subscriber, actor=ACTOR, template=template,
                           components=params("a", "b"))  # fmt: skip
    assert run_dispatch(django_capture_on_commit_callbacks) == 80 * sending.LOOKAHEAD
    assert enqueued[0][0] == [single.pk]  # transactional single sends go first
    # In flight counts: the next tick leases nothing until those are sent.
    assert run_dispatch(django_capture_on_commit_callbacks) == 0


def test_throttled_campaign_gets_its_throttle_not_the_numbers_limit(
    fast, enqueued, django_capture_on_commit_callbacks
):
    campaign = make_campaign(fast, throttle_mps=10)
    fill(campaign, 100)
    assert run_dispatch(django_capture_on_commit_callbacks) == 10 * sending.LOOKAHEAD


def test_dispatcher_skips_stopped_numbers_and_leases_paused_ones(
    fast, enqueued, django_capture_on_commit_callbacks
):
    messages = fill(make_campaign(fast), 10)
    # A number paused after a 130429 is leased: its batch gets slots from the pause's end on.
    ratelimit.back_off(fast.phone_number_id, 1.0)
    assert run_dispatch(django_capture_on_commit_callbacks) == 10
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(send_after=None)
    ratelimit._limiter.cache_clear()
    fast.status = AccountStatus.SUSPENDED
    fast.save()
    assert run_dispatch(django_capture_on_commit_callbacks) == 0
    fast.status = AccountStatus.ACTIVE
    fast.save()
    assert run_dispatch(django_capture_on_commit_callbacks) == 10


def test_a_batch_is_claimed_once_and_sent_with_a_fixed_number_of_queries(
    graph, fast, rendered, django_assert_max_num_queries
):
    campaign = make_campaign(fast)
    rows = fill(campaign, 122)
    with CaptureQueriesContext(connection) as one:
        assert send_batch([rows[-1].pk]) == {"sent": 1}
    rows = rows[:120]
    ids = [r.pk for r in rows]
    # The same statements for 120 rows as for 1.
    with django_assert_max_num_queries(len(one)):
        assert send_batch(ids) == {"sent": 120}
    # claim + its counters, load (the rows with their subscribers, then their accounts, templates and
    # campaigns, one query each rather than one decrypt and JSON parse per row), "posting" marks (one
    # per wave of slots), write-back + counters and sends per minute, completion check.
    statements = [q["sql"] for q in one.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) <= 10
    assert send_batch(ids) == {}  # a second delivery of the same broker message sends nothing
    assert len(graph.calls) == 121
    assert {c[2]["to"] for c in graph.calls[1:]} == {r.subscriber.phone.lstrip("+") for r in rows}
    sent = Message.objects.get(pk=rows[0].pk)
    assert sent.status == MessageStatus.SENT and sent.wamid.startswith("wamid.FAKE")
    assert sent.attempts == 1 and sent.sent_at is not None and sent.body.startswith("Hello +49")
    assert sent.components[0]["parameters"][0]["text"] == sent.subscriber.phone
    assert [h["status"] for h in sent.history] == ["queued", "sent"]
    callbacks = {c[2]["biz_opaque_callback_data"] for c in graph.calls}
    assert callbacks == {f"m:{m.public_id}" for m in Message.objects.filter(status=MessageStatus.SENT)}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement forms are PostgreSQL's")
def test_on_postgresql_the_claim_and_the_write_back_carry_their_counters(graph, fast, rendered):
    from campaigns import counters

    campaign = make_campaign(fast)
    ids = [r.pk for r in fill(campaign, 51)][:50]  # one row left: the campaign does not complete here
    counters.recount([campaign.pk])  # fill writes behind the counters' back
    with CaptureQueriesContext(connection) as batch:
        assert send_batch(ids) == {"sent": 50}
    statements = [q["sql"] for q in batch.captured_queries if "SAVEPOINT" not in q["sql"]]
    # No upsert of its own: the claim's and the write-back's counter changes are CTEs of them.
    assert not [s for s in statements if s.startswith("INSERT")]
    claim = [s for s in statements if s.startswith("WITH claimed AS (UPDATE")]
    write_back = [s for s in statements if s.startswith("WITH written AS (UPDATE")]
    assert len(claim) == 1 and len(write_back) == 1
    assert "campaigns_campaigncounter" in claim[0] and "campaigns_campaignminute" in write_back[0]
    # claim, rows with subscribers, accounts, campaigns, the marks, the write-back, the completion check.
    assert len(statements) <= 7, statements
    assert counters.current([campaign.pk]) == counters.expected([campaign.pk])


def test_posts_go_out_concurrently(graph, fast, rendered):
    rows = fill(make_campaign(fast), 40)

    def slow(request_json):
        time.sleep(0.1)
        return ok_answer(request_json)

    graph.answer = slow
    started = time.monotonic()
    assert send_batch([r.pk for r in rows]) == {"sent": 40}
    # One after another that would be 4 s.
    assert time.monotonic() - started < 1.5


def test_rows_beyond_the_granted_slots_go_back_without_an_attempt(graph, account, rendered):
    rows = fill(make_campaign(account), 250)  # 80/s: about 160 slots within the horizon
    before = timezone.now()
    counts = send_batch([r.pk for r in rows])
    assert counts["sent"] + counts["requeued"] == 250 and 150 <= counts["sent"] <= 170
    waiting = Message.objects.filter(status=MessageStatus.QUEUED)
    assert waiting.count() == counts["requeued"]
    # They come back when half the horizon is free again, a batch's worth of slots.
    assert all(m.send_after > before + timedelta(seconds=0.5) and m.attempts == 0 for m in waiting)


def test_a_stale_broker_message_does_not_claim_rows_that_wait(graph, fast, rendered):
    rows = fill(make_campaign(fast), 3, send_after=timezone.now() + timedelta(hours=24))  # a 131049 retry
    old_lease = (timezone.now() - timedelta(minutes=5)).isoformat()
    assert send_batch([r.pk for r in rows], old_lease) == {}
    assert graph.calls == []


def test_policy_and_rendering_decide_before_anything_is_posted(graph, fast, monkeypatch):
    rows = fill(make_campaign(fast), 4)
    until = timezone.now() + timedelta(hours=8)
    monkeypatch.setattr(
        sendpolicy,
        "decide",
        lambda messages, now: {rows[0].pk: Hold(until, "quiet hours"), rows[1].pk: Skip("Capped.")},
    )

    def render(messages):
        from .outbox import render_all

        assert rows[0].pk not in {m.pk for m in messages}  # held rows are not rendered
        out = render_all(messages)
        out[rows[2].pk] = Skip("No first name and no default.")
        return out

    monkeypatch.setattr(rendering, "render_batch", render)
    assert send_batch([r.pk for r in rows]) == {"requeued": 1, "skipped": 2, "sent": 1}
    held = Message.objects.get(pk=rows[0].pk)
    assert held.status == MessageStatus.QUEUED and held.send_after == until
    assert "quiet hours" in held.history[-1]["note"]
    assert Message.objects.get(pk=rows[1].pk).reason == "Capped."
    assert Message.objects.get(pk=rows[2].pk).reason == "No first name and no default."
    assert len(graph.calls) == 1


def test_paused_campaign_rows_are_not_claimed(graph, fast, rendered):
    campaign = make_campaign(fast, status=CampaignStatus.PAUSED)
    rows = fill(campaign, 5)
    assert send_batch([r.pk for r in rows]) == {}
    assert graph.calls == [] and statuses() == {"queued": 5}


def test_a_status_webhook_faster_than_the_write_back_wins(graph, fast, rendered, monkeypatch):
    rows = fill(make_campaign(fast), 2)
    real = sending._post_all

    def then_webhook(batch, account, slots, start):
        real(batch, account, slots, start)
        Message.objects.filter(pk=rows[0].pk).update(status=MessageStatus.DELIVERED)

    monkeypatch.setattr(sending, "_post_all", then_webhook)
    send_batch([r.pk for r in rows])
    assert Message.objects.get(pk=rows[0].pk).status == MessageStatus.DELIVERED  # not set back to sent
    assert Message.objects.get(pk=rows[1].pk).status == MessageStatus.SENT


def test_an_exception_before_posting_puts_the_claimed_rows_back(graph, fast, monkeypatch):
    rows = fill(make_campaign(fast), 3)

    def broken(messages):
        raise RuntimeError("template snapshot unreadable")

    monkeypatch.setattr(rendering, "render_batch", broken)
    with pytest.raises(RuntimeError):
        send_batch([r.pk for r in rows])
    assert statuses() == {"queued": 3} and graph.calls == []


def test_campaign_completes_when_every_row_is_terminal(graph, fast, rendered):
    campaign = make_campaign(fast)
    rows = fill(campaign, 3)
    send_batch([r.pk for r in rows[:2]])
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    send_batch([rows[2].pk])
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED and campaign.finished_at is not None


def test_single_send_is_kicked_straight_to_a_sender(
    graph, account, subscriber, template, enqueued, django_capture_on_commit_callbacks
):
    from campaigns.services import send_whatsapp

    from .conftest import params

    with django_capture_on_commit_callbacks(execute=True):
        message = send_whatsapp(
            project=account.project, subscriber=subscriber, actor=ACTOR, template=template,
            components=params("a", "b"),
        )  # fmt: skip
    assert enqueued == [([message.pk], None)]
    assert send_batch(*enqueued[0]) == {"sent": 1}


def test_a_claimed_row_never_posted_is_queued_again_after_a_lease_posted_ones_become_unknown(fast, rendered):
    from campaigns import counters

    campaign = make_campaign(fast)
    rows = fill(campaign, 3)
    ids = [r.pk for r in rows]
    now = timezone.now()
    assert sending._claim(ids, now, None) == ids  # a worker claimed all three...
    assert sending._mark_posting(ids[:1]) == {ids[0]}  # ...started posting the first, then died
    assert sending.sweep_stuck() == 0  # within a lease nothing moves
    later = now + sending.LEASE + timedelta(seconds=1)
    assert sending.requeue_unposted(now=later) == 2
    back = Message.objects.get(pk=ids[1])
    assert back.status == MessageStatus.QUEUED and back.send_after is None
    assert back.history[-1]["note"] == sending.UNPOSTED_NOTE
    assert Message.objects.get(pk=ids[0]).status == MessageStatus.SENDING  # maybe posted: not resent
    # The worker, had it lived, finds the rows taken back and posts only its own.
    assert sending._mark_posting(ids) == {ids[0]}
    # The maybe-posted row goes the old way after STUCK_AFTER: unknown, settled by a status webhook.
    Message.objects.filter(pk=ids[0]).update(sending_at=now - sending.STUCK_AFTER * 2)
    assert sending.sweep_stuck() == 1
    assert Message.objects.get(pk=ids[0]).status == MessageStatus.UNKNOWN

    def counted():
        return {(c.status, c.n) for c in CampaignCounter.objects.filter(campaign=campaign) if c.n}

    # fill() counts nothing, so the counters hold the moves alone: 3 claimed out of queued, 2 back in,
    # 1 from sending to unknown.
    assert counted() == {(MessageStatus.QUEUED, -1), (MessageStatus.UNKNOWN, 1)}
    counters.recount([campaign.pk])
    assert counted() == {(MessageStatus.QUEUED, 2), (MessageStatus.UNKNOWN, 1)}


def test_rows_are_marked_posting_before_their_post(graph, fast, rendered, settings):
    settings.WHATSAPP_SEND_THREADS = 0  # posted on this thread: the fake reads the test's database
    rows = fill(make_campaign(fast), 5)
    seen = []

    def answer(request_json):
        # At the moment of the POST its row is committed as posting: send_after cleared.
        seen.append(Message.objects.filter(status=MessageStatus.SENDING, send_after__isnull=True).count())
        return ok_answer(request_json)

    graph.answer = answer
    assert send_batch([r.pk for r in rows]) == {"sent": 5}
    assert seen == [5] * 5  # one wave: all five marked before the first POST
    assert sending.requeue_unposted(now=timezone.now() + sending.LEASE * 2) == 0


@pytest.fixture
def local_meta(account, settings):
    """A real HTTP server on 127.0.0.1 as Meta, reached by the lean client (no fake adapter mounted)."""
    from tests.whatsapp.test_async_client import Server

    server = Server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.REDIS_URL = ""
    ratelimit._limiter.cache_clear()
    wa_client._sessions.clear()  # a session cached by an earlier test may carry that test's fake adapter
    account.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    account.save()
    yield server
    ratelimit._limiter.cache_clear()
    server.shutdown()
    server.server_close()


def test_a_batch_goes_out_on_the_lean_client_and_a_130429_pauses_the_number(
    local_meta, account, rendered, monkeypatch
):
    from tests.whatsapp.test_async_client import OK, plain

    rows = fill(make_campaign(account), 6)
    ids = [r.pk for r in rows]
    local_meta.answer = lambda body: plain(200, {**OK, "messages": [{"id": f"wamid.L{body['to']}"}]})
    assert send_batch(ids[:3]) == {"sent": 3}
    sent = Message.objects.get(pk=ids[0])
    assert sent.status == MessageStatus.SENT and sent.wamid == f"wamid.L{rows[0].subscriber.phone[1:]}"
    assert (
        local_meta.requests[0][0]
        == f"POST /{account.graph_version}/{account.phone_number_id}/messages HTTP/1.1"
    )
    # 130429 on every call, slots 0.5 s apart (a limit of 3/s paced to 2/s), a pause of 0.75 s: the
    # call whose slot comes inside the pause is not posted, the one after it is (and pauses again).
    monkeypatch.setattr(sending, "NUMBER_BACKOFF", 0.75)
    account.throughput_mps = 3
    account.save()
    ratelimit._limiter.cache_clear()  # the slots taken at the old limit mean other times at the new one
    throttled = {"error": {"code": 130429, "message": "(#130429) Rate limit hit", "fbtrace_id": "T"}}
    local_meta.answer = lambda body: plain(429, throttled)
    assert send_batch(ids[3:]) == {"requeued": 3}
    assert len(local_meta.requests) == 3 + 2
    first, second, third = Message.objects.filter(pk__in=ids[3:]).order_by("pk")
    assert all(m.status == MessageStatus.QUEUED and m.attempts == 0 for m in [first, second, third])
    assert first.error_code == third.error_code == 130429  # refused: the number's, not the row's
    assert second.error_code is None  # its slot came inside the pause: never posted
    assert ratelimit.backed_off(account.phone_number_id) > 0
    assert all(m.send_after > timezone.now() for m in [second, third])  # queued behind the pause
