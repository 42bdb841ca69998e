"""Reading journey counters for the builder, the statistics page and the API (first cut)."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Count

from . import counters
from .models import Journey, JourneyRun, RunState


def step_counts(journey: Journey) -> dict[str, dict[str, int]]:
    """step id -> {counter key -> n}, plus ``waiting`` (runs at the step now); "" is journey-wide."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for (step_id, key), n in counters.read(journey.pk).items():
        counts[step_id][key] = n
    waiting = (
        JourneyRun.objects.filter(journey=journey, dry_run=False)
        .exclude(state=RunState.DONE)
        .values("step_id")
        .annotate(n=Count("id"))
    )
    for row in waiting:
        counts[row["step_id"]]["waiting"] = row["n"]
    return dict(counts)
