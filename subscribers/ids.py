"""Public ids of subscribers: UUIDs of version 7 (RFC 9562), ordered by creation time.

A million random (version 4) ids put each new subscriber's index entry on a random page of the
unique index; time-ordered ones land together at its end. A CSV import of a million rows took
3.5 PostgreSQL CPU-seconds less (docs/benchmarks-import.md). The price: an id tells when the
subscriber was created, to the millisecond, which the API and the panel show anyway.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator


def uuid7s(count: int) -> Iterator[uuid.UUID]:
    """``count`` version-7 UUIDs: the Unix time in ms, then 74 random bits (one urandom call)."""
    head = (time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | 0b10 << 62
    randoms = os.urandom(10 * count)
    for n in range(count):
        r = int.from_bytes(randoms[10 * n : 10 * n + 10])  # 80 bits: 12 for rand_a, 62 for rand_b
        yield uuid.UUID(int=head | (r >> 68) << 64 | (r & 0x3FFF_FFFF_FFFF_FFFF))


def uuid7() -> uuid.UUID:
    return next(uuid7s(1))
