"""Actors of the entries: segment firings (scheduled every 5 s) and API start/drop requests.

Ids in, nothing else; each is safe to run twice (a firing and a request are idempotent by their
entry keys and their row's status).
"""

from __future__ import annotations

import dramatiq

from . import segment_entry, start


# No retries: the next tick (5 s) is the retry. A million-row entry takes seconds.
@dramatiq.actor(queue_name="default", max_retries=0, time_limit=600_000)
def fire_segment_entries() -> None:
    segment_entry.fire_due()


# Retried with backoff: a request left queued by a failure is carried out by the retry.
@dramatiq.actor(queue_name="default", max_retries=5, min_backoff=1_000, time_limit=600_000)
def carry_out_start_request(request_id: str) -> None:
    start.carry_out(request_id=request_id)
