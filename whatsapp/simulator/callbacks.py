"""Webhook callbacks to our connections, signed and delivered like Meta does (reference 4.2-4.8).

Every webhook is serialized once when it is queued (JSON with non-ASCII escaped, compact, like
Meta), stored in the outbox table of the state file with the time it is due, and at delivery
signed with the connection's app secret *of that moment* over exactly those bytes, then POSTed to
``/webhooks/whatsapp/<public_id>/`` with ``X-Hub-Signature-256``. Anything but HTTP 200 is retried
with exponential backoff (1 s, 2 s, 4 s ... capped at 5 minutes, 12 attempts: a compressed version
of Meta's 7 days).

Delivery runs on background threads of whichever process serves the simulator (``manage.py
serve``, ``runsimulator``, each granian worker): a thread pool started on first use claims due
rows with a lease, so several processes share one outbox without sending a row twice. This works
the same with the in-process broker and with Redis, and needs no Dramatiq worker to import the
simulator. Tests turn the threads off (``SIMULATOR_DELIVER_CALLBACKS=false``) and call
``deliver_due(transport=...)`` themselves.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from django.conf import settings
from django.db import close_old_connections, connection
from django.urls import get_urlconf, reverse

from whatsapp import signature
from whatsapp.models import WhatsAppAccount

from . import config, store

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 12
BATCH = 20
Transport = Callable[[str, bytes, dict[str, str]], int]


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()


def webhook_url(account: WhatsAppAccount, base: str) -> str:
    return base.rstrip("/") + _webhook_path(str(account.public_id), get_urlconf() or settings.ROOT_URLCONF)


@functools.lru_cache(maxsize=1024)
def _webhook_path(public_id: str, urlconf: str) -> str:
    # reverse() on every simulated send cost more than the rest of building its webhook rows.
    return reverse("whatsapp_webhook", args=[public_id], urlconf=urlconf)


def envelope(account: WhatsAppAccount, field: str, value: dict[str, Any], *, with_time: bool = False) -> dict:
    entry: dict[str, Any] = {"id": account.waba_id, "changes": [{"value": value, "field": field}]}
    if with_time:
        entry["time"] = int(time.time())
    return {"object": "whatsapp_business_account", "entry": [entry]}


def metadata(account: WhatsAppAccount) -> dict[str, str]:
    return {"display_phone_number": account.display_phone_number, "phone_number_id": account.phone_number_id}


def callback_row(
    account: WhatsAppAccount,
    base: str,
    payload: dict,
    *,
    due_at: float,
    kind: str,
    wamid: str = "",
    url: str = "",
) -> dict[str, Any]:
    return {
        "due_at": due_at,
        "account": str(account.public_id),
        "url": url or webhook_url(account, base),
        "body": encode(payload),
        "kind": kind,
        "wamid": wamid,
    }


def queue(rows: list[dict[str, Any]], conn=None) -> None:
    """Add rows to the outbox (inside the caller's state transaction when ``conn`` is given)."""
    store.add_callbacks(rows, conn)
    if conn is None:
        wake()


def queue_template_status(
    account: WhatsAppAccount, base: str, template: dict, *, event: str, reason: str, info: dict, due_at: float
) -> None:
    value: dict[str, Any] = {
        "event": event,
        "message_template_id": int(template["id"]),
        "message_template_name": template["name"],
        "message_template_language": template["language"],
        "reason": reason,
        "message_template_category": template["category"],
    }
    if event == "REJECTED" and info:
        value["rejection_info"] = info
    elif info:
        value["other_info"] = info
    payload = envelope(account, "message_template_status_update", value, with_time=True)
    queue([callback_row(account, base, payload, due_at=due_at, kind="template")])


# --- delivery ----------------------------------------------------------------------------------
_accounts: dict[str, tuple[float, WhatsAppAccount | None]] = {}


def _account(public_id: str) -> WhatsAppAccount | None:
    hit = _accounts.get(public_id)
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    account = WhatsAppAccount.objects.filter(public_id=public_id).first()
    _accounts[public_id] = (now + 2.0, account)
    return account


_http = threading.local()


def http_transport(url: str, body: bytes, headers: dict[str, str]) -> int:
    session = getattr(_http, "session", None)
    if session is None:
        session = _http.session = requests.Session()
    return session.post(url, data=body, headers=headers, timeout=(3, 10)).status_code


def deliver_due(*, now: float | None = None, limit: int = BATCH, transport: Transport | None = None) -> int:
    """POST the due webhooks (at most ``limit``); returns how many were attempted."""
    transport = transport or http_transport
    now = time.time() if now is None else now
    rows = store.claim_callbacks(now, limit)
    if rows and transport is http_transport:
        close_old_connections()  # a long-lived delivery thread, like a request: drop broken connections
    for row in rows:
        account = _account(row["account"])
        if account is None:
            gone = "connection removed"
            store.callback_failed(row["id"], attempts=row["attempts"] + 1, error=gone, retry_at=None, at=now)
            continue
        body = bytes(row["body"])
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature.sign(body, account.app_secret),
            "User-Agent": "facebookexternalua",
        }
        try:
            status = transport(row["url"], body, headers)
            error = "" if status == 200 else f"HTTP {status}"
        except Exception as exc:  # any transport failure is retried, like Meta does
            error = f"{type(exc).__name__}: {exc}"
        done_at = max(now, time.time())
        if not error:
            store.callback_done(row["id"], done_at)
            if row["kind"] == "inbound" and row["wamid"]:
                message = store.get_message(row["wamid"])
                if message is not None and message["delivered_at"] is None:
                    store.update_message(row["wamid"], delivered_at=done_at)
            continue
        attempts = row["attempts"] + 1
        retry_at = None if attempts >= MAX_ATTEMPTS else done_at + min(300.0, 2.0 ** (attempts - 1))
        logger.info(
            "simulator webhook %s to %s failed (%s), attempt %s", row["kind"], row["url"], error, attempts
        )
        store.callback_failed(row["id"], attempts=attempts, error=error, retry_at=retry_at, at=done_at)
        if retry_at is None and row["kind"] == "inbound" and row["wamid"]:
            store.update_message(row["wamid"], failed_at=done_at, error_title=error)
    return len(rows)


