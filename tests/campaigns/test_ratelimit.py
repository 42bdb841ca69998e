"""The per-number limiter: no 1-second window ever holds more sends than the limit."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from whatsapp import ratelimit


class VirtualClock:
    """time.time/monotonic/sleep on a clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    monotonic = time

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def max_in_any_window(stamps: list[float], width: float = 1.0) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_1000_sends_at_limit_80_never_exceed_80_per_second(monkeypatch, settings):
    import limits.storage.memory as memory

    settings.REDIS_URL = ""
    ratelimit._limiter.cache_clear()
    clock = VirtualClock()
    monkeypatch.setattr(ratelimit, "time", clock)
    monkeypatch.setattr(memory, "time", clock)
    stamps = []
    for _ in range(1000):
        ratelimit.acquire("106540352242922", 80)
        stamps.append(clock.now)
    assert max_in_any_window(stamps) == 80
    # ...and the limiter does not waste capacity: 1,000 sends take about 1000/80 seconds.
    assert 12.0 <= stamps[-1] - stamps[0] <= 13.0


class StampingTime:
    """Real time, remembering per thread the timestamp the limiter used for its last hit."""

    def __init__(self) -> None:
        self.local = threading.local()

    def time(self) -> float:
        self.local.last = time.time()
        return self.local.last


@pytest.mark.broker
def test_workers_sharing_redis_stay_under_the_limit(redis_url, settings, monkeypatch):
    import limits.storage.redis as redis_storage

    settings.REDIS_URL = redis_url
    ratelimit._limiter.cache_clear()
    stamping = StampingTime()
    monkeypatch.setattr(redis_storage, "time", stamping)
    number = f"test-{uuid.uuid4().hex}"
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(40):
            ratelimit.acquire(number, 50)
            with lock:
                stamps.append(stamping.local.last)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ratelimit._limiter.cache_clear()
    assert len(stamps) == 160
    assert max_in_any_window(stamps) <= 50
