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
from django.utils.formats import number_format
from django.utils.translation import gettext

# Small enough that an exact count costs a few milliseconds; tests lower it.
EXACT_UP_TO = 10_000


@dataclass(frozen=True)
class Count:
    value: int
    estimated: bool = False

    def __str__(self) -> str:
        # Grouped as the reader's language writes numbers: 1,234 / 1.234.
        if not self.estimated:
            return number_format(self.value, force_grouping=True)
        # Two significant digits: more would pretend a precision the estimate does not have.
        digits = max(len(str(self.value)) - 2, 0)
        rounded = number_format(round(self.value, -digits), force_grouping=True)
        return gettext("about %(count)s") % {"count": rounded}

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


@dataclass(frozen=True)
class ColumnStats:
    """What ANALYZE keeps about a column, and the table's rows scaled to its current size."""

    rows: float
    null_frac: float
    common: dict[str, float]  # most common values (as text) and their shares of the rows
    distinct: float

    def share(self, value: object) -> float:
        """The share of rows equal to ``value``, as the planner reckons it."""
        if str(value) in self.common:
            return self.common[str(value)]
        rest = max(self.distinct - len(self.common), 1)
        return max(1.0 - self.null_frac - sum(self.common.values()), 0.0) / rest


def column_stats(queryset: QuerySet, columns: list[str]) -> dict[str, ColumnStats]:
    """The statistics of ``columns`` of ``queryset``'s table, in one catalog query.

    Columns ANALYZE has not described yet are missing from the answer.
    """
    with connections[queryset.db].cursor() as cur:
        cur.execute(
            """SELECT s.attname, s.null_frac, s.most_common_vals::text::text[], s.most_common_freqs,
                      s.n_distinct, c.reltuples, c.relpages,
                      pg_relation_size(c.oid) / current_setting('block_size')::int
               FROM pg_class c JOIN pg_stats s ON s.schemaname = current_schema()
                 AND s.tablename = c.relname AND s.attname = ANY(%s)
               WHERE c.oid = %s::regclass AND c.reltuples > 0""",
            [columns, queryset.model._meta.db_table],
        )
        found = cur.fetchall()
    stats = {}
    for column, null_frac, values, freqs, n_distinct, reltuples, relpages, pages in found:
        rows = reltuples * (pages / relpages if relpages else 1)
        distinct = n_distinct if n_distinct >= 0 else -n_distinct * reltuples
        stats[column] = ColumnStats(
            rows, null_frac, dict(zip(values or [], freqs or [], strict=True)), distinct
        )
    return stats


def estimate_per_value(queryset: QuerySet, column: str, values: list[int]) -> dict[int, Count] | None:
    """Rows of ``queryset``'s table per value of ``column``, from the column's statistics.

    For a column whose values each belong to one project (a tag definition's id), the planner's
    estimate of ``project = p AND column = v`` multiplies two selectivities that are not
    independent, which is wrong as soon as a second project has rows. The column's own
    most-common-values list is right, and one catalog query answers every value at once, as
    the planner would. None when ANALYZE has not described the column yet.
    """
    stats = column_stats(queryset, [column]).get(column)
    if stats is None:
        return None
    return {v: Count(round(stats.rows * stats.share(v)), estimated=True) for v in values}
