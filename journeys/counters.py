"""Journey counters (``JourneyStat``): deltas added in the transaction that did the counted work.

One ``INSERT ... ON CONFLICT DO UPDATE`` per batch (PostgreSQL and SQLite), so a step's counters
never disagree with the runs and a retried batch that rolled back counted nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import connection

from .models import JourneyStat


def bump(project_id: int, journey_id: int, deltas: Mapping[tuple[str, str], int]) -> None:
    """Add ``deltas`` ((step_id, key) -> n; step_id "" for journey-wide keys) to the counters."""
    rows = [(project_id, journey_id, step, key, n) for (step, key), n in deltas.items() if n]
    if not rows:
        return
    table = connection.ops.quote_name(JourneyStat._meta.db_table)
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
    params = [value for row in rows for value in row]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (project_id, journey_id, step_id, key, n) VALUES {values} "  # noqa: S608
            "ON CONFLICT (journey_id, step_id, key) DO UPDATE SET n = " + table + ".n + excluded.n",
            params,
        )


def bump_many(deltas: Mapping[tuple[int, int, str, str], int]) -> None:
    """``bump`` across journeys: (project_id, journey_id, step_id, key) -> n."""
    by_journey: dict[tuple[int, int], dict[tuple[str, str], int]] = {}
    for (project_id, journey_id, step, key), n in deltas.items():
        by_journey.setdefault((project_id, journey_id), {})[(step, key)] = n
    for (project_id, journey_id), journey_deltas in by_journey.items():
        bump(project_id, journey_id, journey_deltas)


def read(journey_id: int) -> dict[tuple[str, str], int]:
    return {(row.step_id, row.key): row.n for row in JourneyStat.objects.filter(journey_id=journey_id)}
