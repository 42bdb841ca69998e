"""The worker processes' heap: what was loaded at boot is frozen out of the garbage collector's scans."""

from __future__ import annotations

import gc
import logging

import dramatiq

logger = logging.getLogger(__name__)


class FreezeBootHeap(dramatiq.Middleware):
    """``gc.freeze()`` once a ``rundramatiq`` process has imported everything, before its threads run.

    A full (generation 2) collection walks every container object of the process: Django, the
    libraries, the URL and template machinery, about 170,000 that never die. In a sender process
    on the busy benchmark box that took 85-250 ms a few times a minute, holding the GIL, so the
    event loop that posts at reserved slots stopped and then let the calls it owed out together: a
    burst that Meta answers with 130429 (docs/benchmarks.md). Frozen objects are skipped by every
    collection; what the jobs allocate later is collected as before. Only in worker processes
    started by the dramatiq command (``after_process_boot``): ``manage.py serve`` and the tests are
    left alone.
    """

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        gc.collect()  # nothing already garbage is kept forever
        gc.freeze()
        logger.debug("froze %s objects of the booted worker process", gc.get_freeze_count())
