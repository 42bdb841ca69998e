"""Reading journey figures for the builder, the statistics page and the API.

Cheap by construction, whatever the number of runs:

- entries, conversions, exits by reason and everything per step (sent, delivered, read, opened,
  clicked, bounced, failed, skipped, passed by outlet) are ``JourneyStat`` counters: one indexed
  read of a few dozen rows (their writers keep them in the transaction that did the work, counters.py);
- "in journey now" and "waiting" per step: one grouped count over the partial index
  ``journey_run_live`` (journey, step_id of live, non-dry runs), index-only. It grows with the runs
  *live now*, not with all runs ever;
- unique subscribers: ``COUNT(DISTINCT subscriber)`` over the journey's runs; it grows with all
  runs ever (at 1M runs a hash aggregate of 1M rows, 1-2 s on the loaded 2-core machine), so it is
  cached for ``UNIQUE_TTL`` seconds: one such count per journey per 5 minutes, whatever the number
  of viewers. The figure may lag that long; entries and conversions (counters) do not;
- the daily series: days before today do not change, so they are computed once a day per journey
  and time zone (cache), from the ``journey_run_entered`` / ``journey_run_converted`` indexes
  (range scans of the window only); today's bar is counted over today's index range at most once
  a minute (``TODAY_TTL``).

Dry runs are never counted (counters skip them; the run queries exclude them).

Measured (``bench/journey_stats_bench.py``, PostgreSQL, 1,000,000 runs of one journey, 200,000 of
them live, on the shared 2-core machine at load average ~14, so ratios only): a polled page
(warm cache) 40 ms, of which the live count 39 ms; cold (unique count and closed days computed)
1.6 s, at most once per journey per 5 minutes.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from . import counters
from .models import Journey, JourneyRun, JourneyVersion, RunState
from .steps import get as step_type

UNIQUE_TTL = 300
TODAY_TTL = 60  # today's bar of the chart may lag a minute; the counters above it do not
SERIES_DAYS = 14
MESSAGE_KEYS = ("sent", "delivered", "read", "opened", "clicked", "bounced", "failed", "skipped")
# What a send step of each channel shows (the builder's badges, the statistics page), in order;
# failed and skipped are shown beside them on the statistics page.
CHANNEL_COUNTERS: dict[str, tuple[tuple[str, str], ...]] = {
    "whatsapp": (
        ("sent", pgettext_lazy("counter", "sent")),
        ("delivered", pgettext_lazy("counter", "delivered")),
        ("read", pgettext_lazy("counter", "read")),
        ("clicked", pgettext_lazy("counter", "clicked")),
    ),
    "email": (
        ("sent", pgettext_lazy("counter", "sent")),
        ("opened", pgettext_lazy("counter", "opened")),
        ("clicked", pgettext_lazy("counter", "clicked")),
        ("bounced", pgettext_lazy("counter", "bounced")),
    ),
    "push": (("sent", pgettext_lazy("counter", "sent")), ("opened", pgettext_lazy("counter", "opened"))),
}
EXIT_LABELS = {
    "completed": _("Reached the end of a branch"),
    "exit_step": _("Exit step"),
    "goal": _("Reached the goal"),
    "stopped": _("Journey stopped"),
    "dropped": _("Dropped through the API"),
    "error": _("Step failed 5 times"),
}
CHANNEL_LABELS = {"whatsapp": "WhatsApp", "email": _("Email"), "push": _("Push")}


def step_counts(journey: Journey) -> dict[str, dict[str, int]]:
    """step id -> {counter key -> n}, plus ``waiting`` (runs at the step now); "" is journey-wide."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for (step_id, key), n in counters.read(journey.pk).items():
        counts[step_id][key] = n
    waiting = (
        JourneyRun.objects.filter(journey=journey, dry_run=False)
        .exclude(state=RunState.DONE)
        .values("step_id")
        .annotate(n=Count("*"))  # COUNT(*), not COUNT(id): the id is not in journey_run_live
    )
    for row in waiting:
        counts[row["step_id"]]["waiting"] = row["n"]
    return dict(counts)


def shown_definition(journey: Journey) -> dict[str, Any]:
    """The definition the figures are about: the newest activated version, else the draft."""
    if journey.version:
        version = (
            JourneyVersion.objects.filter(journey=journey, number=journey.version)
            .values_list("definition", flat=True)
            .first()
        )
        if isinstance(version, dict):
            return version
    return journey.definition if isinstance(journey.definition, dict) else {}


def channel_of(type_: str) -> str:
    """The channel a step type sends on ("" for flow steps), from the registry; by name for types
    whose module is not loaded (an email step before the channels issue)."""
    registered = step_type(type_)
    if registered is not None:
        return registered.channel
    for channel in CHANNEL_LABELS:
        if type_.startswith(channel):
            return channel
    return ""


def _steps(definition: dict[str, Any]) -> list[tuple[str, str]]:
    raw = definition.get("steps")
    found = []
    for step in raw if isinstance(raw, list) else []:
        if isinstance(step, dict) and isinstance(step.get("id"), str):
            found.append((step["id"], str(step.get("type") or "")))
    return found


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def unique_subscribers(journey: Journey) -> int:
    # Keyed by the public id: integer ids can come back (a test database, a restored dump).
    key = f"journeys:unique:{journey.public_id}"
    found = cache.get(key)
    if found is None:
        found = (
            JourneyRun.objects.filter(journey=journey, dry_run=False)
            .values("subscriber_id")
            .distinct()
            .count()
        )
        cache.set(key, found, UNIQUE_TTL)
    return found


