"""The standalone simulator's lean send route (simulator/fastpath.py) answers as the Django view does."""

from __future__ import annotations

import io
import json
import time

import pytest
from asgiref.sync import async_to_sync

from tests.factories import ProjectFactory
from whatsapp.models import WhatsAppAccount
from whatsapp.simulator import fastpath, services, store, testing
from whatsapp.simulator.errors import ApiError

TOKEN = "EAAG-fast-token"
WABA = "702290129340398"
NUMBER_ID = "706540352242922"


@pytest.fixture(autouse=True)
def simulator(settings, tmp_path):
    testing.quiet_settings(settings, tmp_path / "simulator", urls="whatsapp.simulator.standalone_urls")
    settings.SIMULATOR_CALLBACK_BASE = "http://panel.example"
    yield
    store.close()


@pytest.fixture
def account(db):
    account = WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id=WABA,
        phone_number_id=NUMBER_ID,
        display_phone_number="15550001234",
        access_token=TOKEN,
        app_secret="secret",
    )
    services.seed_templates(waba_id=WABA, definitions=[services.HELLO_WORLD])
    return account


class DjangoApp:
    """Stands for Django's handler: records that a request fell through to it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._middleware_chain = "the handler's"

    def __call__(self, environ, start_response):
        self.calls.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"django"]


class AsyncDjangoApp(DjangoApp):
    """The same for the ASGI app (``runsimulator``'s default)."""

    async def __call__(self, scope, receive, send):
        self.calls.append(scope["path"])
        start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        await send(start)
        await send({"type": "http.response.body", "body": b"django"})


def wsgi_call(app, raw: bytes, *, token, content_type, query, path, method):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": io.BytesIO(raw),
    }
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    answer: dict = {}

    def start_response(status, headers):
        answer["status"], answer["headers"] = status, dict(headers)

    out = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], out


def asgi_call(app, raw: bytes, *, token, content_type, query, path, method):
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(raw)).encode())]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(),
             "headers": headers}  # fmt: skip
    parts = [{"type": "http.request", "body": raw[:10], "more_body": True},
             {"type": "http.request", "body": raw[10:], "more_body": False}]  # fmt: skip
    sent: list[dict] = []

    async def receive():
        return parts.pop(0)

    async def send(message):
        sent.append(message)

    # From this thread, as Django's test client does: the account and name lookups the app hands to
    # Django's synchronous thread run here, on the test's connection and transaction.
    async_to_sync(app)(scope, receive, send)
    start, body = sent
    status = fastpath.REASONS.get(start["status"], str(start["status"]))
    return status, {k.decode(): v.decode() for k, v in start["headers"]}, body["body"]


@pytest.fixture(params=["asgi", "wsgi"])
def server(request):
    """(wrap, make a Django stand-in) of the ASGI app (the default) and of the WSGI one."""
    if request.param == "asgi":
        return fastpath.wrap_asgi, AsyncDjangoApp, asgi_call
    return fastpath.wrap, DjangoApp, wsgi_call


@pytest.fixture
def make(server):
    wrap, django, _ = server
    return lambda django_app=None: wrap(django_app or django())


def call(app, body: bytes | dict, *, token: str | None = TOKEN, content_type="application/json", query="",
         path=f"/simulator/graph/v23.0/{NUMBER_ID}/messages", method="POST", via=wsgi_call):  # fmt: skip
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return via(app, raw, token=token, content_type=content_type, query=query, path=path, method=method)


@pytest.fixture
def post(server):
    """``call`` through the app under test."""
    return lambda app, body, **kwargs: call(app, body, via=server[2], **kwargs)


def hello(to: str = "4915112345678") -> dict:
    return {"messaging_product": "whatsapp", "to": to, "type": "template", "biz_opaque_callback_data": "cb-1",
            "template": {"name": "hello_world", "language": {"code": "en_US"}}}  # fmt: skip


def test_a_send_is_accepted_stored_with_its_webhooks_without_django(account, server, make, post):
    django_app = server[1]()
    app = make(django_app)
    status, headers, body = post(app, hello())
    assert status == "200 OK" and django_app.calls == []
    assert headers["facebook-api-version"] == "v23.0" and headers["x-fb-trace-id"].startswith("A")
    answer = json.loads(body)
    wamid = answer["messages"][0]["id"]
    assert answer["contacts"] == [{"input": "4915112345678", "wa_id": "4915112345678"}]
    assert store.ledger(NUMBER_ID) == (1, {"4915112345678": 1})
    assert store.get_message(wamid)["payload"]["biz_opaque_callback_data"] == "cb-1"
    assert store.get_handset("4915112345678")["user_id"]  # the new recipient's handset, same transaction
    kinds = [row["kind"] for row in store.claim_callbacks(time.time() + 60, 10)]
    assert kinds == ["sent", "delivered", "read"]
    assert app._middleware_chain == "the handler's"  # attributes are the Django handler's


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [("wrong", "401 Unauthorized", 190), (TOKEN, "400 Bad Request", 100)],
)
def test_errors_have_metas_shape(account, token, status, code, make, post):
    app = make()
    body = hello() if token != TOKEN else b"{not json"
    got, _, out = post(app, body, token=token)
    assert got == status and json.loads(out)["error"]["code"] == code
    assert store.ledger(NUMBER_ID) == (0, {})


