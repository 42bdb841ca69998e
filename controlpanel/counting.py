"""Counts that pages show on every view: exact while the project is small, estimated beyond.

An exact ``COUNT`` of a million subscribers or ten million tag values reads every row (or every
index entry) on each view: 100 ms to seconds at the scale the benchmarks measure. The
dashboard and the tags page do not need exact numbers there, so above ``EXACT_UP_TO`` rows they
show PostgreSQL's planner estimate for the same query (from ``pg_class.reltuples`` and the
column statistics ANALYZE keeps, scaled to the table's current size) and say "about". Whether a
project is small is itself counted with a LIMIT, which reads at most ``EXACT_UP_TO + 1`` index
entries. SQLite (the embedded mode) has no estimates and always counts exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.db import connections
from django.db.models import QuerySet

# Small enough that an exact count costs a few milliseconds; tests lower it.
EXACT_UP_TO = 10_000


@dataclass(frozen=True)
class Count:
    value: int
    estimated: bool = False

    def __str__(self) -> str:
        if not self.estimated:
            return f"{self.value:,}"
        # Two significant digits: more would pretend a precision the estimate does not have.
        digits = max(len(str(self.value)) - 2, 0)
        return f"about {round(self.value, -digits):,}"

    def __bool__(self) -> bool:
        return self.value > 0


def is_large(queryset: QuerySet) -> bool:
    """True if ``queryset`` has more than ``EXACT_UP_TO`` rows and the database can estimate."""
    if connections[queryset.db].vendor != "postgresql":
        return False
    return queryset.order_by()[: EXACT_UP_TO + 1].count() > EXACT_UP_TO


def estimate(queryset: QuerySet) -> Count:
    """The planner's row estimate for ``queryset`` (for ``.distinct()`` ones: its estimated groups)."""
    sql, params = queryset.order_by().query.sql_with_params()
    with connections[queryset.db].cursor() as cur:
        cur.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cur.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return Count(int(plan[0]["Plan"]["Plan Rows"]), estimated=True)
