"""Sending actors. Ids in; a message is claimed before it is sent, so running twice sends once."""

from __future__ import annotations

import dramatiq

from . import services


@dramatiq.actor(queue_name="send", max_retries=5, min_backoff=2_000, max_backoff=120_000, time_limit=120_000)
def deliver_message(message_id: int) -> None:
    services.deliver(message_id)
    # Transient errors re-queue the row and raise, so the Retries middleware runs us again;
    # the retry re-claims the row only if it is still queued.


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=60_000)
def sweep_stuck_messages() -> None:
    services.sweep_stuck()
    services.requeue_waiting()
