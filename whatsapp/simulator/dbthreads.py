"""The standalone simulator's database work on a few threads of its own.

Under granian every request thread would open (and keep) its own PostgreSQL connection: 2 workers
x 128 threads are 256 connections, more than the server allows, for a handful of index probes per
new recipient. With ``SIMULATOR_DB_THREADS`` > 0 (``runsimulator`` sets it) those probes run on
that many threads per process, each keeping one connection; request threads wait for the answer.
0 (the panel, tests) runs them inline, inside the caller's transaction.

The probe of a new recipient's name (every send of a load test) is batched: one thread takes the
names asked for meanwhile and looks them all up in one query (``profile_name``).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connection

from . import config

_lock = threading.Lock()
_executor: tuple[int, ThreadPoolExecutor] | None = None
MAX_NAMES = 500  # phones in one name query
IDLE_SECONDS = 5.0


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


# --- recipients' names, batched ------------------------------------------------------------------
_names: tuple[int, queue.SimpleQueue[tuple[int, str, Future[str]]]] | None = None


def _name_queue() -> queue.SimpleQueue[tuple[int, str, Future[str]]]:
    global _names
    names = _names
    if names is not None and names[0] == os.getpid():
        return names[1]
    with _lock:
        if _names is None or _names[0] != os.getpid():
            asked: queue.SimpleQueue[tuple[int, str, Future[str]]] = queue.SimpleQueue()
            threading.Thread(
                target=_name_thread, args=(asked,), name="simulator-db-names", daemon=True
            ).start()
            _names = (os.getpid(), asked)
        return _names[1]


def _name_thread(asked: queue.SimpleQueue[tuple[int, str, Future[str]]]) -> None:
    from . import handsets

    while True:
        try:
            batch = [asked.get(timeout=IDLE_SECONDS)]
        except queue.Empty:
            connection.close()  # idle: hold no session (a test database must stay droppable)
            continue
        while len(batch) < MAX_NAMES:
            try:
                batch.append(asked.get_nowait())
            except queue.Empty:
                break
        by_project: dict[int, list[tuple[str, Future[str]]]] = {}
        for project_id, phone, future in batch:
            by_project.setdefault(project_id, []).append((phone, future))
        for project_id, wanted in by_project.items():
            try:
                found = _probe(
                    handsets.profile_names, sorted({phone for phone, _ in wanted}), project_id=project_id
                )
            except BaseException as exc:  # every send that asked fails as its own probe would have
                for _, future in wanted:
                    future.set_exception(exc)
            else:
                for phone, future in wanted:
                    future.set_result(found[phone])


def profile_name(phone: str, *, project_id: int) -> str:
    """``handsets.profile_name`` of a new recipient; with database threads, in one query together
    with the names other request threads asked for meanwhile."""
    if not config.db_threads():
        from .handsets import profile_name as probe

        return probe(phone, project_id=project_id)
    future: Future[str] = Future()
    _name_queue().put((project_id, phone, future))
    return future.result()


async def profile_name_async(phone: str, *, project_id: int) -> str:
    """``profile_name`` for the asynchronous send route: awaited, so the event loop serves other
    calls meanwhile (and their new recipients join the same query). Without database threads (tests)
    on the thread Django's synchronous code runs on, which holds the test's connection."""
    if not config.db_threads():
        from .handsets import profile_name as probe

        return await sync_to_async(probe, thread_sensitive=True)(phone, project_id=project_id)
    future: Future[str] = Future()
    _name_queue().put((project_id, phone, future))
    return await asyncio.wrap_future(future)
