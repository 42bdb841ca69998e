"""The actor that starts launched campaigns: the scheduler enqueues it every few seconds, and a
"send now" launch right after its commit. Nothing in: ``start_due`` finds what is due, and
``materialize.pending`` writes the outbox rows that running campaigns need next."""

from __future__ import annotations

import dramatiq

from . import lifecycle, materialize


# No retries: the next tick is the retry. A million-row snapshot takes seconds, hence the time limit.
@dramatiq.actor(queue_name="default", max_retries=0, time_limit=600_000)
def start_due_campaigns() -> None:
    lifecycle.start_due()
    # Less than the tick's interval: two runs of this actor seldom overlap (they could: chunks
    # take turns on the campaign row's lock).
    materialize.pending(budget_seconds=4.0)
