"""Per-phone-number send slots shared by every worker (reference 6.1), reserved ahead, never polled.

Time is cut into discrete slots of ``1/limit`` seconds per number; every send takes one slot and a
slot is taken at most once, so no 1-second window ever holds more than ``limit`` sends. A sender
reserves the slots of a whole batch in one call, up to ``horizon`` seconds ahead, and sleeps only
until a slot it already holds; what does not fit goes back to the queue with ``retry_after``.
Because slots are a set, not a pointer, a throttled campaign takes every n-th slot and leaves the
gaps to others. A campaign's own throttle (``Campaign.throttle_mps``) is a pointer per campaign:
its next slot is at least ``1/rate`` after its previous one, whichever worker sent that.

Meta's 130429 (throughput exceeded) backs the whole number off for a moment: ``back_off`` sets it,
``backed_off`` reads it, and ``reserve`` meanwhile grants slots from the pause's end on, so that the
number's batches are ready to go the moment it ends (granting none left a second of near silence
after every refusal while batches refilled). A refusal within one pause's length after the last pause
ended doubles the next one (up to ``MAX_PAUSE``): a number whose real limit at Meta is below the one
configured is refused again right after every pause, and must not be hammered.

Redis holds the slots in production (one Lua script, atomic, on Redis's clock so that machines with
skewed clocks agree); the embedded mode keeps them in this process, where its workers live too.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings

DEFAULT_HORIZON = 2.0  # seconds ahead a batch may reserve slots
MAX_PAUSE = 5.0  # seconds: the longest a number's pause grows after 130429s right after pauses


@dataclass(frozen=True)
class Reservation:
    delays: list[float]  # seconds from now until each granted slot, ascending
    # When to ask again (seconds from now; 0 if all were granted): once half the horizon is free
    # again, so that the next call gets a batch's worth, not a slot or two.
    retry_after: float


class MemoryLimiter:
    """The in-process limiter (embedded mode, tests); the same algorithm as the Lua script."""

    def __init__(self, clock=time.time) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.taken: dict[str, set[int]] = {}
        self.hint: dict[str, int] = {}  # every slot from now up to here is taken
        self.tat: dict[str, float] = {}  # campaign key -> earliest time of its next send
        self.off: dict[str, float] = {}  # number -> backed off until
        self.pause: dict[str, float] = {}  # number -> length of its last pause

    def reserve(
        self,
        number: str,
        limit: int,
        n: int,
        *,
        horizon: float = DEFAULT_HORIZON,
        stream: str = "",
        stream_rate: int | None = None,
    ) -> Reservation:
        limit = max(1, int(limit))
        with self.lock:
            now = self.clock()
            taken = self.taken.setdefault(number, set())
            k_now = math.ceil(now * limit)
            k_end = math.floor((now + horizon) * limit)
            for old in [k for k in taken if k < k_now]:
                taken.discard(old)
            throttled = bool(stream and stream_rate and stream_rate < limit)
            k_start = math.ceil(max(now, self.off.get(number, 0.0)) * limit)  # after a 130429 pause
            k = max(k_start, self.hint.get(number, 0))
            tat = self.tat.get(stream, 0.0) if throttled else 0.0
            slots: list[int] = []
            while len(slots) < n:
                if throttled:
                    k = max(k, math.ceil(tat * limit - 1e-9))
                if k > k_end:
                    break
                if k in taken:
                    k += 1
                    continue
                taken.add(k)
                slots.append(k)
                if throttled:
                    tat = k / limit + 1 / stream_rate
                k += 1
            if not throttled:
                self.hint[number] = k  # all slots before k (from now) are taken
            else:
                self.tat[stream] = tat
            retry_after = 0.0
            if len(slots) < n:
                next_at = max(k / limit, tat if throttled else 0.0)
                retry_after = max(next_at - horizon / 2 - now, 0.05)
            return Reservation([max(s / limit - now, 0.0) for s in slots], retry_after)

    def back_off(self, number: str, seconds: float) -> float:
        with self.lock:
            now = self.clock()
            off, last = self.off.get(number, 0.0), self.pause.get(number, 0.0)
            if off > now:  # a call that was in flight when the pause began: the same refusal
                self.off[number] = max(off, now + seconds)
            else:
                length = min(max(seconds, 2 * last), MAX_PAUSE) if now < off + last else seconds
                self.off[number], self.pause[number] = now + length, length
            return self.off[number] - now

    def backed_off(self, number: str) -> float:
        with self.lock:
            return max(self.off.get(number, 0.0) - self.clock(), 0.0)


# KEYS: taken zset, hint, campaign tat, backoff. ARGV: limit, n, horizon, throttled (0/1), stream_rate.
# Returns {granted slot times relative to now in microseconds..., retry_after in microseconds} as the
# last element. Slot numbers are integers below 2^53, exact in Lua's doubles.
RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local limit = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local throttled = ARGV[4] == '1'
local rate = tonumber(ARGV[5])
local off = tonumber(redis.call('GET', KEYS[4]) or '0')
local k_now = math.ceil(now * limit)
local k_end = math.floor((now + horizon) * limit)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', k_now))
local k = math.max(math.ceil(math.max(now, off) * limit), tonumber(redis.call('GET', KEYS[2]) or '0'))
local tat = 0
if throttled then tat = tonumber(redis.call('GET', KEYS[3]) or '0') end
local out = {}
local granted = 0
while granted < n do
  if throttled then k = math.max(k, math.ceil(tat * limit - 1e-9)) end
  if k > k_end then break end
  local member = string.format('%d', k)
  if redis.call('ZSCORE', KEYS[1], member) then
    k = k + 1
  else
    redis.call('ZADD', KEYS[1], k, member)
    granted = granted + 1
    out[granted] = tostring(math.max(math.floor((k / limit - now) * 1e6), 0))
    if throttled then tat = k / limit + 1 / rate end
    k = k + 1
  end
end
local ttl = math.ceil((horizon + 5) * 1000)
redis.call('PEXPIRE', KEYS[1], ttl)
if throttled then
  redis.call('SET', KEYS[3], string.format('%.6f', tat), 'PX', ttl)
else
  redis.call('SET', KEYS[2], string.format('%d', k), 'PX', ttl)
end
local retry = 0
if granted < n then
  local next_at = k / limit
  if throttled and tat > next_at then next_at = tat end
  retry = math.max(next_at - horizon / 2 - now, 0.05)
end
out[granted + 1] = tostring(math.floor(retry * 1e6))
return out
"""

