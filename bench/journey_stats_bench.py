"""The journey statistics page's figures (``journeys.stats.journey_stats``) at 1,000,000 runs.

Fills its own project set-based (``INSERT ... SELECT generate_series``): SUBSCRIBERS subscribers,
RUNS runs of one journey over the last two weeks (one in LIVE_EVERY waiting at a step, the others
done, one in CONVERTED_EVERY converted) and the counters a real journey would have. Then times
``journey_stats`` cold (cache empty: the unique count and the closed days are computed) and warm
(what a polling page costs), and each part alone. PostgreSQL only.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_bench SECRET_KEY=bench FIELD_ENCRYPTION_KEY=...
    .venv/bin/python manage.py migrate
    .venv/bin/python bench/journey_stats_bench.py --runs 1000000 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import load_average, setup_django

setup_django()

from django.core.cache import cache  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from controlpanel.models import Project  # noqa: E402
from journeys import counters, stats  # noqa: E402
from journeys.models import Journey, JourneyRun, JourneyStatus, JourneyVersion  # noqa: E402

SLUG = "bench-journey-stats"
LIVE_EVERY = 5
CONVERTED_EVERY = 7
DEFINITION = {
    "name": "PROMO keyword",
    "entry": {
        "type": "event",
        "event": "WhatsAppReceived",
        "conditions": [{"attribute": "text", "op": "keyword", "value": "promo"}],
    },
    "settings": {"reentry": "any_time", "goal": {"event": "OrderPlaced", "window": "P7D"}},
    "steps": [
        {"id": "reply", "type": "whatsapp_text", "text": "Danke! Dein Code: SUSHI20", "next": "wait"},
        {"id": "wait", "type": "wait", "duration": "PT1H", "next": "offer"},
        {
            "id": "offer",
            "type": "whatsapp_template",
            "template": {"name": "o", "language": "de"},
            "next": None,
        },
    ],
}

SUBSCRIBERS_SQL = """
INSERT INTO subscribers_subscriber
  (project_id, public_id, phone, wa_id, name, email, language, country, time_zone,
   whatsapp_consent, created_at, updated_at)
SELECT %(project)s, gen_random_uuid(), '+49152' || lpad(g::text, 8, '0'), '49152' || lpad(g::text, 8, '0'),
       'Bench ' || g, '', 'de', 'DE', '', 'opted_in', now(), now()
FROM generate_series(1, %(n)s) AS g
"""

RUNS_SQL = """
INSERT INTO journeys_journeyrun
  (project_id, public_id, journey_id, version, subscriber_id, state, step_id, wake_at, waiting_events,
   context, entry_key, dry_run, entered_at, exited_at, exit_reason, converted_at, converted_step,
   attempts, last_error, updated_at)
SELECT %(project)s, gen_random_uuid(), %(journey)s, 1, %(first)s + (g %% %(subscribers)s),
       CASE WHEN g %% %(live)s = 0 THEN 'waiting' ELSE 'done' END,
       CASE WHEN g %% %(live)s = 0 THEN 'wait' ELSE 'offer' END,
       CASE WHEN g %% %(live)s = 0 THEN now() + interval '1 hour' END,
       '[]'::jsonb, '{}'::jsonb, 'bench:' || g, false,
       now() - (g %% 14) * interval '1 day' - (g %% 86400) * interval '1 second',
       CASE WHEN g %% %(live)s = 0 THEN NULL ELSE now() END,
       CASE WHEN g %% %(live)s = 0 THEN '' ELSE 'completed' END,
       CASE WHEN g %% %(converted)s = 0 THEN now() - (g %% 14) * interval '1 day' END,
       '', 0, '', now()
FROM generate_series(1, %(n)s) AS g
"""


def fill(runs: int, subscribers: int) -> Journey:
    project, _ = Project.objects.get_or_create(slug=SLUG, defaults={"name": "Journey stats bench"})
    journey = Journey.objects.filter(project=project).first()
    if journey is not None and JourneyRun.objects.filter(journey=journey).count() == runs:
        print(f"reusing {runs:,} runs of {SLUG}")
        return journey
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("DELETE FROM journeys_journeyrun WHERE project_id = %s", [project.pk])
        cur.execute("DELETE FROM subscribers_subscriber WHERE project_id = %s", [project.pk])
    Journey.objects.filter(project=project).delete()
    with transaction.atomic():
        journey = Journey.objects.create(
            project=project,
            name="PROMO keyword",
            definition=DEFINITION,
            status=JourneyStatus.ACTIVE,
            version=1,
        )
        JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=DEFINITION)
        with connection.cursor() as cur:
            cur.execute(SUBSCRIBERS_SQL, {"project": project.pk, "n": subscribers})
            cur.execute("SELECT min(id) FROM subscribers_subscriber WHERE project_id = %s", [project.pk])
            first = cur.fetchone()[0]
            print(f"  {subscribers:,} subscribers in {time.perf_counter() - started:.1f} s", flush=True)
            params = {
                "project": project.pk,
                "journey": journey.pk,
                "first": first,
                "subscribers": subscribers,
                "live": LIVE_EVERY,
                "converted": CONVERTED_EVERY,
                "n": runs,
            }
            cur.execute(RUNS_SQL, params)
            print(f"  {runs:,} runs at {time.perf_counter() - started:.1f} s", flush=True)
        done, live = runs - runs // LIVE_EVERY, runs // LIVE_EVERY
        counters.bump(
            project.pk,
            journey.pk,
            {
                ("", "entered"): runs,
                ("", "converted"): runs // CONVERTED_EVERY,
                ("", "exited:completed"): done,
                ("reply", "entered"): runs,
                ("reply", "sent"): runs,
                ("reply", "delivered"): runs - 1000,
                ("reply", "read"): runs // 2,
                ("reply", "passed:next"): runs,
                ("wait", "entered"): runs,
                ("wait", "passed:next"): done,
                ("offer", "entered"): done,
                ("offer", "sent"): done,
                ("offer", "passed:next"): done,
            },
        )
    with connection.cursor() as cur:
        # Visibility map and statistics as a live table has them (index-only scans).
        cur.execute("VACUUM ANALYZE journeys_journeyrun")
    print(f"filled in {time.perf_counter() - started:.1f} s (live runs: {live:,})", flush=True)
    return journey


def timed(fn, repeat: int, *, cold: bool = False) -> list[float]:
    times = []
    for _ in range(repeat):
        if cold:
            cache.clear()
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("PostgreSQL only: set DATABASE_URL")
    journey = fill(args.runs, args.subscribers)
    print(f"load average before: {load_average()}")
    parts = [
        ("journey_stats, cold cache", lambda: stats.journey_stats(journey), True),
        ("journey_stats, warm (a polled page)", lambda: stats.journey_stats(journey), False),
        ("step_counts (counters + live runs per step)", lambda: stats.step_counts(journey), False),
        ("unique subscribers, uncached", lambda: stats.unique_subscribers(journey), True),
        ("daily series, cold (closed days computed)", lambda: stats.daily_series(journey), True),
        ("daily series, warm (today only)", lambda: stats.daily_series(journey), False),
    ]
    print(f"\n| part ({args.runs:,} runs, {args.runs // LIVE_EVERY:,} live) | median ms | max ms |")
    print("|---|---:|---:|")
    for label, fn, cold in parts:
        fn()  # warm the connection and, for the warm variants, the cache
        times = timed(fn, args.repeat, cold=cold)
        print(f"| {label} | {statistics.median(times):.0f} | {max(times):.0f} |", flush=True)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
