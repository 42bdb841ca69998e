"""The batched sender's lean HTTP client (whatsapp/async_client.py) against a real socket on 127.0.0.1:
the same results and error classes as the requests path, keep-alive, chunked answers, timeouts."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from whatsapp import async_client
from whatsapp.client import GraphClient, SendResult
from whatsapp.errors import AccountError, AmbiguousSendError, PermanentError, TransientError
from whatsapp.models import WhatsAppAccount

OK = {"messaging_product": "whatsapp", "contacts": [{"input": "49151", "wa_id": "49151"}],
      "messages": [{"id": "wamid.OK1", "message_status": "accepted"}]}  # fmt: skip


def plain(status: int, body: dict, extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{extra}\r\n".encode()
        + data
    )


def chunked(body: dict) -> bytes:
    data = json.dumps(body).encode()
    a, b = data[:10], data[10:]
    return (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(a):x}\r\n".encode() + a + b"\r\n" + f"{len(b):x};ext=1\r\n".encode() + b + b"\r\n0\r\n\r\n"
    )  # fmt: skip


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, dict[str, str], dict]] = []
        self.connections = 0
        self.answer: Callable[[dict], bytes | None] = lambda _: plain(200, OK)


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        server.connections += 1
        while True:
            line = self.rfile.readline()
            if not line:
                return
            headers = {}
            while (header := self.rfile.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = json.loads(self.rfile.read(int(headers["content-length"])))
            server.requests.append((line.decode().strip(), headers, body))
            out = server.answer(body)
            if out is None:  # hang up without answering
                return
            self.wfile.write(out)
            self.wfile.flush()
            if b"Connection: close" in out:
                return


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def lean():
    sender = async_client.Sender(8)
    yield sender
    sender.loop.call_soon_threadsafe(sender.loop.stop)


def url(server: Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v23.0/1234/messages"


def post(lean, server, payload=None, **kwargs) -> SendResult:
    return lean.post(url(server), "tok", payload or {"to": "49151"}, **kwargs).result(timeout=10)


def test_a_send_comes_back_as_the_requests_path_returns_it_over_one_kept_connection(lean, server):
    results = [post(lean, server, {"to": f"4915{i}", "text": {"body": "Grüße"}}) for i in range(3)]
    assert results[0] == SendResult(wamid="wamid.OK1", wa_id="49151", message_status="accepted")
    line, headers, body = server.requests[0]
    assert line == "POST /v23.0/1234/messages HTTP/1.1"
    assert headers["authorization"] == "Bearer tok" and headers["content-type"] == "application/json"
    assert body == {"to": "49150", "text": {"body": "Grüße"}}
    assert server.connections == 1  # keep-alive


def test_chunked_answers_and_connection_close(lean, server):
    server.answer = lambda _: chunked(OK)
    assert post(lean, server).wamid == "wamid.OK1"
    server.answer = lambda _: plain(200, OK, "Connection: close\r\n")
    assert post(lean, server).wamid == "wamid.OK1"  # on the chunked answer's kept connection, closed
    assert post(lean, server).wamid == "wamid.OK1"
    assert post(lean, server).wamid == "wamid.OK1"
    assert server.connections == 3  # a closed one is never reused


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [(400, 131026, PermanentError), (400, 190, AccountError), (429, 130429, TransientError),
     (500, None, TransientError)],
)  # fmt: skip
def test_meta_errors_are_typed_as_on_the_requests_path(lean, server, status, code, error):
    body = {"error": {"code": code, "message": "(#x) no", "fbtrace_id": "T1"}} if code else {"oops": 1}
    server.answer = lambda _: plain(status, body)
    with pytest.raises(error) as caught:
        post(lean, server)
    assert caught.value.code == code and caught.value.http_status == status
    assert not isinstance(caught.value, AmbiguousSendError)


def test_no_answer_in_time_is_ambiguous_never_resent(lean, server, monkeypatch):
    monkeypatch.setattr(async_client, "READ_TIMEOUT", 0.3)
    server.answer = lambda _: time.sleep(1.0) or plain(200, OK)
    with pytest.raises(AmbiguousSendError):
        post(lean, server)


def test_a_hang_up_or_a_refused_connection_is_transient(lean, server):
    server.answer = lambda _: None
    with pytest.raises(TransientError) as caught:
        post(lean, server)
    assert not isinstance(caught.value, AmbiguousSendError)
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(TransientError):
        lean.post(f"http://127.0.0.1:{port}/v23.0/1/messages", "tok", {}).result(timeout=10)


def test_cancelled_before_the_slot_nothing_is_written(lean, server):
    stop = threading.Event()
    future = lean.post(url(server), "tok", {"to": "1"}, at=time.monotonic() + 0.3, cancel=stop)
    stop.set()
    with pytest.raises(async_client.NotPosted):
        future.result(timeout=5)
    assert server.requests == []


def test_a_call_held_up_past_its_slot_is_not_posted(lean, server):
    # Its slot passed 0.5 s ago (a busy loop): it would crowd the second at Meta's end.
    future = lean.post(url(server), "tok", {"to": "1"}, at=time.monotonic() - 0.5, late=0.025)
    with pytest.raises(async_client.NotPosted):
        future.result(timeout=5)
    assert server.requests == []
    assert post(lean, server, at=time.monotonic(), late=0.5).wamid == "wamid.OK1"


def test_a_130429_pauses_that_number_in_this_process(lean, server):
    throttled = {"error": {"code": 130429, "message": "(#130429) Rate limit hit", "fbtrace_id": "T"}}
    server.answer = lambda body: plain(429, throttled) if body["n"] == 0 else plain(200, OK)
    other = url(server).replace("/1234/", "/5678/")  # another phone number: not paused
    start = time.monotonic()
    futures = [
        lean.post(url(server), "tok", {"n": 0}, at=start, throughput_pause=1.0),
        lean.post(url(server), "tok", {"n": 1}, at=start + 0.3, throughput_pause=1.0),  # inside the pause
        lean.post(other, "tok", {"n": 2}, at=start + 0.3, throughput_pause=1.0),
        lean.post(url(server), "tok", {"n": 3}, at=start + 1.5, throughput_pause=1.0),  # after it
    ]
    with pytest.raises(TransientError) as caught:
        futures[0].result(timeout=5)
    assert caught.value.code == 130429
    with pytest.raises(async_client.NotPosted):
        futures[1].result(timeout=5)
    assert futures[2].result(timeout=5).wamid == futures[3].result(timeout=5).wamid == "wamid.OK1"
    assert [body["n"] for _, _, body in server.requests] == [0, 2, 3]
    # Without a pause asked for (single sends on this loop), a 130429 pauses nothing.
    server.answer = lambda body: plain(429, throttled)
    with pytest.raises(TransientError):
        post(lean, server, {"n": 0}, at=time.monotonic())
    with pytest.raises(TransientError):
        post(lean, server, {"n": 0}, at=time.monotonic())
    assert len(server.requests) == 5


def test_posts_wait_for_their_slot_time(lean, server):
    start = time.monotonic()
    futures = [lean.post(url(server), "tok", {"n": i}, at=start + 0.1 * i) for i in range(4)]
    for future in futures:
        future.result(timeout=5)
    assert time.monotonic() - start >= 0.3
    assert [body["n"] for _, _, body in server.requests] == [0, 1, 2, 3]


def test_the_fast_path_only_replaces_the_stock_transport(db, monkeypatch, graph):
    account = WhatsAppAccount(phone_number_id="1", access_token="t", base_url="https://graph.facebook.com")
    assert not GraphClient(account).fast_path_ok()  # the test seam (graph fixture) is mounted
    monkeypatch.undo()
    account = WhatsAppAccount(
        pk=99, phone_number_id="1", access_token="t2", base_url="https://graph.facebook.com"
    )
    assert GraphClient(account).fast_path_ok()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert not GraphClient(account).fast_path_ok()
