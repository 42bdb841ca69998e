"""Group commit under ``runsimulator``: sends arriving together share one state transaction, and the
ledger, the throughput limit and the answers stay exactly what one transaction per send gives."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.factories import ProjectFactory, SubscriberFactory
from whatsapp.models import WhatsAppAccount
from whatsapp.simulator import dbthreads, fastpath, graph_views, handsets, services, store, testing
from whatsapp.simulator.store import Send

from .test_simulator_fastpath import NUMBER_ID, TOKEN, WABA, DjangoApp, call, hello


@pytest.fixture(autouse=True)
def simulator(settings, tmp_path):
    testing.quiet_settings(settings, tmp_path / "simulator", urls="whatsapp.simulator.standalone_urls")
    settings.SIMULATOR_CALLBACK_BASE = "http://panel.example"
    settings.SIMULATOR_GROUP_COMMIT = True
    settings.SIMULATOR_ACCOUNT_CACHE_SECONDS = 60
    graph_views._by_number.clear()
    yield
    graph_views._by_number.clear()
    store.close()


@pytest.fixture
def app(db, monkeypatch):
    """The lean route with the account loaded once on this thread: the request threads below read
    nothing from the test's database (its rows are not committed)."""
    WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id=WABA,
        phone_number_id=NUMBER_ID,
        display_phone_number="15550001234",
        access_token=TOKEN,
        app_secret="secret",
        throughput_mps=1000,
    )
    services.seed_templates(waba_id=WABA, definitions=[services.HELLO_WORLD])
    monkeypatch.setattr(dbthreads, "profile_name", lambda phone, project_id: f"User {phone[-4:]}")
    app = fastpath.wrap(DjangoApp())
    graph_views.account_for_token(NUMBER_ID, TOKEN, method="post")
    return app


def message(wamid: str, phone: str, at: float) -> dict:
    return {"wamid": wamid, "phone_number_id": "n", "phone": phone, "direction": "business", "type": "text",
            "payload": {}, "created_at": at, "sent_at": at + 0.3}  # fmt: skip


def send_of(i: int, *, limit: int, at: float) -> Send:
    phone = f"49151000{i:04d}"
    handset = {"phone": phone, "name": f"User {i}", "user_id": f"DE.{i}"}
    callback = {"due_at": at + 0.3, "account": "a", "url": "http://x/", "body": b"{}", "kind": "sent",
                "wamid": f"w{i}"}  # fmt: skip
    return Send("n", limit, at, handset, message(f"w{i}", phone, at), [callback], clock=lambda: at)


def test_one_transaction_takes_exactly_the_free_slots_in_order():
    assert store.accept_sends([send_of(i, limit=5, at=99.5) for i in range(2)]) == [True, True]
    results = store.accept_sends([send_of(i, limit=5, at=100.0) for i in range(10, 16)])
    assert results == [True, True, True, False, False, False]
    accepted, recipients = store.ledger("n")
    assert accepted == 5 and set(recipients) == {"491510000000", "491510000001", "491510000010",
                                                 "491510000011", "491510000012"}  # fmt: skip
    assert store.refusals("n") == {130429: 3}
    assert store.get_handset("491510000013") is None  # refused: nothing of it stored but the refusal
    assert store.get_handset("491510000012")["name"] == "User 12"
    assert [m["sent_at"] for m in store.chat("491510000012", "n")] == [100.3]
    assert len(store.claim_callbacks(1000.0, 100)) == 5
    # the window moves on: once the first two slots are more than a second old, two more fit
    later = [send_of(i, limit=5, at=100.6) for i in range(20, 23)]
    assert store.accept_sends(later) == [True, True, False]


def test_sends_with_their_own_times_each_find_the_count_they_would_find_alone():
    def timed(i: int, at: float) -> Send:
        send = send_of(i, limit=2, at=at)
        send.clock, send.at = None, at  # the arrival on the event loop is the slot
        return send

    assert store.accept_sends([timed(0, 100.0), timed(1, 100.5)]) == [True, True]
    # 100.9: the second before holds 100.0 and 100.5; 101.2: 100.0 has left it; 101.4: 100.5 is still
    # in it with 101.2; 101.6: 100.5 has left too.
    results = store.accept_sends([timed(2, 100.9), timed(3, 101.2), timed(4, 101.4), timed(5, 101.6)])
    assert results == [False, True, False, True]
    times = sorted(r[0] for r in store.connection().execute("SELECT created_at FROM messages"))
    assert times == [100.0, 100.5, 101.2, 101.6]  # each stamped with its own time, not the commit's
    assert all(sum(1 for t in times if at - 1.0 < t <= at) <= 2 for at in times)


def test_a_failed_transaction_stores_none_of_its_sends(monkeypatch):
    def broken(rows, conn=None):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "add_callbacks", broken)
    with pytest.raises(RuntimeError):
        store.accept_sends([send_of(i, limit=5, at=100.0) for i in range(3)])
    assert store.ledger("n") == (0, {}) and store.get_handset("491510000000") is None


