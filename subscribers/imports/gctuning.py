"""Fewer cyclic garbage collections while imports run in this process."""

from __future__ import annotations

import gc
import threading


class _FewerCollections:
    """Run the cyclic garbage collector far less often while imports run in this process.

    An import allocates a few container objects per cell, many of which live until their chunk
    commits; with the default thresholds (a collection every 700 allocations) the collector
    ran so often, rescanning so many live objects, that it took a third of the import's Python
    time (31 -> 23 CPU-seconds for a million rows; a re-import went from 37 to 23 s). Imports
    make no reference cycles of their own, and collections still happen, only less often.
    Thresholds are per process: other jobs in the same worker get them too meanwhile, which
    costs them nothing but later collections. With two imports in one worker, the defaults
    come back when the last one ends.
    """

    THRESHOLD = (50_000, 20, 100)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.previous: tuple[int, ...] = gc.get_threshold()

    def __enter__(self) -> None:
        with self.lock:
            if self.running == 0:
                self.previous = gc.get_threshold()
                gc.set_threshold(*self.THRESHOLD)
            self.running += 1

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.running -= 1
            if self.running == 0:
                gc.set_threshold(*self.previous)


_fewer_collections = _FewerCollections()
