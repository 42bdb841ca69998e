"""Subscribers' public ids are UUIDs of version 7: valid, unique, ordered by creation time."""

from __future__ import annotations

import time
import uuid

from subscribers.ids import uuid7, uuid7s
from subscribers.models import Subscriber


def test_version_7_ids_carry_the_time_in_milliseconds_and_74_random_bits():
    before = time.time_ns() // 1_000_000
    ids = list(uuid7s(1000))
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 1000
    for u in ids:
        assert (u.version, u.variant) == (7, uuid.RFC_4122)
        assert before <= u.int >> 80 <= after
        assert uuid.UUID(str(u)) == u


def test_later_ids_sort_after_earlier_ones():
    first = uuid7()
    time.sleep(0.002)
    assert str(uuid7()) > str(first)


def test_subscribers_get_them_by_default():
    assert Subscriber().public_id.version == 7
