"""The scheduler: enqueues periodic actors; the workers do the work.

Exactly one scheduler runs per deployment (``manage.py runscheduler``); in the
embedded mode ``manage.py serve`` runs it as a thread. Apps add jobs with
:func:`periodic` from their ``AppConfig.ready()``. A job only *sends* a message,
so a missed or doubled tick is harmless as long as actors are idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    seconds: int
    send: Callable[[], object]


_jobs: dict[str, PeriodicJob] = {}


def periodic(name: str, seconds: int, send: Callable[[], object]) -> None:
    _jobs[name] = PeriodicJob(name=name, seconds=seconds, send=send)


def jobs() -> list[PeriodicJob]:
    return list(_jobs.values())


def _tick(job: PeriodicJob) -> None:
    try:
        job.send()
    except Exception:
        # A broker outage must not kill the scheduler; the next tick tries again.
        logger.exception("scheduler: could not enqueue %s", job.name)


def build(*, blocking: bool) -> BaseScheduler:
    scheduler: BaseScheduler = BlockingScheduler() if blocking else BackgroundScheduler(daemon=True)
    for job in jobs():
        scheduler.add_job(
            _tick,
            "interval",
            args=[job],
            seconds=job.seconds,
            id=job.name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=job.seconds,
        )
    return scheduler
