"""The webhook endpoint Meta calls: /webhooks/whatsapp/<connection-uuid>/ (design section 5)."""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from dataclasses import dataclass

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import intake, signature
from .actors import process_webhooks
from .models import WhatsAppAccount

logger = logging.getLogger(__name__)
CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class _Connection:
    account_id: int
    project_id: int
    app_secret: str
    verify_token: str
    expires: float


_cache: dict[str, _Connection] = {}
_cache_lock = threading.Lock()


def _connection(public_id: str) -> _Connection | None:
    """The account behind a webhook URL, cached briefly: Meta may call thousands of times a second."""
    now = time.monotonic()
    hit = _cache.get(public_id)
    if hit is not None and hit.expires > now:
        return hit
    account = (
        WhatsAppAccount.objects.filter(public_id=public_id)
        .only("id", "project_id", "app_secret", "verify_token")
        .first()
    )
    if account is None:
        return None
    conn = _Connection(
        account.pk, account.project_id, account.app_secret, account.verify_token, now + CACHE_SECONDS
    )
    with _cache_lock:
        _cache[public_id] = conn
    return conn


def forget(public_id: str) -> None:
    """Drop a cached connection (after its secrets change)."""
    with _cache_lock:
        _cache.pop(str(public_id), None)


@csrf_exempt
def whatsapp_webhook(request: HttpRequest, connection_id) -> HttpResponse:
    conn = _connection(str(connection_id))
    if conn is None:
        return HttpResponse("Unknown connection.", status=404, content_type="text/plain")
    if request.method == "GET":
        # Verification handshake (reference 4.1): echo hub.challenge when the token matches.
        if request.GET.get("hub.mode") == "subscribe" and hmac.compare_digest(
            request.GET.get("hub.verify_token", "").encode(), conn.verify_token.encode()
        ):
            return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain")
        return HttpResponse("Verification failed.", status=403, content_type="text/plain")
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    status, text = accept(conn, request.body, request.headers.get("X-Hub-Signature-256", ""))
    return HttpResponse(text, status=status, content_type="text/plain")


def accept(conn: _Connection, body: bytes, header: str) -> tuple[int, str]:
    """Check a POSTed body's signature and store it durably. Returns (HTTP status, text)."""
    if not header:
        return 401, "Missing X-Hub-Signature-256."
    if not signature.is_valid(body, header, conn.app_secret):
        return 403, "Invalid signature."
    row = intake.delivery_for(account_id=conn.account_id, project_id=conn.project_id, body=body)
    intake.store_delivery(row)
    # The row is committed (unless a caller's transaction is still open); processing happens in
    # a worker. Not transaction.on_commit() unconditionally: asking for autocommit opens a
    # database connection, and the fast path's request threads never need one (with 32
    # threads per process they exhausted PostgreSQL's max_connections).
    if connection.in_atomic_block:
        transaction.on_commit(lambda: kick(conn.account_id))
    else:
        kick(conn.account_id)
    return 200, "OK"


MAX_BODY = 5 * 1024 * 1024
_POST_PATH = re.compile(
    r"^/webhooks/whatsapp/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/$"
)


def fast_path(django_app):
    """WSGI wrapper: webhook POSTs skip Django's middleware stack.

    Sessions, auth, messages, CSRF, CSP and login throttling do nothing for Meta's
    calls but cost most of the time of a request; at Meta's top tier (3,000
    webhooks/s) that matters. Everything else, and webhook GETs, go to Django.
    """

    def application(environ, start_response):
        match = _POST_PATH.match(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") != "POST":
            return django_app(environ, start_response)
        try:
            status, text = _fast_accept(match.group(1), environ)
        except Exception:
            logger.exception("webhook fast path failed")
            status, text = 500, "Error."
        finally:
            # A request thread touches the database only to refresh the connection cache (and,
            # without group commit, to insert): keeping a connection open per thread would hold
            # one per blocking thread of every server process.
            connection.close()
        body = text.encode()
        start_response(
            f"{status} {_REASONS.get(status, 'Error')}",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return application


_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    413: "Payload Too Large", 500: "Internal Server Error",
}  # fmt: skip


def _fast_accept(connection_id: str, environ) -> tuple[int, str]:
    conn = _connection(connection_id)
    if conn is None:
        return 404, "Unknown connection."
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 400, "Bad Content-Length."
    if length > MAX_BODY:
        return 413, "Body too large."
    body = environ["wsgi.input"].read(length) if length else b""
    return accept(conn, body, environ.get("HTTP_X_HUB_SIGNATURE_256", ""))


KICK_WINDOW = 0.1  # seconds during which further deliveries ride on the same kick
KICK_DELAY_MS = 200  # > KICK_WINDOW + commit time: the kick finds every delivery of its window
_kicks: dict[int, float] = {}


def kick(account_id: int) -> None:
    """Ask a worker to process the account's deliveries, at most once per window per process.

    At thousands of webhooks a second, one broker message per webhook would cost
    more than the webhooks. The kick is delayed past the end of its window, so
    every delivery acknowledged in the window is committed when the worker looks.
    The scheduler's sweep is the safety net for a lost kick.
    """
    now = time.monotonic()
    with _cache_lock:
        if _kicks.get(account_id, 0.0) > now:
            return
        _kicks[account_id] = now + KICK_WINDOW
    process_webhooks.send_with_options(args=(account_id,), delay=KICK_DELAY_MS)
