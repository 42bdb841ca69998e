"""Group commit of accepted sends: one SQLite transaction for all the sends that arrive meanwhile.

With ``SIMULATOR_GROUP_COMMIT=true`` (off by default) a request thread does not open its own write
transaction for an accepted send: it hands the send to this process's committer thread and waits.
The committer takes every send queued so far (at most ``MAX_BATCH``), writes them in one
transaction (``store.accept_sends``: slot, handset, message, webhooks, in arrival order) and only
then wakes their threads, which answer 200 or 130429. So the guarantee is the one-transaction
path's: **a send is in the ledger (committed, WAL with ``synchronous = NORMAL``) before its answer
leaves**; a crash of the process loses only sends that were never answered, and a failed
transaction fails every send of it (the clients see an error, nothing of them is stored).

Nothing waits to fill a batch: an idle committer takes a lone send at once, so a single call is
as fast as before, and under load a batch is what queued while the previous one committed.
"""

from __future__ import annotations

import os
import queue
import threading

from . import store

MAX_BATCH = 512  # bounds one transaction (and the lock held against the other process)


class _Pending:
    __slots__ = ("accepted", "done", "error", "send")

    def __init__(self, send: store.Send) -> None:
        self.send = send
        self.done = threading.Event()
        self.accepted = False
        self.error: BaseException | None = None


_lock = threading.Lock()
_committer: tuple[int, queue.SimpleQueue[_Pending]] | None = None


def _queue() -> queue.SimpleQueue[_Pending]:
    global _committer
    committer = _committer
    if committer is not None and committer[0] == os.getpid():
        return committer[1]
    with _lock:
        if _committer is None or _committer[0] != os.getpid():  # a fork gets a committer of its own
            pending: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
            threading.Thread(target=_run, args=(pending,), name="simulator-commit", daemon=True).start()
            _committer = (os.getpid(), pending)
        return _committer[1]


def _run(pending: queue.SimpleQueue[_Pending]) -> None:
    while True:
        batch = [pending.get()]
        while len(batch) < MAX_BATCH:
            try:
                batch.append(pending.get_nowait())
            except queue.Empty:
                break
        try:
            results = store.accept_sends([p.send for p in batch])
        except BaseException as exc:  # the transaction rolled back: none of these sends was accepted
            for p in batch:
                p.error = exc
        else:
            for p, accepted in zip(batch, results, strict=True):
                p.accepted = accepted
        for p in batch:
            p.done.set()


def submit(send: store.Send) -> bool:
    """``store.accept_sends([send])[0]``, committed together with the sends queued meanwhile."""
    item = _Pending(send)
    _queue().put(item)
    item.done.wait()
    if item.error is not None:
        raise item.error
    return item.accepted
