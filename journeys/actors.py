"""Journey actors. The scheduler sends ``advance_journeys`` every second; ``engine.kick`` sends it
after a commit that made a run due now. Safe to run twice or in many workers at once: claims never
overlap (engine.py)."""

from __future__ import annotations

import time

import dramatiq

from . import engine

# One message drains due runs for a few seconds, then leaves the rest to the next tick.
DRAIN_SECONDS = 5.0


# A tick older than a few seconds is dropped (the next one does its work), so a backlog of ticks
# after an outage does not run a thousand drains in a row.
@dramatiq.actor(queue_name="default", max_retries=0, time_limit=60_000, max_age=10_000)
def advance_journeys() -> None:
    drain()


def drain(*, seconds: float = DRAIN_SECONDS, limit: int = engine.BATCH) -> int:
    """Tick until no run is due or ``seconds`` have passed; how many runs were claimed."""
    deadline = time.monotonic() + seconds
    total = 0
    while True:
        claimed = engine.tick(limit=limit)
        total += claimed
        if claimed < limit or time.monotonic() >= deadline:
            return total
