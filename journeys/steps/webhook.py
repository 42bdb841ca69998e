"""The webhook step: POST JSON to a marketer's URL, branch on ``success`` or ``failure``.

The HTTP call is made by an actor (``call_webhook``), never inside the engine's transaction: a
receiver that answers in 30 s (times 6 attempts) would hold the engine's batch, its row locks and
a database connection for minutes. So the step renders the body, writes it into its visit row
and returns ``Wait(deadline)``; after commit the actor posts, writes the answer into the visit
row and pulls the run's ``wake_at`` to now (only while the run still waits at this step); the
tick then calls the step again, which reads the answer and leaves by ``success`` (2xx) or
``failure``. The run's position is still moved by the engine alone; the actor only moves the
timer earlier. Durable: if the actor's message is lost or its worker dies, the deadline passes,
the step sends the call again (at most ``MAX_DISPATCHES`` times) and then leaves by ``failure``.

Every attempt carries ``Idempotency-Key: <run public id>:<step id>``: a receiver that keeps
keys does the work once, however many attempts reach it. ``timeout_seconds`` 1-30 (default 10)
per attempt; ``retries`` 0-5 (default 2) more attempts on a network error, 408, 429 or 5xx, with
backoff 1, 2, 4, 8, 16 s (a dramatiq message with a delay, not a sleeping worker).

SSRF (design section 3): http/https only, no credentials in the URL, and every address the host
resolves to must be a global unicast address (no loopback, private, link-local incl. the cloud
metadata address 169.254.169.254, shared, reserved or multicast ranges), checked right before each
attempt. The name is resolved once per attempt and the connection goes to exactly those checked
addresses (``_PinnedAdapter``): ``requests`` never looks the name up again, so a DNS server that
answers a public address to the check and 127.0.0.1 a moment later (rebinding with TTL 0) reaches
nothing internal. The Host header, TLS SNI and the certificate check still use the name from the
URL. Redirects are not followed (a 3xx is a failure that names the target), so a public URL
cannot bounce the call to an internal one. ``JOURNEY_WEBHOOK_ALLOWED_HOSTS`` (a setting, default
empty) names hosts an operator allows although they resolve privately (an internal CRM); those
are trusted with their own DNS and connected to as usual.

Headers from the definition are sent but never copied into the visit row (they may carry a
receiver's token); the rendered body and the answer (status, 2,000 characters) are kept there
for the run's timeline.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import dramatiq
import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from liquid.exceptions import LiquidError
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from campaigns import bindings as campaign_bindings

from ..models import JourneyRun, JourneyRunStep, RunState
from . import CheckContext, Go, Outcome, Problem, Visit, Wait, register

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10
DEFAULT_RETRIES = 2
MAX_TIMEOUT = 30
MAX_RETRIES = 5
BACKOFF = (1, 2, 4, 8, 16)  # seconds before the 2nd, 3rd, ... attempt
SLACK = timedelta(seconds=60)  # for the broker and a busy worker, on top of the calls' own time
MAX_DISPATCHES = 3
MAX_BODY = 64 * 1024  # bytes of the rendered JSON body
MAX_ANSWER = 2_000  # characters of the receiver's answer kept in the visit row
RETRYABLE_STATUS = {408, 425, 429}
FORBIDDEN_HEADERS = {"host", "content-length", "idempotency-key", "transfer-encoding", "connection"}
USER_AGENT = "wcp-journeys/1 (+webhook step)"


# --- SSRF --------------------------------------------------------------------------------------


class UnsafeURL(ValueError):
    pass


def _allowed_hosts() -> set[str]:
    return {h.lower() for h in getattr(settings, "JOURNEY_WEBHOOK_ALLOWED_HOSTS", ()) or ()}


def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a seam for tests: they never reach DNS)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BREAK = re.compile(r"[\r\n]")
_V4_EMBEDDING = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::/96"))


def _unsafe_address(text: str) -> str:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return f"{text} is not an address"
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    if isinstance(address, ipaddress.IPv6Address):
        # 6to4 (2002::/16), NAT64 (64:ff9b::/96) and IPv4-compatible (::/96) addresses carry an IPv4
        # address that a relay or the stack may reach: 2002:7f00:1:: is "global" but means 127.0.0.1.
        embedded = address.sixtofour or next(
            (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) for net in _V4_EMBEDDING if address in net),
            None,
        )
        if embedded is not None and (not embedded.is_global or embedded.is_multicast):
            return f"{address} (embedding {embedded}) is not a public address"
    if not address.is_global or address.is_multicast:
        return f"{address} is not a public address"
    return ""


def _shape_problem(url: Any) -> str:
    """What is wrong with the URL as written (no DNS), or ""."""
    if not isinstance(url, str) or not url.strip():
        return _("Give the URL to POST to.")
    if len(url) > 2_000:
        return _("At most 2,000 characters.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return _("Not a valid URL.")
    if parts.scheme not in ("http", "https"):
        return _("Only http:// and https:// URLs.")
    if not parts.hostname:
        return _("The URL has no host.")
    if parts.username or parts.password:
        return _("No user or password in the URL: send credentials in a header.")
    if port == 0:
        return _("Not a valid port.")
    host = parts.hostname.lower()
    if host in _allowed_hosts():
        return ""
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return _("%(host)s is not a public host.") % {"host": host}
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return ""
    problem = _unsafe_address(host)
    return f"{problem}: webhooks may only call public hosts." if problem else ""


def check_url(url: str) -> tuple[str, ...]:
    """The addresses to connect to, in DNS order; UnsafeURL unless ``url`` is http(s) and every
    address of its host is public. The caller must connect to these only (``_session(addresses)``
    does): resolving the name again would undo the check. Empty for a host the operator allowed."""
    problem = _shape_problem(url)
    if problem:
        raise UnsafeURL(problem)
    parts = urlsplit(url.strip())
    host = parts.hostname.lower()
    if host in _allowed_hosts():
        return ()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = _resolve(host, port)
    except OSError as err:
        raise UnsafeURL(f"{host} does not resolve ({err.strerror or err}).") from None
    if not addresses:
        raise UnsafeURL(f"{host} does not resolve.")
    for address in addresses:
        problem = _unsafe_address(address)
        if problem:
            raise UnsafeURL(f"{host} resolves to {problem}: webhooks may only call public hosts.")
    return tuple(dict.fromkeys(addresses))


class _PinnedConnection:
    """A urllib3 connection that opens its socket to the checked addresses instead of looking the
    name up again. Only the socket changes: ``self.host`` stays the URL's name, so the Host header,
    TLS SNI and certificate verification (HTTPSConnection) are exactly what they would be."""

    def __init__(self, *args: Any, pinned_addresses: tuple[str, ...], **kwargs: Any) -> None:
        self.pinned_addresses = pinned_addresses
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        # urllib3's create_connection(), minus getaddrinfo(): an address literal needs no lookup, and
        # calling getaddrinfo here would hand a hostile resolver (or a test's) a second answer.
        error: OSError | None = None
        for address in self.pinned_addresses:
            sock = None
            try:
                # An IPv6 address on a host without IPv6 fails here: the next address is tried.
                sock = socket.socket(
                    socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM
                )
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                if self.timeout is None or isinstance(self.timeout, int | float):
                    sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect((address, self.port))
            except OSError as err:
                if sock is not None:
                    sock.close()
                error = err
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            )
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")


class _PinnedHTTPConnection(_PinnedConnection, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnection, HTTPSConnection):
    pass


class _PinnedPoolManager(PoolManager):
    """Every pool it makes connects to ``addresses``, whatever host a request names: a reused
    session or a redirect can never reach an address that was not checked."""

    def __init__(self, addresses: tuple[str, ...], **kwargs: Any) -> None:
        self.addresses = addresses
        super().__init__(**kwargs)

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.ConnectionCls = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        pool.conn_kw["pinned_addresses"] = self.addresses  # passed to each ConnectionCls(...)
        return pool


class _PinnedAdapter(HTTPAdapter):
    def __init__(self, addresses: tuple[str, ...]) -> None:
        self.addresses = addresses  # before super().__init__(), which calls init_poolmanager()
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self._pool_connections, self._pool_maxsize, self._pool_block = connections, maxsize, block
        self.poolmanager = _PinnedPoolManager(
            self.addresses, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )


# --- the body ----------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _template(source: str):
    return campaign_bindings.ENV.from_string(source)


def _liquid_problem(value: Any, where: str, depth: int = 0) -> str:
    if depth > 10:
        return _("%(where)s: nested too deeply.") % {"where": where}
    if isinstance(value, str):
        if "{{" in value or "{%" in value:
            try:
                _template(value)
            except LiquidError as err:
                return _("%(where)s: not valid Liquid: %(value)s") % {
                    "where": where,
                    "value": str(err).splitlines()[0],
                }
        return ""
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := _liquid_problem(v, f"{where}.{k}", depth + 1))), "")
    if isinstance(value, list):
        return next(
            (p for i, v in enumerate(value) if (p := _liquid_problem(v, f"{where}[{i}]", depth + 1))), ""
        )
    return ""


def render_body(value: Any, context: dict[str, Any]) -> Any:
    """The body with Liquid in its strings rendered for one subscriber (keys are left as written)."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        return _template(value).render(**context)
    if isinstance(value, dict):
        return {k: render_body(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_body(v, context) for v in value]
    return value


def _settings(data: dict[str, Any]) -> tuple[int, int]:
    timeout = data.get("timeout_seconds", DEFAULT_TIMEOUT)
    retries = data.get("retries", DEFAULT_RETRIES)
    timeout = timeout if isinstance(timeout, int) and 1 <= timeout <= MAX_TIMEOUT else DEFAULT_TIMEOUT
    retries = retries if isinstance(retries, int) and 0 <= retries <= MAX_RETRIES else DEFAULT_RETRIES
    return timeout, retries


def budget(data: dict[str, Any]) -> timedelta:
    """How long all attempts of one dispatch may take, with slack: the step's deadline."""
    timeout, retries = _settings(data)
    return timedelta(seconds=timeout * (retries + 1) + sum(BACKOFF[:retries])) + SLACK


# --- the step ----------------------------------------------------------------------------------


def idempotency_key(run: JourneyRun, step_id: str) -> str:
    return f"{run.public_id}:{step_id}"


class WebhookStep:
    type = "webhook"
    label = gettext_lazy("Webhook")
    channel = ""

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        return {"success": data.get("success"), "failure": data.get("failure")}

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]:
        step = str(data.get("id"))
        problems = []
        url_problem = _shape_problem(data.get("url"))
        if url_problem:
            problems.append(Problem(step, "url", url_problem))
        headers = data.get("headers")
        if headers is not None:
            if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and k.strip() for k, v in headers.items()
            ):
                problems.append(
                    Problem(step, "headers", _('Headers are names and texts: {"X-Token": "..."}.'))
                )
            elif not all(_HEADER_NAME.fullmatch(k) and not _BREAK.search(v) for k, v in headers.items()):
                # requests refuses these only at call time (and the attempt would be retried as a
                # network error): a name is an HTTP token, a value has no line break.
                message = "A header name is letters, digits and -; no line breaks."
                problems.append(Problem(step, "headers", message))
            elif forbidden := sorted(k for k in headers if k.lower() in FORBIDDEN_HEADERS):
                problems.append(
                    Problem(
                        step, "headers", _("%(value)s cannot be set here.") % {"value": ", ".join(forbidden)}
                    )
                )
        body = data.get("body")
        if body is not None:
            try:
                size = len(json.dumps(body).encode())
            except (TypeError, ValueError):
                size = -1
            if size < 0:
                problems.append(Problem(step, "body", _("The body must be JSON.")))
            elif size > MAX_BODY:
                problems.append(
                    Problem(step, "body", _("At most %(value)s KB.") % {"value": MAX_BODY // 1024})
                )
            elif problem := _liquid_problem(body, "body"):
                problems.append(Problem(step, "body", problem))
        timeout = data.get("timeout_seconds", DEFAULT_TIMEOUT)
        if not (isinstance(timeout, int) and not isinstance(timeout, bool) and 1 <= timeout <= MAX_TIMEOUT):
            problems.append(
                Problem(
                    step,
                    "timeout_seconds",
                    _("Whole seconds from 1 to %(max_timeout)s.") % {"max_timeout": MAX_TIMEOUT},
                )
            )
        retries = data.get("retries", DEFAULT_RETRIES)
        if not (isinstance(retries, int) and not isinstance(retries, bool) and 0 <= retries <= MAX_RETRIES):
            problems.append(
                Problem(step, "retries", _("From 0 to %(max_retries)s.") % {"max_retries": MAX_RETRIES})
            )
        return problems

    def run(self, visit: Visit) -> Outcome:
        detail = visit.record.detail
        result = detail.get("result")
        if isinstance(result, dict):
            return Go("success" if result.get("ok") else "failure")
        data = visit.step.data
        if "body" not in detail:
            from .whatsapp import render_context

            context = render_context(visit) or campaign_bindings.EMPTY_CONTEXT
            try:
                body = render_body(data.get("body", {}), context)
            except LiquidError as err:
                return self._finish_now(visit, f"The body could not be rendered: {str(err).splitlines()[0]}")
            detail["body"] = body
            if visit.dry_run:
                detail.update(outcome="would_post", url=data.get("url"))
                detail["result"] = {"ok": True, "dry_run": True}
                _save(visit)
                return Go("success")
            return self._dispatch(visit)
        deadline = parse_datetime(detail.get("deadline") or "")
        if deadline is not None and visit.now < deadline:
            return Wait(deadline)
        if detail.get("dispatches", 0) < MAX_DISPATCHES:
            return self._dispatch(visit)
        return self._finish_now(visit, "No answer was recorded: the call did not complete in time.")

    def _dispatch(self, visit: Visit) -> Outcome:
        detail = visit.record.detail
        deadline = visit.now + budget(visit.step.data)
        detail.update(dispatches=detail.get("dispatches", 0) + 1, deadline=deadline.isoformat())
        _save(visit)
        record_id = visit.record.pk
        transaction.on_commit(lambda: call_webhook.send(record_id))
        return Wait(deadline)

    def _finish_now(self, visit: Visit, error: str) -> Outcome:
        visit.record.detail["result"] = {"ok": False, "error": error}
        _save(visit)
        return Go("failure")


def _save(visit: Visit) -> None:
    if visit.record.pk:
        visit.record.save(update_fields=["detail"])


register(WebhookStep())


# --- the call (outside any transaction) ------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    ok: bool
    retryable: bool
    status: int | None = None
    text: str = ""
    error: str = ""

    def as_dict(self, attempt: int, at: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "attempts": attempt, "at": at.isoformat()}
        if self.status is not None:
            out["status"] = self.status
        if self.text:
            out["answer"] = self.text
        if self.error:
            out["error"] = self.error
        return out


def _session(addresses: tuple[str, ...]) -> requests.Session:
    """A fresh session per call that connects only to the checked ``addresses`` (a seam for tests:
    they mount a fake adapter)."""
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: the SSRF check is about the real target
    if addresses:
        pinned = _PinnedAdapter(addresses)
        session.mount("http://", pinned)
        session.mount("https://", pinned)
    return session


def post(url: str, *, body: Any, headers: dict[str, str], key: str, timeout: int) -> Answer:
    """One attempt. Never raises: the answer says whether another attempt may help."""
    try:
        addresses = check_url(url)
    except UnsafeURL as err:
        return Answer(ok=False, retryable=False, error=str(err))
    payload = json.dumps(body, separators=(",", ":"), default=str).encode()
    sent_headers = {
        **{k: v for k, v in headers.items() if k.lower() not in FORBIDDEN_HEADERS},
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        "User-Agent": USER_AGENT,
    }
    try:
        with _session(addresses) as session:
            response = session.post(
                url.strip(),
                data=payload,
                headers=sent_headers,
                timeout=(min(timeout, 5), timeout),
                allow_redirects=False,
                stream=True,
            )
            # Only the start of the answer is kept: a receiver answering gigabytes costs nothing.
            chunks, size = [], 0
            for chunk in response.iter_content(chunk_size=4096):
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_ANSWER * 4:
                    break
            response.close()
            text = b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")[:MAX_ANSWER]
    except requests.Timeout:
        return Answer(ok=False, retryable=True, error=f"No answer within {timeout} s.")
    except requests.RequestException as err:
        return Answer(ok=False, retryable=True, error=f"{type(err).__name__}: could not reach the host.")
    status = response.status_code
    if 200 <= status < 300:
        return Answer(ok=True, retryable=False, status=status, text=text)
    if 300 <= status < 400:
        target = response.headers.get("Location", "")
        return Answer(
            ok=False, retryable=False, status=status, error=f"Redirects are not followed (to {target[:200]})."
        )
    return Answer(
        ok=False,
        retryable=status >= 500 or status in RETRYABLE_STATUS,
        status=status,
        text=text,
        error=f"The host answered {status}.",
    )


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=60_000)
def call_webhook(visit_id: int) -> None:
    """Make the next attempt of a webhook visit. Safe to run twice: a visit with a result is left alone,
    and the receiver dedupes by the Idempotency-Key header."""
    attempt_webhook(visit_id)


def attempt_webhook(visit_id: int, *, now: datetime | None = None) -> Answer | None:
    from ..versions import definition_of

    record = JourneyRunStep.objects.select_related("run__journey").filter(pk=visit_id).first()
    if record is None or "result" in record.detail:
        return None
    run = record.run
    if run.state == RunState.DONE or run.step_id != record.step_id or run.dry_run:
        return None
    step = definition_of(run.journey, run.version).steps.get(record.step_id)
    if step is None:
        return None
    data = step.data
    timeout, retries = _settings(data)
    attempt = int(record.detail.get("attempts", 0)) + 1
    headers = data.get("headers") if isinstance(data.get("headers"), dict) else {}
    answer = post(
        str(data.get("url") or ""),
        body=record.detail.get("body", {}),
        headers=headers,
        key=idempotency_key(run, record.step_id),
        timeout=timeout,
    )
    at = now or timezone.now()
    if answer.ok or not answer.retryable or attempt > retries:
        _finish(record.pk, run.pk, answer.as_dict(attempt, at), at)
    else:
        JourneyRunStep.objects.filter(pk=record.pk).update(detail={**record.detail, "attempts": attempt})
        call_webhook.send_with_options(args=(visit_id,), delay=BACKOFF[attempt - 1] * 1000)
    return answer


def _finish(record_id: int, run_id: int, result: dict[str, Any], now: datetime) -> None:
    with transaction.atomic():
        record = JourneyRunStep.objects.select_for_update().filter(pk=record_id).first()
        if record is None or "result" in record.detail:
            return  # a second dispatch finished first
        record.detail = {**record.detail, "result": result, "attempts": result["attempts"]}
        record.save(update_fields=["detail"])
        # Only the timer moves, and only while the run still waits here: the engine advances it.
        woken = JourneyRun.objects.filter(
            pk=run_id, state=RunState.WAITING, step_id=record.step_id, wake_at__gt=now
        ).update(wake_at=now)
    if woken:
        from .. import engine  # late: the engine imports the step registry this module is part of

        engine.kick()