def test_concurrent_sends_share_transactions_and_are_answered_after_their_commit(app, monkeypatch):
    batches: list[int] = []
    committed: set[str] = set()
    original = store.accept_sends

    def counting(sends):
        results = original(sends)
        committed.update(s.message["wamid"] for s, ok in zip(sends, results, strict=True) if ok)
        batches.append(len(sends))
        time.sleep(0.002)  # a commit that takes a moment, as under load: the next sends queue meanwhile
        return results

    monkeypatch.setattr(store, "accept_sends", counting)
    phones = [f"4915112{i:06d}" for i in range(200)]

    def post(phone: str) -> tuple[str, str]:
        status, _, body = call(app, hello(phone))
        return status, json.loads(body)["messages"][0]["id"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, phones))
    assert {status for status, _ in answers} == {"200 OK"}
    assert {wamid for _, wamid in answers} <= committed  # answered only once its transaction committed
    assert store.ledger(NUMBER_ID) == (200, dict.fromkeys(phones, 1))  # exact counts, no duplicate
    assert sum(batches) == 200 and len(batches) < 100  # sends shared transactions


def test_the_limit_holds_for_concurrent_sends(app):
    WhatsAppAccount.objects.filter(phone_number_id=NUMBER_ID).update(throughput_mps=7)
    graph_views._by_number.clear()
    graph_views.account_for_token(NUMBER_ID, TOKEN, method="post")
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda i: call(app, hello(f"4915113{i:06d}"))[0], range(24)))
    accepted = statuses.count("200 OK")
    assert accepted >= 7 and statuses.count("429 Too Many Requests") == 24 - accepted
    assert store.ledger(NUMBER_ID)[0] == accepted and store.refusals(NUMBER_ID) == {130429: 24 - accepted}
    times = sorted(r[0] for r in store.connection().execute("SELECT created_at FROM messages"))
    assert all(sum(1 for t in times if at - 1.0 < t <= at) <= 7 for at in times)  # no second above 7


def test_sends_are_written_by_the_committer_thread(app, monkeypatch):
    writers: list[str] = []
    original = store.accept_sends

    def recording(sends):
        writers.append(threading.current_thread().name)
        return original(sends)

    monkeypatch.setattr(store, "accept_sends", recording)
    assert call(app, hello())[0] == "200 OK"
    assert writers == ["simulator-commit"]


def test_a_new_recipients_name_comes_from_the_sending_project(db):
    project = ProjectFactory()
    SubscriberFactory(project=project, phone="+4915110000001", name="Ana Lima")
    SubscriberFactory(project=ProjectFactory(), phone="+4915110000002", name="Somebody Else")
    found = handsets.profile_names(["4915110000001", "4915110000002"], project_id=project.pk)
    assert found == {"4915110000001": "Ana Lima", "4915110000002": "User 0002"}


def test_names_asked_meanwhile_share_one_query(settings, monkeypatch):
    settings.SIMULATOR_DB_THREADS = 2
    queries: list[list[str]] = []
    gate = threading.Event()

    def names(phones, *, project_id):
        gate.wait(5)
        queries.append(list(phones))
        return {p: f"name {p} of {project_id}" for p in phones}

    monkeypatch.setattr(handsets, "profile_names", names)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(dbthreads.profile_name, f"4915{i}", project_id=7) for i in range(8)]
        time.sleep(0.2)  # the first query waits at the gate while the others queue
        gate.set()
        answers = [f.result(5) for f in futures]
    assert answers == [f"name 4915{i} of 7" for i in range(8)]
    assert sorted(p for q in queries for p in q) == sorted(f"4915{i}" for i in range(8))
    assert len(queries) <= 2


def test_a_recipients_region_is_what_parsing_the_number_gives():
    import random
    from unittest import mock

    import phonenumbers
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    def parsed(phone: str) -> str:
        try:
            return phonenumbers.region_code_for_number(phonenumbers.parse("+" + phone)) or "ZZ"
        except phonenumbers.NumberParseException:
            return "ZZ"

    draw = random.Random(9)
    codes = [str(code) for code in COUNTRY_CODE_TO_REGION_CODE]
    phones = ["4915112345678", "15550001234", "79161234567", "447700900123", "0049151", "99912345678"]
    for _ in range(20_000):  # every country code, lengths from far too short to far too long
        code = draw.choice(codes) if draw.random() < 0.9 else str(draw.randint(0, 999))
        phones.append(code + "".join(draw.choice("0123456789") for _ in range(draw.randint(1, 16))))
    assert [handsets.region_of(p) for p in phones] == [parsed(p) for p in phones]
    # One region for +49, +33, +886 (a code of one, two, three digits): answered without a parse.
    with mock.patch.object(phonenumbers, "parse", side_effect=AssertionError("parsed")):
        assert [handsets.region_of(p) for p in ("4915112345678", "33612345678", "886912345678")] == [
            "DE",
            "FR",
            "TW",
        ]
