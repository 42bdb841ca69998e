"""The batched sender's POSTs to ``/<phone-number-id>/messages``: one asyncio loop per process, HTTP/1.1.

Why not the ``requests`` thread pool (ADR 0006, amendment of issue 9): per call, requests and
urllib3 cost about 0.5-0.65 ms of CPU here (preparing the request, merging proxy settings from the
environment, parsing headers through ``email.parser``), a quarter of everything a worker spent per
message; 64 threads then fight over the GIL as well. ``httpx.AsyncClient`` measured 2 ms per call.
A plain HTTP/1.1 exchange on asyncio streams costs about 0.04 ms. Only this one call is lean:
everything else (single sends, templates, the phone number) stays on ``whatsapp.client``.

What is kept from the requests path, so that the sender's error classes do not change:

- connect failure or timeout (``CONNECT_TIMEOUT``), a connection reset or closed before an answer
  -> ``TransientError`` (as requests' ``ConnectionError``: the sender retries with backoff);
- no answer within ``READ_TIMEOUT`` after the request was written -> ``AmbiguousSendError`` (maybe
  sent: never resent blindly);
- Meta's answer -> ``client.answer`` (typed ``GraphError``, or the body), ``client.send_result``.

Keep-alive connections per origin (LIFO, dropped when the peer closed them or after
``IDLE_SECONDS``), at most ``WHATSAPP_SEND_CONNECTIONS`` (default 256) calls in flight per process:
with Meta's 200 ms round trip, 1,000 messages a second need about 200. TLS for https, with the
system's default verification. Proxies are not supported here: ``GraphClient.fast_path_ok`` sends
through requests whenever the environment names a proxy for Meta, or a test mounted its own
transport adapter on the session (the test seam stays where it was).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from .client import SendResult, answer, send_result
from .errors import THROUGHPUT_CODE, AmbiguousSendError, GraphError, TransientError

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 20.0
IDLE_SECONDS = 30.0  # a keep-alive connection unused longer than this is closed, not reused
MAX_HEADER = 64 * 1024
MAX_BODY = 4 * 1024 * 1024


class NotPosted(Exception):
    """The call was cancelled before its request was written: nothing reached Meta."""


class _Connection:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.used = reader, writer, time.monotonic()

    def reusable(self) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and time.monotonic() - self.used < IDLE_SECONDS
        )

    def close(self) -> None:
        self.writer.close()


class _Origin:
    """Idle keep-alive connections to one scheme://host:port."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.rsplit("@", 1)[-1].encode("idna")
        self.idle: list[_Connection] = []

    async def connect(self) -> _Connection:
        while self.idle:
            conn = self.idle.pop()
            if conn.reusable():
                return conn
            conn.close()
        context = ssl.create_default_context() if self.tls else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=context, limit=MAX_HEADER),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise TransientError(None, f"Meta could not be reached ({type(exc).__name__}).") from None
        return _Connection(reader, writer)

    def release(self, conn: _Connection) -> None:
        conn.used = time.monotonic()
        self.idle.append(conn)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    keep_alive = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        size = 0
        while True:
            length = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if length == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the blank line
                    pass
                break
            size += length
            if size > MAX_BODY:
                raise ValueError("answer too large")
            chunks.append(await reader.readexactly(length))
            await reader.readexactly(2)
        return status, b"".join(chunks), keep_alive
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise ValueError("answer too large")
        return status, await reader.readexactly(length), keep_alive
    return status, await reader.read(MAX_BODY), False  # until the server closes the connection