def _per_day(journey: Journey, column: str, start: datetime, end: datetime) -> dict[date, int]:
    tz = timezone.get_current_timezone()
    rows = (
        JourneyRun.objects.filter(
            journey=journey, dry_run=False, **{f"{column}__gte": start, f"{column}__lt": end}
        )
        .annotate(day=TruncDate(column, tzinfo=tz))
        .values("day")
        .annotate(n=Count("*"))
    )
    return {row["day"]: row["n"] for row in rows}


def daily_series(journey: Journey, days: int = SERIES_DAYS) -> dict[str, list]:
    """Entries and conversions per day in the current time zone (the project's on its pages)."""
    tz = timezone.get_current_timezone()
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    midnight = datetime.combine(today, time.min, tzinfo=tz)
    start = datetime.combine(first, time.min, tzinfo=tz)
    key = f"journeys:daily:{journey.public_id}:{tz}:{first.isoformat()}:{today.isoformat()}"
    closed = cache.get(key)
    if closed is None:
        closed = {
            "entered": _per_day(journey, "entered_at", start, midnight),
            "converted": _per_day(journey, "converted_at", start, midnight),
        }
        cache.set(key, closed, 24 * 3600)
    tomorrow = midnight + timedelta(days=1)
    today_key = f"{key}:today"
    live = cache.get(today_key)
    if live is None:
        live = {
            "entered": _per_day(journey, "entered_at", midnight, tomorrow),
            "converted": _per_day(journey, "converted_at", midnight, tomorrow),
        }
        cache.set(today_key, live, TODAY_TTL)
    labels, days_, entered, converted = [], [], [], []
    for offset in range(days):
        day = first + timedelta(days=offset)
        source = live if day == today else closed
        labels.append(day.strftime("%m-%d"))
        days_.append(day.isoformat())  # the page's chart writes it the reader's way (07.12.)
        entered.append(source["entered"].get(day, 0))
        converted.append(source["converted"].get(day, 0))
    return {"labels": labels, "days": days_, "entered": entered, "converted": converted}


def journey_stats(journey: Journey) -> dict[str, Any]:
    """Everything the statistics page and ``GET /api/v1/journeys/{id}/stats`` show.

    A fixed handful of queries (counters, live runs per step, the cached unique count, the daily
    series); see the module docstring for how each scales.
    """
    counts = step_counts(journey)
    overall = counts.get("", {})
    entered = overall.get("entered", 0)
    converted = overall.get("converted", 0)
    in_journey = sum(c.get("waiting", 0) for step, c in counts.items() if step)
    exits = sorted(
        (
            {
                "reason": key.split(":", 1)[1],
                "label": str(EXIT_LABELS.get(key.split(":", 1)[1], key.split(":", 1)[1].replace("_", " "))),
                "count": n,
            }
            for key, n in overall.items()
            if key.startswith("exited:") and n
        ),
        key=lambda row: -row["count"],
    )
    definition = shown_definition(journey)
    listed = _steps(definition)
    known = {step_id for step_id, _ in listed}
    # A step of an older version that runs still counted (or wait at) stays visible.
    listed += [(step_id, "") for step_id in sorted(counts) if step_id and step_id not in known]
    channels: dict[str, dict[str, int]] = {}
    steps = []
    for step_id, type_ in listed:
        c = counts.get(step_id, {})
        channel = channel_of(type_)
        if channel:
            totals = channels.setdefault(channel, dict.fromkeys(MESSAGE_KEYS, 0))
            for name in MESSAGE_KEYS:
                totals[name] += c.get(name, 0)
        registered = step_type(type_)
        visits = c.get("entered", 0)
        steps.append(
            {
                "id": step_id,
                "type": type_,
                "label": str(registered.label)
                if registered
                else (type_.replace("_", " ") or str(_("removed step"))),
                "channel": channel,
                "counters": [
                    {"key": key, "label": str(label), "n": c.get(key, 0)}
                    for key, label in CHANNEL_COUNTERS.get(channel, ())
                ],
                "removed": step_id not in known,
                "entered": visits,
                "waiting": c.get("waiting", 0),
                **{name: c.get(name, 0) for name in MESSAGE_KEYS},
                "converted": c.get("converted", 0),
                "exited": sum(n for k, n in c.items() if k == "exited" or k.startswith("exited:")),
                "passed": {k.split(":", 1)[1]: n for k, n in sorted(c.items()) if k.startswith("passed:")},
                "share": _rate(visits, entered) or 0.0,
            }
        )
    settings = definition.get("settings") if isinstance(definition.get("settings"), dict) else {}
    goal = settings.get("goal")
    return {
        "entered": entered,
        "unique_subscribers": unique_subscribers(journey),
        "in_journey": in_journey,
        "converted": converted,
        "conversion_rate": _rate(converted, entered),
        "goal": goal.get("event") if isinstance(goal, dict) else None,
        "exits": exits,
        "exited": sum(row["count"] for row in exits),
        "channels": [
            {
                "channel": channel,
                "label": str(CHANNEL_LABELS.get(channel, channel)),
                **totals,
                # Besides sent: each with its share of the sent messages.
                "counters": [
                    {
                        "key": key,
                        "label": str(label),
                        "n": totals[key],
                        "rate": _rate(totals[key], totals["sent"]),
                    }
                    for key, label in CHANNEL_COUNTERS.get(channel, ())
                    if key != "sent"
                ],
                "open_rate": _rate(totals["opened"], totals["sent"]),
                "delivery_rate": _rate(totals["delivered"], totals["sent"]),
                "read_rate": _rate(totals["read"], totals["delivered"]),
            }
            for channel, totals in channels.items()
        ],
        "steps": steps,
        "daily": daily_series(journey),
    }
