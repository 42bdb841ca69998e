"""The standalone simulator's send endpoint without Django's request machinery (load tests, issue 9).

``POST /simulator/graph/<version>/<phone-number-id>/messages`` is every call of a load test; under
granian, Django's WSGIHandler (request object, URL resolving, signals, JsonResponse) cost about as
much CPU as the send itself. ``AsyncLeanSend`` (ASGI, ``runsimulator``'s default) and ``LeanSend``
(WSGI, ``--interface wsgi``) answer that one route directly and hand every other request
(templates, phone info, the ledger, form-encoded bodies, a token in the query string, no
``SIMULATOR_CALLBACK_BASE``) to Django unchanged. What they run is the same code as the Django view:
the account check (``graph_views``), the fault knobs and latency, and ``messages.send``
(validation, acceptance, the chat, the status webhooks), so behaviour and error answers are the
same; only the HTTP plumbing differs.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection

from . import callbacks, config, dbthreads, graph_views, messages, services, store
from .errors import ApiError, trace_id

SEND_PATH = re.compile(r"^/simulator/graph/(v\d+\.\d+)/([A-Za-z0-9_.-]+)/messages/?$")
MAX_BODY = 1 << 20  # a send is a few hundred bytes; Meta refuses far smaller bodies than this

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

REASONS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized", 429: "429 Too Many Requests",
           500: "500 Internal Server Error"}  # fmt: skip


def lean_route(
    method: str, path: str, content_type: str, authorization: str, query: str
) -> tuple[str, str, str] | None:
    """(version, phone number id, token) when this request can take the lean path, else None."""
    if method != "POST":
        return None
    match = SEND_PATH.match(path)
    if match is None:
        return None
    if content_type.split(";")[0].strip().lower() not in ("", "application/json"):
        return None  # form-encoded sends: Django parses them
    if authorization[:7].lower() != "bearer " or query:
        return None  # a token in the query string: Django reads it
    if not config.callback_base_override():
        return None  # the webhook base comes from the request's host: Django builds it
    return match.group(1), match.group(2), authorization[7:].strip()


def _lean(environ: dict[str, Any]) -> tuple[str, str, str] | None:
    return lean_route(
        environ.get("REQUEST_METHOD", ""),
        environ.get("PATH_INFO", ""),
        environ.get("CONTENT_TYPE", ""),
        environ.get("HTTP_AUTHORIZATION", ""),
        environ.get("QUERY_STRING", ""),
    )


def _wsgi_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        raise ApiError(100, "The request body is too large.")
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _json(raw: bytes) -> Any:
    if len(raw) > MAX_BODY:
        raise ApiError(100, "The request body is too large.")
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(100, "The request body could not be parsed as JSON.") from None


def _checked_account(phone_number_id: str, token: str, method: str = "post"):
    """``graph_views.account_for_token`` off the event loop; the connection a rare answer opened
    (an unknown number) is closed, as the request thread does in ``send``."""
    try:
        return graph_views.account_for_token(phone_number_id, token, method=method)
    finally:
        _close_rare_connection()


def _close_rare_connection() -> None:
    # Only a rare answer (an unknown number) reads the database on a request's thread; the signals
    # that close Django's connection after a request do not run here. (Inside a transaction, i.e. a
    # test calling this on its own thread, the connection is the test's.)
    if connection.connection is not None and not connection.in_atomic_block:
        connection.close()


async def send_async(
    read_body: Callable[[], bytes], version: str, phone_number_id: str, token: str
) -> tuple[int, dict]:
    """``send`` on an event loop (``runsimulator``'s ASGI app): the latency is slept without a thread
    per call in flight, the database (an account not cached, a new recipient's name) is awaited on
    other threads, and the rest, SQLite and validation, runs inline: one thread and no lock
    hand-over per call, which is what the thread-per-request server spent most of its CPU on."""
    callbacks.ensure_pump()
    latency = config.latency_seconds()
    if latency:
        await asyncio.sleep(latency)
    try:
        account = graph_views.cached_account_for_token(phone_number_id, token)
        if account is None:
            account = await sync_to_async(_checked_account, thread_sensitive=True)(phone_number_id, token)
        graph_views.injected_fault(account)
        payload = _json(read_body())
        phone = messages.new_recipient(payload)
        name = await dbthreads.profile_name_async(phone, project_id=account.project_id) if phone else None
        prepared = messages.prepare(
            account=account, payload=payload, callback_base=services.callback_base(),
            new_recipient_name=name, arrival=True,
        )  # fmt: skip
        accepted = prepared.send is not None and await _turn_commit().accept(prepared.send)
        return 200, prepared.result(accepted)
    except ApiError as exc:
        return exc.http_status, exc.body()


class TurnCommit:
    """The sends prepared during one turn of the event loop, accepted in one state transaction.

    A commit per send wrote the WAL pages of the message, its handset and the throughput log each
    time, most of the simulator's system CPU. The sends that arrive while the loop is busy are
    ready together, so they share a commit at the end of that turn (``call_soon``), each with its
    own arrival time as its slot (``store.Send.at``), answered once it is committed. It never
    waits for more sends to come: an idle loop commits a lone send at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[tuple[store.Send, asyncio.Future[bool]]] = []

    def accept(self, send: store.Send) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = self.loop.create_future()
        self.pending.append((send, future))
        if len(self.pending) == 1:
            self.loop.call_soon(self._commit)
        return future

    def _commit(self) -> None:
        batch, self.pending = self.pending, []
        try:
            results = store.accept_sends([send for send, _ in batch])
        except Exception as exc:  # every send of the transaction fails as its own commit would have
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), accepted in zip(batch, results, strict=True):
            if not future.done():  # a client that went away cancelled its wait: it was accepted anyway
                future.set_result(accepted)


_turn_commits: dict[asyncio.AbstractEventLoop, TurnCommit] = {}


def _turn_commit() -> TurnCommit:
    loop = asyncio.get_running_loop()
    commit = _turn_commits.get(loop)
    if commit is None:
        _turn_commits.clear()  # one loop per process; a test's earlier loops are closed
        commit = _turn_commits[loop] = TurnCommit(loop)
    return commit


def send(read_body: Callable[[], bytes], version: str, phone_number_id: str, token: str) -> tuple[int, dict]:
    """What ``graph_views.send_messages`` answers, as (HTTP status, JSON body). ``read_body`` is
    called once the account is known (Meta checks the token first)."""
    callbacks.ensure_pump()
    latency = config.latency_seconds()
    if latency:
        time.sleep(latency)  # Meta's round trip; a sender must keep enough calls in flight
    try:
        account = graph_views.account_for_token(phone_number_id, token, method="post")
        graph_views.injected_fault(account)
        payload = _json(read_body())
        return 200, messages.send(account=account, payload=payload, callback_base=services.callback_base())
    except ApiError as exc:
        return exc.http_status, exc.body()
    finally:
        _close_rare_connection()


def _encode(status: int, data: dict, version: str) -> tuple[bytes, list[tuple[str, str]]]:
    body = json.dumps(data, ensure_ascii=True).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("facebook-api-version", version),
        ("x-fb-trace-id", (data.get("error") or {}).get("fbtrace_id") or trace_id()),
    ]
    return body, headers