class Sender:
    """The process's event loop thread and its connections; ``post`` is called from any thread."""

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.loop = asyncio.new_event_loop()
        self.origins: dict[str, _Origin] = {}
        self.tasks: set[asyncio.Task] = set()
        self.paused: dict[str, float] = {}  # url -> monotonic end of its pause after a 130429
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="wa-send-loop", daemon=True)
        self.thread.start()
        self.ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.slots = asyncio.Semaphore(self.max_in_flight)
        self.loop.call_soon(self.ready.set)
        self.loop.run_forever()

    def post(
        self,
        url: str,
        token: str,
        payload: dict[str, Any],
        *,
        at: float = 0.0,
        cancel: threading.Event | None = None,
        late: float | None = None,
        throughput_pause: float = 0.0,
    ) -> Future[SendResult]:
        """POST ``payload`` to ``url`` not before ``time.monotonic() == at``; a future of its result.

        The future raises ``NotPosted`` when ``cancel`` is set before the request is written, when
        the request could not be written within ``late`` seconds after ``at``, or when its slot
        came while ``url`` was paused: Meta's 130429 to any call of this process pauses that
        ``url`` (one phone number) for ``throughput_pause`` seconds."""
        return self.post_many(
            [(url, token, payload, at)], cancel=cancel, late=late, throughput_pause=throughput_pause
        )[0]

    def post_many(
        self,
        calls: Sequence[tuple[str, str, dict[str, Any], float]],
        *,
        cancel: threading.Event | None = None,
        late: float | None = None,
        throughput_pause: float = 0.0,
    ) -> list[Future[SendResult]]:
        """``post`` for each ``(url, token, payload, at)``, handed to the loop in one go.

        One wake-up of the loop for all of them, and each call settles its own future from the
        loop: ``run_coroutine_threadsafe`` per call woke the loop once per call and chained an
        asyncio future to each result, a third of the loop's CPU per message."""
        jobs = []
        for url, token, payload, at in calls:
            body = json.dumps(payload, allow_nan=False).encode()
            jobs.append((Future(), url, token, body, at))
        if jobs:
            self.loop.call_soon_threadsafe(self._start, jobs, cancel, late, throughput_pause)
        return [job[0] for job in jobs]

    def pause(self, url: str, seconds: float) -> None:
        """No call to ``url`` is written for ``seconds`` (from the loop's thread; a longer pause wins)."""
        self.paused[url] = max(self.paused.get(url, 0.0), time.monotonic() + seconds)

    def _start(
        self, jobs: list[tuple], cancel: threading.Event | None, late: float | None, pause: float
    ) -> None:
        for future, url, token, body, at in jobs:
            task = self.loop.create_task(self._settle(future, url, token, body, at, cancel, late, pause))
            self.tasks.add(task)  # the loop holds tasks weakly: kept until done
            task.add_done_callback(self.tasks.discard)

    async def _settle(
        self,
        future: Future[SendResult],
        url: str,
        token: str,
        body: bytes,
        at: float,
        cancel: threading.Event | None,
        late: float | None,
        pause: float,
    ) -> None:
        try:
            result = await self._post(url, token, body, at, cancel, late)
        except asyncio.CancelledError:  # the loop is going away: nothing was handed back
            future.cancel()
            raise
        except BaseException as exc:  # the caller's thread reads it from the future
            if pause and isinstance(exc, GraphError) and exc.code == THROUGHPUT_CODE:
                # Set here, on the loop, before any other call of the number is written: the calls
                # that reach their slots within the pause are not posted (see ``_post``).
                self.pause(url, pause)
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            future.set_result(result)

    async def _post(
        self, url: str, token: str, body: bytes, at: float, cancel: threading.Event | None, late: float | None
    ) -> SendResult:
        wait = at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)  # until the send slot the batch reserved for this message
        async with self.slots:
            if cancel is not None and cancel.is_set():
                raise NotPosted
            now = time.monotonic()
            if late is not None and now - at > late:
                # The loop was held up (a busy process): calls that should have gone out over the
                # last moments would now leave together and crowd a second at Meta's end.
                raise NotPosted
            if now < self.paused.get(url, 0.0):
                # Meta refused a call of this number a moment ago: its second is full. Calls whose
                # slots come within the pause are handed back (and queued again); later slots
                # still go out as reserved, so the pause costs its own length, not the batches'.
                raise NotPosted
            origin_key, path = _split(url)
            origin = self.origins.get(origin_key)
            if origin is None:
                origin = self.origins[origin_key] = _Origin(origin_key)
            conn = await origin.connect()
            request = (
                f"POST {path} HTTP/1.1\r\nHost: {origin.host_header.decode()}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            try:
                conn.writer.write(request)
                await conn.writer.drain()
            except OSError as exc:
                conn.close()
                raise TransientError(None, f"Meta could not be reached ({type(exc).__name__}).") from None
            try:
                status, raw, keep_alive = await asyncio.wait_for(_read_answer(conn.reader), READ_TIMEOUT)
            except TimeoutError:
                conn.close()
                raise AmbiguousSendError(None, "No answer from Meta (ReadTimeout).") from None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                # The connection broke before a whole answer came: what requests calls a
                # ConnectionError (nothing reached Meta as far as HTTP can tell), a transient error.
                conn.close()
                raise TransientError(None, f"Meta could not be reached ({type(exc).__name__}).") from None
            except ValueError as exc:
                conn.close()
                raise AmbiguousSendError(None, f"Unreadable answer from Meta ({exc}).") from None
            if keep_alive:
                origin.release(conn)
            else:
                conn.close()
        return send_result(answer(status, raw))


def _split(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return f"{parts.scheme}://{parts.netloc}", path


_sender: tuple[int, Sender] | None = None
_lock = threading.Lock()


def sender() -> Sender:
    """This process's sender (a forked worker process starts its own loop)."""
    global _sender
    with _lock:
        if _sender is None or _sender[0] != os.getpid():
            limit = max(int(settings.WHATSAPP_SEND_CONNECTIONS), 1)
            _sender = (os.getpid(), Sender(max(1, limit)))
        return _sender[1]
