"""The standalone simulator's database work on a few threads of its own.

Under granian every request thread would open (and keep) its own PostgreSQL connection: 2 workers
x 128 threads are 256 connections, more than the server allows, for a handful of index probes per
new recipient. With ``SIMULATOR_DB_THREADS`` > 0 (``runsimulator`` sets it) those probes run on
that many threads per process, each keeping one connection; request threads wait for the answer.
0 (the panel, tests) runs them inline, inside the caller's transaction.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.db import InterfaceError, OperationalError, connection

from . import config

_lock = threading.Lock()
_executor: tuple[int, ThreadPoolExecutor] | None = None


def _pool(size: int) -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None or _executor[0] != os.getpid():  # a fork gets threads of its own
            _executor = (os.getpid(), ThreadPoolExecutor(max_workers=size, thread_name_prefix="simulator-db"))
        return _executor[1]


def _probe[T](fn: Callable[..., T], *args, **kwargs) -> T:
    """On a database thread, which no request cycle tidies: a connection broken by a restarted
    server is dropped here and the read-only probe tried once more on a fresh one."""
    try:
        return fn(*args, **kwargs)
    except (OperationalError, InterfaceError):
        connection.close()
        return fn(*args, **kwargs)


def run[T](fn: Callable[..., T], *args, **kwargs) -> T:
    size = config.db_threads()
    if not size:
        return fn(*args, **kwargs)
    return _pool(size).submit(_probe, fn, *args, **kwargs).result()