# KEYS: backoff (until), the last pause's length. ARGV: seconds, MAX_PAUSE. As MemoryLimiter.back_off.
BACK_OFF_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local seconds = tonumber(ARGV[1])
local off = tonumber(redis.call('GET', KEYS[1]) or '0')
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local ttl = math.ceil(tonumber(ARGV[2]) * 3000) + 1000
if off > now then
  if now + seconds > off then
    off = now + seconds
    redis.call('SET', KEYS[1], string.format('%.6f', off), 'PX', ttl)
  end
  return tostring(math.floor((off - now) * 1e6))
end
local length = seconds
if now < off + last then length = math.min(math.max(seconds, 2 * last), tonumber(ARGV[2])) end
redis.call('SET', KEYS[1], string.format('%.6f', now + length), 'PX', ttl)
redis.call('SET', KEYS[2], string.format('%.6f', length), 'PX', ttl)
return tostring(math.floor(length * 1e6))
"""

BACKED_OFF_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local off = tonumber(redis.call('GET', KEYS[1]) or '0')
return tostring(math.max(math.floor((off - now) * 1e6), 0))
"""


class RedisLimiter:
    def __init__(self, url: str) -> None:
        import redis

        self.redis = redis.Redis.from_url(url)
        self._reserve = self.redis.register_script(RESERVE_LUA)
        self._back_off = self.redis.register_script(BACK_OFF_LUA)
        self._backed_off = self.redis.register_script(BACKED_OFF_LUA)

    @staticmethod
    def _keys(number: str, stream: str) -> list[str]:
        # One hash tag per number: a Redis cluster keeps a number's keys on one node.
        return [f"wa-rl:{{{number}}}:slots", f"wa-rl:{{{number}}}:hint", f"wa-rl:{{{number}}}:tat:{stream}",
                f"wa-rl:{{{number}}}:off", f"wa-rl:{{{number}}}:pause"]  # fmt: skip

    def reserve(
        self,
        number: str,
        limit: int,
        n: int,
        *,
        horizon: float = DEFAULT_HORIZON,
        stream: str = "",
        stream_rate: int | None = None,
    ) -> Reservation:
        limit = max(1, int(limit))
        throttled = bool(stream and stream_rate and stream_rate < limit)
        raw = self._reserve(
            keys=self._keys(number, stream),
            args=[limit, n, horizon, "1" if throttled else "0", stream_rate or limit],
        )
        values = [int(v) / 1e6 for v in raw]
        return Reservation(values[:-1], values[-1])

    def back_off(self, number: str, seconds: float) -> float:
        return int(self._back_off(keys=self._keys(number, "")[3:5], args=[seconds, MAX_PAUSE])) / 1e6

    def backed_off(self, number: str) -> float:
        return int(self._backed_off(keys=[self._keys(number, "")[3]])) / 1e6


@functools.cache
def _limiter(url: str) -> MemoryLimiter | RedisLimiter:
    return RedisLimiter(url) if url else MemoryLimiter()


def limiter() -> MemoryLimiter | RedisLimiter:
    return _limiter(settings.REDIS_URL)


def reserve(
    number: str,
    limit: int,
    n: int,
    *,
    horizon: float = DEFAULT_HORIZON,
    stream: str = "",
    stream_rate: int | None = None,
) -> Reservation:
    """Reserve up to ``n`` send slots for ``number`` within ``horizon`` seconds; never blocks.

    ``stream`` / ``stream_rate``: a campaign key and its own throttle, when below ``limit``.
    """
    return limiter().reserve(number, limit, n, horizon=horizon, stream=stream, stream_rate=stream_rate)


def back_off(number: str, seconds: float) -> float:
    """Meta answered 130429: no slot for ``number`` for ``seconds``, or longer after recent pauses (the
    longer of two back-offs wins). Returns the seconds until the number's pause ends."""
    return limiter().back_off(number, seconds)


def backed_off(number: str) -> float:
    """Seconds until ``number`` may send again after a 130429; 0 when it may send now."""
    return limiter().backed_off(number)
