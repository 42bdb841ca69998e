"""Long-running processes freeze their boot heap out of the garbage collector's scans."""

from __future__ import annotations

import gc
import logging

import dramatiq

logger = logging.getLogger(__name__)


def freeze_boot_heap() -> int:
    """``gc.freeze()`` what is loaded now, after collecting what is already garbage; the frozen count.

    A full (generation 2) collection walks every container object of the process: Django, the
    libraries, the URL and template machinery, about 170,000 that never die. On the busy benchmark
    box that took 85-250 ms a few times a minute, holding the GIL: a sender's event loop that posts
    at reserved slots stopped and then let the calls it owed out together, and the simulator's loop
    stopped and then stamped the sends that waited meanwhile together; either way a burst in one
    second, answered with 130429 (docs/benchmarks.md). Frozen objects are skipped by every
    collection; what the process allocates later is collected as before.
    """
    gc.collect()  # nothing already garbage is kept forever
    gc.freeze()
    return gc.get_freeze_count()


class FreezeBootHeap(dramatiq.Middleware):
    """``freeze_boot_heap`` in a ``rundramatiq`` process once it has loaded the actor modules, just
    before its worker threads start.

    ``after_process_boot`` (which only the dramatiq command emits, after setting Django up) marks the
    process; ``before_worker_boot`` (after the actor modules are imported) freezes it. ``manage.py
    serve`` and the tests start workers without a process boot, and are left alone.
    """

    def __init__(self) -> None:
        self.booted = False

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        self.booted = True

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.booted:
            logger.debug("froze %s objects of the booted worker process", freeze_boot_heap())
