"""The simulator's ledger (sent.json and its page), fault injection, and the load-test shortcuts of
the send path (cached accounts, project-scoped handset names, status webhooks off)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from controlpanel.models import Role
from tests.factories import MembershipFactory, ProjectFactory, SubscriberFactory
from tests.whatsapp.test_simulator_api import CUSTOMER, NUMBER_ID, TOKEN, WABA, send, template, text
from whatsapp.models import WhatsAppAccount
from whatsapp.simulator import graph_views, services, store, testing

OTHER = "4917099887766"


@pytest.fixture(autouse=True)
def simulator(settings, tmp_path):
    testing.quiet_settings(settings, tmp_path / "simulator")
    settings.SIMULATOR_THROTTLE_ERROR_RATE = 0
    settings.SIMULATOR_SERVER_ERROR_RATE = 0
    settings.SIMULATOR_LATENCY_MS = 0
    settings.SIMULATOR_ACCOUNT_CACHE_SECONDS = 0
    settings.PUBLIC_BASE_URL = ""
    graph_views._by_number.clear()
    yield
    graph_views._by_number.clear()
    store.close()


@pytest.fixture
def sim_account(db):
    account = WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id=WABA,
        phone_number_id=NUMBER_ID,
        display_phone_number="15550001234",
        access_token=TOKEN,
        app_secret="secret",
        base_url="http://testserver/simulator/graph",
    )
    services.seed_templates(waba_id=WABA)
    return account


@pytest.fixture
def second_account(db):
    return WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id="2002",
        phone_number_id="2003",
        display_phone_number="15550009999",
        access_token="other-token",
        app_secret="secret",
        base_url="http://testserver/simulator/graph",
    )


def ledger(client, number: str = NUMBER_ID, token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get("/simulator/sent.json", {"phone_number_id": number}, headers=headers)


def to(phone: str, payload: dict) -> dict:
    return {**payload, "to": phone}


# --- sent.json ------------------------------------------------------------------------------------
def test_sent_json_counts_every_accepted_message_by_recipient_and_nothing_else(
    client, sim_account, second_account
):
    assert send(client, template()).status_code == 200
    assert send(client, to(OTHER, text())).status_code == 200  # accepted, fails later (window): counted
    assert send(client, template()).status_code == 200  # the same recipient twice: a duplicate
    assert send(client, template(name="no_such_template")).status_code == 400  # refused: not counted
    services.send_inbound(
        account=sim_account, phone=CUSTOMER, kind="text", text="Hi", callback_base="http://x"
    )
    # Another number's sends belong to its own ledger.
    client.post(
        "/simulator/graph/v23.0/2003/messages",
        {"messaging_product": "whatsapp", "to": CUSTOMER, **text()},
        content_type="application/json",
        headers={"Authorization": "Bearer other-token"},
    )

    answer = ledger(client)

    assert answer.status_code == 200
    assert answer.json() == {"accepted": 3, "recipients": {CUSTOMER: 2, OTHER: 1}}
    assert ledger(client, "2003", "other-token").json() == {"accepted": 1, "recipients": {CUSTOMER: 1}}


def test_sent_json_of_a_number_without_sends_is_empty(client, sim_account):
    assert ledger(client).json() == {"accepted": 0, "recipients": {}}


def test_sent_json_wants_the_numbers_token_or_a_member(client, sim_account, second_account):
    send(client, template())
    for answer in (
        ledger(client, token=None),
        ledger(client, token="wrong"),
        ledger(client, token="other-token"),  # a real token, of another number
        ledger(client, number="999", token=TOKEN),  # unknown number: answered like a wrong token
    ):
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == 190
    missing = client.get("/simulator/sent.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (
        missing.status_code == 400 and "phone_number_id" in missing.json()["error"]["error_data"]["details"]
    )

    client.force_login(MembershipFactory(project=second_account.project, role=Role.OWNER).user)
    assert ledger(client, token=None).status_code == 401  # logged in, but not in this number's project
    client.force_login(MembershipFactory(project=sim_account.project, role=Role.VIEWER).user)
    assert ledger(client, token=None).json()["accepted"] == 1


def test_the_standalone_simulator_serves_the_ledger(client, settings, sim_account):
    settings.ROOT_URLCONF = "whatsapp.simulator.standalone_urls"
    send(client, template())
    assert ledger(client).json() == {"accepted": 1, "recipients": {CUSTOMER: 1}}
    assert client.get("/simulator/sent/").status_code == 400  # the page is the panel's, not served here


def test_the_ledger_page_shows_totals_duplicates_and_refusals(client, sim_account):
    sim_account.throughput_mps = 2
    sim_account.save()
    send(client, template())
    send(client, template())
    assert send(client, to(OTHER, template())).status_code == 429  # third in the same second: 130429
    client.force_login(MembershipFactory(project=sim_account.project, role=Role.MARKETER).user)

    page = client.get("/simulator/sent/")

    assert page.status_code == 200
    html = page.content.decode()
    assert '<dd class="col-7" data-testid="ledger-accepted">2</dd>' in html
    assert '<dd class="col-7" data-testid="ledger-duplicates">1</dd>' in html
    assert f'+{CUSTOMER}</a></td><td class="text-end">2</td>' in html
    assert "130429: 1" in html
    assert store.refusals(NUMBER_ID) == {130429: 1}


def test_the_ledger_page_needs_a_login(client, sim_account):
    assert client.get("/simulator/sent/").status_code == 302


# --- fault injection --------------------------------------------------------------------------
def test_injected_server_errors_answer_500_and_accept_nothing(client, settings, sim_account):
    settings.SIMULATOR_SERVER_ERROR_RATE = 1
    answer = send(client, template())
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == 2
    assert ledger(client).json() == {"accepted": 0, "recipients": {}}
    assert store.refusals(NUMBER_ID) == {2: 1}
    assert store.claim_callbacks(10**10, 10) == []  # no status webhook for a refused send


def test_injected_throughput_errors_answer_130429_and_accept_nothing(client, settings, sim_account):
    settings.SIMULATOR_THROTTLE_ERROR_RATE = 1
    answer = send(client, template())
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == 130429
    assert ledger(client).json()["accepted"] == 0
    assert store.refusals(NUMBER_ID) == {130429: 1}


def test_fault_rates_split_the_draw(client, settings, sim_account, monkeypatch):
    settings.SIMULATOR_SERVER_ERROR_RATE = 0.01
    settings.SIMULATOR_THROTTLE_ERROR_RATE = 0.05
    # below 1 %: 500; below 6 %: 130429; else accepted (later draws: the delivery outcome)
    draws = itertools.chain([0.005, 0.03, 0.5], itertools.repeat(0.99))
    monkeypatch.setattr(graph_views.random, "random", lambda: next(draws))
    assert [send(client, template()).status_code for _ in range(3)] == [500, 429, 200]


def test_latency_is_added_to_every_graph_call(client, settings, sim_account, monkeypatch):
    settings.SIMULATOR_LATENCY_MS = 200
    slept: list[float] = []
    monkeypatch.setattr(graph_views.time, "sleep", slept.append)
    send(client, template())
    client.get(
        f"/simulator/graph/v23.0/{WABA}/message_templates", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert slept == [0.2, 0.2]


def test_no_latency_no_sleep(client, sim_account, monkeypatch):
    monkeypatch.setattr(graph_views.time, "sleep", lambda s: pytest.fail("slept"))
    assert send(client, template()).status_code == 200


# --- the send path under load ----------------------------------------------------------------
def _account_queries(queries) -> int:
    return sum('FROM "whatsapp_whatsappaccount"' in q["sql"] for q in queries)


def test_a_cached_account_is_not_loaded_and_decrypted_per_request(client, settings, sim_account):
    settings.SIMULATOR_ACCOUNT_CACHE_SECONDS = 5
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert send(client, template()).status_code == 200
    assert _account_queries(queries) == 1
    # The cached account still checks the token on every request.
    assert send(client, template(), token="wrong").status_code == 401


def test_without_the_cache_a_changed_token_counts_at_once(client, sim_account):
    assert send(client, template()).status_code == 200
    sim_account.access_token = "rotated"
    sim_account.save()
    assert send(client, template()).status_code == 401
    assert send(client, template(), token="rotated").status_code == 200


def test_a_handset_is_named_after_the_sending_projects_subscriber(client, sim_account):
    SubscriberFactory(project=ProjectFactory(), phone=f"+{CUSTOMER}", name="Somebody Else")
    SubscriberFactory(project=sim_account.project, phone=f"+{CUSTOMER}", name="Ana Lima")
    with CaptureQueriesContext(connection) as queries:
        send(client, template())
    lookups = [q["sql"] for q in queries if "subscribers_subscriber" in q["sql"]]
    assert len(lookups) == 1 and "project_id" in lookups[0]  # the (project, phone) index, not trigram
    assert store.get_handset(CUSTOMER)["name"] == "Ana Lima"


def test_status_webhooks_off_still_accepts_and_records(client, settings, sim_account):
    settings.SIMULATOR_STATUS_WEBHOOKS = "false"
    wamid = send(client, template()).json()["messages"][0]["id"]
    assert store.claim_callbacks(10**10, 10) == []
    assert store.get_message(wamid)["delivered_at"] is not None  # the chat still shows the ticks
    assert ledger(client).json()["accepted"] == 1


# --- runsimulator -------------------------------------------------------------------------------
@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_runsimulator_serves_its_own_app_under_granian(db, monkeypatch, interface):
    import granian

    started: dict = {}

    class FakeGranian:
        def __init__(self, target, **options):
            started.update(options, target=target)

        def serve(self):
            started["served"] = True

    monkeypatch.setattr(granian, "Granian", FakeGranian)
    # The command writes these for granian's workers; monkeypatch puts them back afterwards.
    names = (
        "CALLBACK_BASE",
        "CALLBACK_THREADS",
        "DELIVER_CALLBACKS",
        "ACCOUNT_CACHE_SECONDS",
        "STATUS_WEBHOOKS",
        "DB_THREADS",
        "GROUP_COMMIT",
    )
    for name in names:
        monkeypatch.setenv(f"SIMULATOR_{name}", "")  # recorded: restored (or removed) at teardown
    for name in ("STATUS_WEBHOOKS", "ACCOUNT_CACHE_SECONDS", "DB_THREADS", "GROUP_COMMIT"):
        monkeypatch.delenv(f"SIMULATOR_{name}")  # unset, so that the command's defaults show
    options = ["--interface", "wsgi", "--threads", "100"] if interface == "wsgi" else []
    call_command("runsimulator", "--workers", "2", *options, "--no-webhooks")
    assert started["target"] == f"whatsapp.simulator.{interface}:application"
    assert started["workers"] == 2 and started["served"]
    assert str(started["interface"]).lower().endswith(interface)
    # Threads per request only for WSGI; the ASGI app serves every call on its event loop.
    assert started.get("blocking_threads") == (100 if interface == "wsgi" else None)
    assert os.environ["SIMULATOR_STATUS_WEBHOOKS"] == "false"
    assert os.environ["SIMULATOR_ACCOUNT_CACHE_SECONDS"] == "5"
    assert os.environ["SIMULATOR_DB_THREADS"] == "4"
    assert "SIMULATOR_GROUP_COMMIT" not in os.environ  # off unless asked for: it drew 130429s


@pytest.mark.parametrize(("module", "chain"), [("asgi", "_get_response_async"), ("wsgi", "_get_response")])
def test_the_standalone_apps_run_no_middleware(module, chain):
    # A process of its own: the module changes settings the way granian's workers need them.
    from tests.controlpanel.test_embedded_run import ROOT

    code = (
        f"from whatsapp.simulator import {module} as app; from django.conf import settings; "
        "print(settings.ROOT_URLCONF, app.application._middleware_chain.__qualname__, settings.MIDDLEWARE)"
    )
    env = {**os.environ, "SIMULATOR_DELIVER_CALLBACKS": "false"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    # The handler calls the view directly: no middleware wraps it.
    assert out.stdout.split() == ["whatsapp.simulator.standalone_urls", f"BaseHandler.{chain}", "[]"]


def test_database_probes_run_on_a_few_threads_of_their_own(settings):
    from whatsapp.simulator import dbthreads

    settings.SIMULATOR_DB_THREADS = 0
    assert dbthreads.run(lambda: threading.current_thread().name) == threading.current_thread().name
    settings.SIMULATOR_DB_THREADS = 2
    names = {dbthreads.run(lambda: threading.current_thread().name) for _ in range(20)}
    assert names and all(n.startswith("simulator-db") for n in names) and len(names) <= 2


def test_a_database_thread_reconnects_after_the_server_went_away(settings, monkeypatch):
    # The chaos run restarts PostgreSQL: the simulator's database threads kept a dead connection
    # and answered HTTP 500 to every send until they were restarted.
    from django.db import OperationalError

    from whatsapp.simulator import dbthreads

    settings.SIMULATOR_DB_THREADS = 1
    calls: list[bool] = []
    closed: list[bool] = []

    class Connection:
        def close(self) -> None:
            closed.append(True)

    def probe() -> str:
        calls.append(True)
        if len(calls) == 1:
            raise OperationalError("the connection is closed")
        return "fresh"

    monkeypatch.setattr(dbthreads, "connection", Connection())
    assert dbthreads.run(probe) == "fresh"
    assert len(calls) == 2 and closed == [True]
