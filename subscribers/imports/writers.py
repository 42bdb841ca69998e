"""Where validated chunks go: applied inline, or on writer threads while the reader validates."""

from __future__ import annotations

import queue
import threading

from django.db import connections

from .applier import Aborted, Applier
from .reports import ReportWriter
from .validation import Chunk


class InlineSink:
    def __init__(self, applier: Applier, report: ReportWriter):
        self.applier, self.report = applier, report

    def put(self, chunk: Chunk) -> None:
        self.applier.apply(chunk, self.report)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class ThreadedSink:
    """Applies chunks on writer threads (each with its own DB connection) while the reading
    thread validates the next ones.

    Validation is Python work and applying is mostly database work, so they overlap; with two
    writers PostgreSQL works on two chunks at once (foreign key checks make it the bottleneck).
    The queue holds a few chunks; an error on a writer stops the reader at its next put.
    """

    def __init__(self, applier: Applier, report: ReportWriter, writers: int):
        self.applier, self.report = applier, report
        self.queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=writers + 1)
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._work, name=f"import-writer-{n}", daemon=True)
            for n in range(writers)
        ]
        for thread in self.threads:
            thread.start()

    def _work(self) -> None:
        try:
            while (chunk := self.queue.get()) is not None:
                if self.error is None:
                    try:
                        self.applier.apply(chunk, self.report)
                    except BaseException as exc:  # handed to the reading thread
                        with self.lock:
                            if self.error is None or isinstance(self.error, Aborted):
                                self.error = exc
                        self.applier.turns.fail()
        finally:
            connections.close_all()

    def put(self, chunk: Chunk) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(chunk)

    def close(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        self.threads = []
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        if not self.threads:
            return
        self.error = self.error or Aborted()
        self.applier.turns.fail()
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        self.threads = []
