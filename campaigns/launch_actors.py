"""The actor that starts launched campaigns: the scheduler enqueues it every few seconds, and a
"send now" launch right after its commit. Ids in, nothing else: ``start_due`` finds what is due."""

from __future__ import annotations

import dramatiq

from . import lifecycle


# No retries: the next tick is the retry. A million-row snapshot takes seconds, hence the time limit.
@dramatiq.actor(queue_name="default", max_retries=0, time_limit=600_000)
def start_due_campaigns() -> None:
    lifecycle.start_due()
