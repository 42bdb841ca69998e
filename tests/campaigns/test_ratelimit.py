"""The per-number limiter: no 1-second window ever holds more sends than the limit, slots are reserved
ahead in batches (nobody polls), a throttled campaign leaves the gaps to others, 130429 backs off."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from whatsapp import ratelimit


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


def max_in_any_window(stamps: list[float], width: float = 1.0) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= width - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


def drain(limiter, clock, total: int, *, limit: int, batch: int, stream: str = "", rate: int | None = None):
    """Reserve ``total`` slots in batches like senders do: take what is granted, come back at retry_after."""
    stamps: list[float] = []
    calls = 0
    while len(stamps) < total:
        calls += 1
        got = limiter.reserve("106540352242922", limit, min(batch, total - len(stamps)), stream=stream,
                              stream_rate=rate)  # fmt: skip
        stamps += [clock.now + d for d in got.delays]
        if len(stamps) < total and len(got.delays) < batch:
            assert got.retry_after > 0
            clock.now += got.retry_after
    return stamps, calls


def test_1000_sends_at_limit_80_never_exceed_80_per_second_and_use_the_capacity():
    clock = VirtualClock()
    limiter = ratelimit.MemoryLimiter(clock=clock.time)
    stamps, calls = drain(limiter, clock, 1000, limit=80, batch=200)
    assert len(set(stamps)) == 1000
    assert max_in_any_window(stamps) == 80
    # ...and no capacity is wasted: 1,000 sends take 1000/80 seconds (>= 95 % of the limit).
    assert stamps[-1] - stamps[0] <= 1000 / 80 / 0.95
    # Reserved in batches, not one call per send (the old limiter polled per message).
    assert calls < 100
    # A batch never holds slots further ahead than the horizon: nobody sleeps long on rows.
    first = limiter.reserve("other", 80, 500)
    assert len(first.delays) in (160, 161) and max(first.delays) <= ratelimit.DEFAULT_HORIZON


def test_a_throttled_campaign_takes_every_nth_slot_and_others_get_the_gaps():
    clock = VirtualClock()
    limiter = ratelimit.MemoryLimiter(clock=clock.time)
    throttled, other = [], []
    for _ in range(20):  # ten seconds of two campaigns sharing one number
        a = limiter.reserve("n1", 80, 100, stream="campaign:1", stream_rate=20)
        b = limiter.reserve("n1", 80, 200)
        throttled += [clock.now + d for d in a.delays]
        other += [clock.now + d for d in b.delays]
        clock.now += 0.5
    assert max_in_any_window(throttled) <= 20
    assert max_in_any_window(throttled + other) <= 80
    # The number stays busy: the unthrottled campaign got what the throttled one left (80 - 20).
    span = [t for t in throttled + other if t < clock.now]
    assert len(span) >= 0.95 * 80 * (clock.now - 1_800_000_000.0)
    assert len(set(throttled + other)) == len(throttled + other)  # a slot is taken once


def test_130429_backs_the_whole_number_off():
    clock = VirtualClock()
    limiter = ratelimit.MemoryLimiter(clock=clock.time)
    limiter.back_off("n1", 0.5)
    assert limiter.backed_off("n1") == pytest.approx(0.5)
    # No slot inside the pause; the slots start at its end, so the batch is ready when it ends.
    got = limiter.reserve("n1", 80, 10)
    assert got.delays == sorted(got.delays) and len(got.delays) == 10
    assert got.delays[0] == pytest.approx(0.5) and got.delays[-1] == pytest.approx(0.5 + 9 / 80)
    assert limiter.reserve("n2", 80, 1).delays == [0.0]  # other numbers are not affected
    # A pause longer than the horizon: nothing now; ask again when the horizon reaches past it.
    limiter.back_off("n3", 5.0)
    late = limiter.reserve("n3", 80, 10, horizon=2.0)
    assert late.delays == [] and late.retry_after == pytest.approx(5.0 - 1.0)
    clock.now += 5.0
    assert limiter.backed_off("n3") == 0 and len(limiter.reserve("n3", 80, 10).delays) == 10


def test_refusals_right_after_a_pause_make_the_next_pause_longer():
    clock = VirtualClock()
    limiter = ratelimit.MemoryLimiter(clock=clock.time)
    limiter.back_off("n1", 0.05)
    clock.now += 0.02
    limiter.back_off("n1", 0.05)  # a call in flight when the pause began: the same pause
    assert limiter.backed_off("n1") == pytest.approx(0.05)
    lengths = []
    for _ in range(8):  # refused again at once after every pause: Meta's real limit is lower
        clock.now += limiter.backed_off("n1") + 0.01
        limiter.back_off("n1", 0.05)
        lengths.append(round(limiter.backed_off("n1"), 6))
    assert lengths == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, ratelimit.MAX_PAUSE, ratelimit.MAX_PAUSE]
    clock.now += ratelimit.MAX_PAUSE + ratelimit.MAX_PAUSE + 0.01  # quiet for longer than the last pause
    limiter.back_off("n1", 0.05)
    assert limiter.backed_off("n1") == pytest.approx(0.05)


def test_in_process_limiter_is_the_default_without_redis(settings):
    settings.REDIS_URL = ""
    ratelimit._limiter.cache_clear()
    assert isinstance(ratelimit.limiter(), ratelimit.MemoryLimiter)


@pytest.mark.broker
def test_workers_sharing_redis_stay_under_the_limit(redis_url, settings):
    settings.REDIS_URL = redis_url
    ratelimit._limiter.cache_clear()
    number = f"test-{uuid.uuid4().hex}"
    limit = 50
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        taken = 0
        while taken < 40:
            before = time.time()
            got = ratelimit.reserve(number, limit, 7, horizon=0.5)
            after = time.time()
            with lock:
                stamps.extend((before + after) / 2 + d for d in got.delays)
            taken += len(got.delays)
            if not got.delays:
                time.sleep(got.retry_after)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stamps) >= 160
    # Slots are 1/50 s apart; the clock estimate of a call is within a millisecond.
    assert max_in_any_window(stamps, width=1.0 - 2 / limit) <= limit
    try:
        # The same throttle and back-off semantics as in process.
        ratelimit.back_off(number, 1.0)
        assert 0.5 < ratelimit.backed_off(number) <= 1.0
        assert ratelimit.reserve(number, limit, 5, horizon=0.5).delays == []  # the pause outlasts it
        resumed = ratelimit.reserve(number, limit, 5, horizon=2.0).delays  # from the pause's end on
        assert len(resumed) == 5 and 0.9 < resumed[0] <= 1.0 + 1 / limit
        grow = f"{number}-grow"  # refused right after a pause: the next one is twice as long
        ratelimit.back_off(grow, 0.05)
        time.sleep(0.06)
        ratelimit.back_off(grow, 0.05)
        assert 0.08 < ratelimit.backed_off(grow) <= 0.1
        stream = ratelimit.reserve(f"{number}-b", 100, 10, stream="campaign:1", stream_rate=10, horizon=2.0)
        assert len(stream.delays) == 10
        gaps = [b - a for a, b in zip(stream.delays, stream.delays[1:], strict=False)]
        assert all(g >= 0.1 - 1e-3 for g in gaps)
    finally:
        ratelimit._limiter.cache_clear()
