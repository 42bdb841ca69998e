"""Holding subscribers while rows that point at them are written (instead of foreign keys).

Tag values and events carry their subscriber's id without a database constraint (ADR 0001): a
foreign key checked and share-locked the subscriber once per inserted row, about 15 of the 85
PostgreSQL CPU-seconds of a million-row import (docs/benchmarks-import.md). The rule the key
kept, no tag value or event of a subscriber that no longer exists, is kept by locks instead:

- every writer of tag values or events for subscribers that existed before its transaction calls
  :func:`hold_subscribers` first (one statement for a whole batch) and writes only for the ids it
  returns; subscribers it created itself in the same transaction need no hold (nobody else can
  see, let alone erase, them yet);
- an erasure locks the subscriber ``FOR UPDATE`` before it deletes anything
  (services.erase_subscriber), so it waits for writers that hold the subscriber, and writers that
  come later wait for it and then find the subscriber gone.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, models

from .models import Subscriber


def hold_subscribers(ids: Iterable[int]) -> set[int]:
    """Keep these subscribers from being erased until the transaction ends; the ids that exist."""
    return hold_rows(Subscriber, ids)


def hold_rows(model: type[models.Model], ids: Iterable[int]) -> set[int]:
    """Share-lock these rows of ``model`` until the transaction ends; the ids that exist.

    The foreign-key check without the key: writers do not wait for each other, a deletion's
    FOR UPDATE waits for them, and they wait for a deletion that holds its lock. Also used for
    tag definitions (tags.hold_definitions).
    """
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    if not connection.in_atomic_block:
        raise RuntimeError("A hold lasts until the transaction ends: call it in one.")
    if connection.vendor != "postgresql":
        # SQLite runs one writing transaction at a time: a row that exists now stays.
        return set(model.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    with connection.cursor() as cur:
        # FOR KEY SHARE, as a foreign key check takes it; in id order, so two writers holding
        # overlapping batches cannot deadlock.
        cur.execute(
            f"SELECT id FROM {connection.ops.quote_name(model._meta.db_table)} "  # noqa: S608 - a model's table
            "WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE",
            [wanted],
        )
        return {r[0] for r in cur.fetchall()}