class LeanSend:
    """``django_app`` with the lean send route in front of it; any attribute is the Django handler's."""

    def __init__(self, django_app: WSGIApp) -> None:
        self.django_app = django_app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.django_app, name)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        lean = _lean(environ)
        if lean is None:
            return self.django_app(environ, start_response)
        version, number, token = lean
        status, data = send(lambda: _wsgi_body(environ), version, number, token)
        body, headers = _encode(status, data, version)
        start_response(REASONS.get(status, f"{status} Error"), headers)
        return [body]


def wrap(django_app: WSGIApp) -> LeanSend:
    return LeanSend(django_app)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _asgi_body(receive: Receive) -> bytes | None:
    """The request's body; None when the client went away, a body over ``MAX_BODY`` is cut there
    (its ``_json`` then answers "too large" after the token was checked, as in ``_wsgi_body``)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if size <= MAX_BODY:
            chunks.append(chunk)
            size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class AsyncLeanSend:
    """Django's ASGI handler with the lean send route in front of it (``runsimulator``)."""

    def __init__(self, django_app: ASGIApp) -> None:
        self.django_app = django_app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.django_app, name)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        lean = None
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or ())
            lean = lean_route(
                scope.get("method", ""),
                scope.get("path", ""),
                headers.get(b"content-type", b"").decode("latin-1"),
                headers.get(b"authorization", b"").decode("latin-1"),
                scope.get("query_string", b"").decode("latin-1"),
            )
        if lean is None:
            return await self.django_app(scope, receive, send)
        version, number, token = lean
        raw = await _asgi_body(receive)
        if raw is None:
            return None
        status, data = await send_async(lambda: raw, version, number, token)
        body, headers = _encode(status, data, version)
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})
        return None


def wrap_asgi(django_app: ASGIApp) -> AsyncLeanSend:
    return AsyncLeanSend(django_app)
