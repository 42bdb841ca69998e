"""Liveness of the parts a deployment depends on: the database and the broker.

Apps below add details through :func:`register_detail` (the event feed's lag per consumer):
shown in the answer, but not part of the status, so a slow consumer never takes the web
servers out of a load balancer's rotation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)
TIMEOUT = 2.0

_details: dict[str, Callable[[], object]] = {}


def register_detail(name: str, detail: Callable[[], object]) -> None:
    _details[name] = detail


@dataclass(frozen=True)
class HealthReport:
    database: str
    broker: str
    details: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.database == "ok" and self.broker == "ok"

    def as_dict(self) -> dict[str, object]:
        return {
            "status": "ok" if self.ok else "error",
            "database": self.database,
            "broker": self.broker,
            **self.details,
        }


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "unreachable" to a load balancer
        logger.warning("healthz: database check failed: %s", type(exc).__name__)
        return "error"
    return "ok"


def check_broker() -> str:
    url = settings.DRAMATIQ_BROKER_URL
    try:
        if url.startswith("redis"):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
            try:
                client.ping()
            finally:
                client.close()
        elif url.startswith("amqp"):
            import pika

            params = pika.URLParameters(url)
            params.socket_timeout = TIMEOUT
            params.blocked_connection_timeout = TIMEOUT
            params.connection_attempts = 1
            pika.BlockingConnection(params).close()
        # No URL: the in-process broker lives as long as this process does.
    except Exception as exc:
        # The URL may hold a password: log the kind of failure only.
        logger.warning("healthz: broker check failed: %s", type(exc).__name__)
        return "error"
    return "ok"


def _collect_details(database: str) -> dict[str, object]:
    details: dict[str, object] = {}
    if database != "ok":
        return details  # they all read the database
    for name, detail in _details.items():
        try:
            details[name] = detail()
        except Exception as exc:
            logger.warning("healthz: %s failed: %s", name, type(exc).__name__)
            details[name] = "error"
    return details


def check() -> HealthReport:
    database = check_database()
    return HealthReport(database=database, broker=check_broker(), details=_collect_details(database))
