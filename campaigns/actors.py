"""Sending actors. Ids in; a row is claimed before it is sent, so running twice sends once."""

from __future__ import annotations

from typing import Any

import dramatiq

from . import channel_sending, progress, sending

# A batch: a retry only re-claims rows still queued (a row is claimed once).
BATCH: dict[str, Any] = {
    "queue_name": "send",
    "max_retries": 3,
    "min_backoff": 1_000,
    "max_backoff": 30_000,
    "time_limit": 300_000,
}
# The dispatchers tick every second: a tick older than a few seconds is dropped (the next one does its
# work), so a backlog of ticks after an outage does not run a thousand dispatches in a row.
TICK: dict[str, Any] = {"queue_name": "default", "max_retries": 0, "time_limit": 60_000, "max_age": 10_000}


@dramatiq.actor(**BATCH)
def send_messages(message_ids: list[int], leased_until: str | None = None) -> None:
    """One WhatsApp batch: claim, decide, render, send, write back."""
    sending.send_batch(message_ids, leased_until)


@dramatiq.actor(**TICK)
def dispatch_messages() -> None:
    sending.dispatch()


@dramatiq.actor(**BATCH)
def send_channel_messages(message_ids: list[int], leased_until: str | None = None) -> None:
    """One email or push batch: claim, decide, hand to the channel's transport, write back."""
    channel_sending.send_batch(message_ids, leased_until)


@dramatiq.actor(**TICK)
def dispatch_channel_messages() -> None:
    channel_sending.dispatch()


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=60_000)
def sweep_stuck_messages() -> None:
    sending.sweep_stuck()
    progress.complete_finished()
