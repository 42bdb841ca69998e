"""The webhook endpoint Meta calls: /webhooks/whatsapp/<connection-uuid>/ (design section 5)."""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import intake, signature
from .actors import process_webhooks
from .models import WhatsAppAccount

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
    header = request.headers.get("X-Hub-Signature-256", "")
    body = request.body
    if not header:
        return HttpResponse("Missing X-Hub-Signature-256.", status=401, content_type="text/plain")
    if not signature.is_valid(body, header, conn.app_secret):
        return HttpResponse("Invalid signature.", status=403, content_type="text/plain")
    row = intake.delivery_for(account_id=conn.account_id, project_id=conn.project_id, body=body)
    intake.store_delivery(row)
    # The row is committed; processing happens in a worker.
    transaction.on_commit(lambda: kick(conn.account_id))
    return HttpResponse("OK", content_type="text/plain")


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