def test_the_throughput_limit_refuses_in_the_same_transaction(account, make, post):
    account.throughput_mps = 2
    account.save()
    app = make()
    statuses = [post(app, hello(f"49151123456{i:02d}"))[0] for i in range(3)]
    assert statuses == ["200 OK", "200 OK", "429 Too Many Requests"]
    assert store.ledger(NUMBER_ID)[0] == 2 and store.refusals(NUMBER_ID) == {130429: 1}
    assert store.get_handset("4915112345602") is None  # refused: nothing of it stored


def test_injected_faults_count_on_the_lean_path(account, settings, make, post):
    settings.SIMULATOR_SERVER_ERROR_RATE = 1.0
    status, _, out = post(make(), hello())
    assert status == "500 Internal Server Error" and json.loads(out)["error"]["code"] == 2
    assert store.refusals(NUMBER_ID) == {2: 1} and store.ledger(NUMBER_ID)[0] == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"content_type": "application/x-www-form-urlencoded"},
        {"token": None, "query": f"access_token={TOKEN}"},
        {"method": "GET"},
        {"path": f"/simulator/graph/v23.0/{WABA}/message_templates"},
    ],
)
def test_everything_else_goes_to_django(account, kwargs, server, make, post):
    django_app = server[1]()
    _, _, out = post(make(django_app), hello(), **kwargs)
    assert out == b"django" and len(django_app.calls) == 1
    assert store.ledger(NUMBER_ID) == (0, {})


def test_without_a_configured_callback_base_django_builds_it(account, settings, server, make, post):
    settings.SIMULATOR_CALLBACK_BASE = ""
    settings.PUBLIC_BASE_URL = ""
    django_app = server[1]()
    assert post(make(django_app), hello())[2] == b"django"


def test_config_follows_the_environment_of_the_process(monkeypatch, tmp_path, settings):
    from whatsapp.simulator import config

    del settings.SIMULATOR_STATE_DIR  # the environment decides, as in a benchmark process
    monkeypatch.setenv("SIMULATOR_STATE_DIR", str(tmp_path / "one"))
    assert store.path() == tmp_path / "one" / "state.sqlite3"
    monkeypatch.setenv("SIMULATOR_STATE_DIR", str(tmp_path / "two"))  # the next run of a benchmark
    assert config.raw("SIMULATOR_STATE_DIR") == str(tmp_path / "two")
    assert store.path() == tmp_path / "two" / "state.sqlite3"


def test_the_asgi_route_names_a_new_recipient_after_the_subscriber(account):
    from tests.factories import SubscriberFactory

    SubscriberFactory(project=account.project, phone="+4915112345678", name="Greta Lange")
    status, _, _ = call(fastpath.wrap_asgi(AsyncDjangoApp()), hello(), via=asgi_call)
    assert status == "200 OK"
    assert store.get_handset("4915112345678")["name"] == "Greta Lange"


def test_the_asgi_app_answers_lifespan_and_a_client_that_went_away(account):
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    def run(scope, messages):
        async def receive():
            return messages.pop(0)

        async_to_sync(fastpath.wrap_asgi(AsyncDjangoApp()))(scope, receive, send)

    run({"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    sent.clear()
    scope = {"type": "http", "method": "POST", "path": f"/simulator/graph/v23.0/{NUMBER_ID}/messages",
             "query_string": b"", "headers": [(b"authorization", f"Bearer {TOKEN}".encode())]}  # fmt: skip
    run(scope, [{"type": "http.disconnect"}])
    assert sent == [] and store.ledger(NUMBER_ID) == (0, {})


def test_sends_of_one_turn_of_the_event_loop_share_a_commit_with_their_own_times(account, monkeypatch):
    import asyncio

    from asgiref.sync import sync_to_async

    from whatsapp.simulator import messages

    account.throughput_mps = 3
    account.save()
    commits: list[list[float]] = []
    original = store.accept_sends

    def counting(sends):
        commits.append([send.at for send in sends])
        return original(sends)

    monkeypatch.setattr(store, "accept_sends", counting)

    async def turn():
        prepared = []
        for i in range(5):  # prepared one after another on the loop, as the route does
            payload = hello(f"49151123457{i:02d}")
            prepared.append(await sync_to_async(messages.prepare, thread_sensitive=True)(
                account=account, payload=payload, callback_base="http://panel.example",
                new_recipient_name="", arrival=True))  # fmt: skip
        commit = fastpath._turn_commit()
        return await asyncio.gather(*(commit.accept(p.send) for p in prepared)), prepared

    results, prepared = async_to_sync(turn)()
    assert results == [True, True, True, False, False]  # limit 3 a second
    assert len(commits) == 1 and commits[0] == sorted(commits[0])  # one transaction, arrival order
    assert store.ledger(NUMBER_ID)[0] == 3 and store.refusals(NUMBER_ID) == {130429: 2}
    stamped = sorted(r[0] for r in store.connection().execute("SELECT created_at FROM messages"))
    assert stamped == commits[0][:3]  # the ledger keeps each send's arrival, not the commit's time
    with pytest.raises(ApiError) as refused:
        prepared[3].result(False)
    assert refused.value.code == 130429
