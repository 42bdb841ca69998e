"""Firebase Cloud Messaging HTTP v1: OAuth tokens, the request body, and concurrent sends.

One ``messages:send`` request per device token (FCM v1 has no batch call). The requests of a batch
go out concurrently on one asyncio event loop per process, over kept-alive HTTP/1.1 connections
(at most ``PUSH_SEND_CONNECTIONS`` in flight): a worker thread hands over a whole batch and waits
once, instead of a thread and a connection set-up per request. The HTTP exchange is asyncio
streams with h11 (the parser under httpx) and nothing else: ``httpx.AsyncClient`` measured about
1.5-2 ms of CPU per request here (its pool, anyio, its models), which alone would cap a worker
below 1,000 pushes a second; this path costs a fraction of that (as ``whatsapp/async_client.py``
found for Meta's calls, whose connection pool this reuses).

OAuth: the service account signs an assertion that google-auth trades for an access token at
Google's token endpoint (through google-auth's requests transport). The token lives about an hour;
it is cached per project in the process and refreshed when google-auth calls it no longer valid
(a few minutes before it expires), one refresh at a time per project.

Answers are classified as ``DeviceResult`` (see ``classify``); ``transport.PushTransport`` folds
the results of a message's devices into its ``Delivery``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
from django.conf import settings
from google.auth.transport.requests import Request as AuthRequest
from google.oauth2 import service_account

# The keep-alive pool of Meta's lean sender: connections per origin, LIFO, dropped when idle too
# long or closed by the peer (connect failures raise TransientError). HTTP itself is h11's here.
from whatsapp.async_client import _Connection, _Origin
from whatsapp.errors import TransientError

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
SIMULATOR_TOKEN = "simulator"  # noqa: S105 (the push simulator's fixed bearer: it has no OAuth)
SIMULATOR_PROJECT = "simulator"
READ_TIMEOUT = 20.0  # after the request was written: no answer by then -> unknown (maybe delivered)
MAX_BODY = 1024 * 1024
MAX_RETRY_AFTER = 3600.0  # seconds


# --- OAuth -----------------------------------------------------------------------------------

_credentials: dict[int, tuple[str, service_account.Credentials]] = {}
_project_locks: dict[int, threading.Lock] = {}
_locks_lock = threading.Lock()


def auth_request() -> AuthRequest:
    """google-auth's requests transport for the token request (the test seam for Google's endpoint)."""
    return AuthRequest()


def access_token(project_id: int, service_account_json: str) -> str:
    """A valid OAuth access token for the project's service account, cached in the process.

    Raises google-auth's ``RefreshError`` (Google refused the key) or ``TransportError`` (Google
    could not be reached)."""
    fingerprint = hashlib.sha256(service_account_json.encode()).hexdigest()
    with _locks_lock:
        lock = _project_locks.setdefault(project_id, threading.Lock())
    with lock:
        cached = _credentials.get(project_id)
        if cached is None or cached[0] != fingerprint:  # a new key uploaded: forget the old token
            info = json.loads(service_account_json)
            credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
            cached = _credentials[project_id] = (fingerprint, credentials)
        credentials = cached[1]
        if not credentials.valid:  # no token yet, or within google-auth's refresh margin of expiry
            credentials.refresh(auth_request())
        return credentials.token


# --- the request -----------------------------------------------------------------------------


def message_body(token: str, content: dict[str, Any], message_id: str, *, marketing: bool) -> dict[str, Any]:
    """FCM v1's ``{"message": ...}`` for one device. Data values are strings (FCM's rule); ``link``
    and our ``message_id`` ride in the data, so the app can open the link and report the open."""
    notification = {"title": content.get("title", ""), "body": content.get("body", "")}
    image = content.get("image") or ""
    link = content.get("link") or ""
    data = {str(k): str(v) for k, v in (content.get("data") or {}).items()}
    data.update(link=link, message_id=message_id)
    android: dict[str, Any] = {"priority": "normal" if marketing else "high"}
    apns: dict[str, Any] = {"headers": {"apns-priority": "5" if marketing else "10"}}
    if image:
        notification["image"] = image
        apns["payload"] = {"aps": {"mutable-content": 1}}  # lets the app's extension load the image
        apns["fcm_options"] = {"image": image}
    message: dict[str, Any] = {
        "token": token,
        "notification": notification,
        "data": data,
        "android": android,
        "apns": apns,
    }
    if link.startswith("https://"):  # FCM takes only https links for web push
        message["webpush"] = {"fcm_options": {"link": link}}
    return {"message": message}


# --- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceResult:
    """FCM's answer for one device token.

    kind: ``ok`` (``name`` is FCM's message name), ``removed`` (the token is dead: unregistered or
    invalid; the device is removed), ``retry`` (try later, ``retry_after`` seconds if FCM said),
    ``settings`` (the project's Firebase settings are wrong: every send fails alike),
    ``failed`` (this message cannot be sent as it is), ``unknown`` (maybe delivered)."""

    kind: str
    name: str = ""
    code: str = ""
    error: str = ""
    retry_after: float | None = None


SETTINGS_WORDS = {
    "SENDER_ID_MISMATCH": "The device's app belongs to another Firebase project than the service account "
    "in the push settings.",
    "THIRD_PARTY_AUTH_ERROR": "Firebase could not authenticate with Apple (APNs) or the web push service: "
    "check the APNs key or web push certificate in your Firebase project.",
    "401": "Firebase refused the push settings' credentials: upload a current service-account key.",
    "403": "The service account in the push settings may not send with Firebase Cloud Messaging: give it "
    "the Firebase Cloud Messaging API Admin role and enable the FCM API.",
}


def _retry_after(headers: dict[str, str]) -> float | None:
    try:
        seconds = float(headers.get("retry-after", ""))
    except ValueError:
        return None  # absent, or an HTTP date (FCM sends seconds): the sender's backoff
    if not math.isfinite(seconds):
        return None
    # A wait past MAX_RETRY_AFTER (or one no datetime can hold) is a broken answer, not a plan.
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def classify(status: int, headers: dict[str, str], raw: bytes) -> DeviceResult:
    """One answer of ``messages:send`` (``headers`` by lower-case name) as a DeviceResult: FCM's
    ``FcmError`` codes first, then the HTTP status, as Firebase documents them."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    if status == 200:
        name = str(body.get("name", "")) if isinstance(body, dict) else ""
        return DeviceResult("ok", name=name)
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    details = error.get("details") if isinstance(error.get("details"), list) else []
    fcm_code = next(
        (str(d["errorCode"]) for d in details if isinstance(d, dict) and d.get("errorCode")),
        str(error.get("status") or ""),
    )
    message = str(error.get("message") or f"HTTP {status}")
    code = fcm_code or str(status)
    if fcm_code == "UNREGISTERED" or status == 404:
        return DeviceResult("removed", code=code, error="The app was uninstalled or the token expired.")
    if fcm_code == "INVALID_ARGUMENT" and _about_token(details, message):
        return DeviceResult("removed", code=code, error=f"The device token is not valid ({message}).")
    if fcm_code in ("QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL") or status in (429, 500, 502, 503, 504):
        return DeviceResult(
            "retry",
            code=code,
            error=f"Firebase asked to try later ({message}).",
            retry_after=_retry_after(headers),
        )
    words = SETTINGS_WORDS.get(fcm_code) or SETTINGS_WORDS.get(str(status))
    if words:
        return DeviceResult("settings", code=code, error=f"{words} ({message})")
    return DeviceResult("failed", code=code, error=f"Firebase refused the push: {message}")


def _about_token(details: list, message: str) -> bool:
    for detail in details:
        for violation in (detail.get("fieldViolations") or []) if isinstance(detail, dict) else []:
            if isinstance(violation, dict) and str(violation.get("field", "")).endswith("token"):
                return True
    return "registration token" in message.lower()


# --- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    url: str
    bearer: str
    body: dict[str, Any]


async def _exchange(
    conn: _Connection, host: str, path: str, bearer: str, body: bytes
) -> tuple[int, dict[str, str], bytes, bool]:
    """One POST on a kept-alive connection and its whole answer: (status, headers by lower-case
    name, body, whether the connection may carry the next request). h11 keeps the state of this
    one exchange; the socket outlives it."""
    http = h11.Connection(our_role=h11.CLIENT)
    conn.writer.write(
        http.send(
            h11.Request(
                method="POST",
                target=path,
                headers=[
                    ("Host", host),
                    ("Authorization", f"Bearer {bearer}"),
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                ],
            )
        )
        + http.send(h11.Data(data=body))
        + http.send(h11.EndOfMessage())
    )
    await conn.writer.drain()
    status, headers, parts, size = 0, {}, [], 0
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            http.receive_data(await conn.reader.read(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY:
                raise h11.RemoteProtocolError("answer too large")
            parts.append(event.data)
        elif isinstance(event, h11.EndOfMessage):
            keep_alive = http.our_state is h11.DONE and http.their_state is h11.DONE
            return status, headers, b"".join(parts), keep_alive
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionResetError("closed before the answer")


class FcmClient:
    """A process's event loop thread and its connections; ``send_all`` is called from any thread."""

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max(1, max_in_flight)
        self.origins: dict[str, _Origin] = {}
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name="fcm-send-loop", daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.slots = asyncio.Semaphore(self.max_in_flight)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def send_all(self, requests: Sequence[Request]) -> list[DeviceResult]:
        """POST every request concurrently; one DeviceResult each, in order. Never raises for one."""
        if not requests:
            return []
        future = asyncio.run_coroutine_threadsafe(self._send_all(requests), self.loop)
        return future.result()

    async def _send_all(self, requests: Sequence[Request]) -> list[DeviceResult]:
        return list(await asyncio.gather(*(self._send(r) for r in requests)))

    async def _send(self, request: Request) -> DeviceResult:
        parts = urlsplit(request.url)
        key = f"{parts.scheme}://{parts.netloc}"
        origin = self.origins.get(key) or self.origins.setdefault(key, _Origin(key))
        host = origin.host_header.decode()
        body = json.dumps(request.body, separators=(",", ":")).encode()
        async with self.slots:
            try:
                conn = await origin.connect()
            except TransientError:  # nothing was written
                return DeviceResult("retry", code="CONNECT", error="Firebase could not be reached.")
            try:
                status, headers, raw, keep_alive = await asyncio.wait_for(
                    _exchange(conn, host, parts.path, request.bearer, body), READ_TIMEOUT
                )
            except TimeoutError:
                conn.close()
                return DeviceResult("unknown", code="NO_ANSWER", error="No answer from Firebase (timeout).")
            except (OSError, h11.ProtocolError) as exc:
                # The connection broke before a whole answer came: as for Meta's calls
                # (whatsapp/async_client.py), nothing reached FCM as far as HTTP can tell.
                conn.close()
                return DeviceResult(
                    "retry", code="CONNECTION", error=f"Firebase could not be reached ({type(exc).__name__})."
                )
            if keep_alive:
                origin.release(conn)
            else:
                conn.close()
        return classify(status, headers, raw)


_client: tuple[int, FcmClient] | None = None
_client_lock = threading.Lock()


def client() -> FcmClient:
    """This process's client (a forked worker process starts its own loop)."""
    global _client
    with _client_lock:
        if _client is None or _client[0] != os.getpid():
            _client = (os.getpid(), FcmClient(int(settings.PUSH_SEND_CONNECTIONS)))
        return _client[1]