_pump_lock = threading.Lock()
_pump_pid: int | None = None
_pump_threads: list[threading.Thread] = []
_wake_event = threading.Event()
_stop_event = threading.Event()


def wake() -> None:
    _wake_event.set()


def _pump() -> None:
    while not _stop_event.is_set():
        wait = 0.25
        try:
            if config.deliver_callbacks():
                if deliver_due():
                    continue
                due = store.next_callback_due()
                if due is not None:
                    wait = min(0.25, max(0.005, due - time.time()))
        except Exception:
            logger.exception("simulator webhook delivery failed")
            wait = 1.0
        # Idle: hold no database connection (a test database must stay droppable, and PostgreSQL
        # need not keep idle sessions for a dev tool).
        connection.close()
        _wake_event.wait(wait)
        _wake_event.clear()
    session = getattr(_http, "session", None)
    if session is not None:
        session.close()  # no idle keep-alive connection outlives the thread
    connection.close()
    store.close()


def ensure_pump() -> None:
    """Start this process's delivery threads once (again after a fork)."""
    global _pump_pid
    if not config.deliver_callbacks() or _pump_pid == os.getpid():
        return
    with _pump_lock:
        if _pump_pid == os.getpid():
            return
        _stop_event.clear()
        _pump_threads.clear()
        for n in range(config.callback_threads()):
            thread = threading.Thread(target=_pump, name=f"simulator-webhooks-{n}", daemon=True)
            thread.start()
            _pump_threads.append(thread)
        _pump_pid = os.getpid()


def stop_pump(timeout: float = 5.0) -> None:
    """Stop the delivery threads (tests; a server just exits). Undelivered webhooks stay queued."""
    global _pump_pid
    with _pump_lock:
        _stop_event.set()
        _wake_event.set()
        for thread in _pump_threads:
            thread.join(timeout)
        _pump_threads.clear()
        _pump_pid = None


def maybe_duplicate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Meta sometimes delivers the same webhook twice; ``SIMULATOR_DUPLICATE_RATE`` does so on purpose."""
    rate = config.duplicate_rate()
    if not rate:
        return rows
    out = []
    for row in rows:
        out.append(row)
        if random.random() < rate:  # noqa: S311 - a simulation, not security
            out.append({**row, "due_at": row["due_at"] + 0.05})
    return out
