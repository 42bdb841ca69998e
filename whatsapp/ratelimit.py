"""Per-phone-number throughput limit shared by every worker (reference 6.1).

A moving window: no 1-second window ever holds more sends than the number's
limit. Redis holds the window in production (every worker process on every
machine shares it); the embedded mode keeps it in this process, where its
in-process workers live too.
"""

from __future__ import annotations

import functools
import time

from django.conf import settings
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

MAX_WAIT_SECONDS = 30.0


@functools.cache
def _limiter(url: str) -> MovingWindowRateLimiter:
    storage: Storage = RedisStorage(url) if url else MemoryStorage()
    return MovingWindowRateLimiter(storage)


def limiter() -> MovingWindowRateLimiter:
    return _limiter(settings.REDIS_URL)


class ThrottleTimeout(Exception):
    """No send slot within MAX_WAIT_SECONDS: the caller retries later instead of blocking a worker."""


def acquire(phone_number_id: str, per_second: int, *, max_wait: float = MAX_WAIT_SECONDS) -> None:
    """Block until one send for ``phone_number_id`` fits into its per-second limit."""
    item = RateLimitItemPerSecond(max(1, per_second))
    deadline = time.monotonic() + max_wait
    lim = limiter()
    while not lim.hit(item, "wa-send", phone_number_id):
        stats = lim.get_window_stats(item, "wa-send", phone_number_id)
        pause = min(max(stats.reset_time - time.time(), 0.001), 0.05)
        if time.monotonic() + pause > deadline:
            raise ThrottleTimeout(f"no send slot for {phone_number_id} within {max_wait:.0f}s")
        time.sleep(pause)
