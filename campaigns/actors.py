"""Sending actors. Ids in; a row is claimed before it is sent, so running twice sends once."""

from __future__ import annotations

import dramatiq

from . import channel_sending, progress, sending


@dramatiq.actor(queue_name="send", max_retries=3, min_backoff=1_000, max_backoff=30_000, time_limit=300_000)
def send_messages(message_ids: list[int], leased_until: str | None = None) -> None:
    """One batch: claim, decide, render, send, write back. A retry only re-claims rows still queued."""
    sending.send_batch(message_ids, leased_until)


# The dispatcher ticks every second: a tick older than a few seconds is dropped (the next one does its
# work), so a backlog of ticks after an outage does not run a thousand dispatches in a row.
@dramatiq.actor(queue_name="default", max_retries=0, time_limit=60_000, max_age=10_000)
def dispatch_messages() -> None:
    sending.dispatch()


@dramatiq.actor(queue_name="send", max_retries=3, min_backoff=1_000, max_backoff=30_000, time_limit=300_000)
def send_channel_messages(message_ids: list[int], leased_until: str | None = None) -> None:
    """One email or push batch: claim, decide, hand to the channel's transport, write back."""
    channel_sending.send_batch(message_ids, leased_until)


# As dispatch_messages: a stale tick is dropped, the next one does its work.
@dramatiq.actor(queue_name="default", max_retries=0, time_limit=60_000, max_age=10_000)
def dispatch_channel_messages() -> None:
    channel_sending.dispatch()


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=60_000)
def sweep_stuck_messages() -> None:
    sending.sweep_stuck()
    progress.complete_finished()
