"""A segment entry of 1,000,000 subscribers into a journey: ``segment_entry.fire_due`` (one
``INSERT ... SELECT`` with the entry rules, through ``entry.enter_audience``) against a bare
``INSERT ... SELECT`` of the same number of runs, in the same run.

Fills its own project in SQL (``--subscribers``, default 1,000,000, four time zones, once; kept
for later runs). Variants, each in a transaction that is rolled back (runs repeat on the same
data and leave nothing behind):

- ``bare``: ``INSERT INTO journeys_journeyrun SELECT <constants> FROM subscribers_subscriber``;
- ``now``: a journey whose segment entry fires once now (re-entry ``after_exit``: the anti-join
  against the journey's live runs is in the statement), through ``fire_due``;
- ``local``: the same with ``{"local_time": "09:00"}``: each run's ``wake_at`` at 09:00 in its
  subscriber's zone (``AT TIME ZONE`` per row);
- ``again``: the ``now`` firing run a second time in the same transaction with a new firing key
  over 1,000,000 live runs: nobody enters (after_exit), measuring the rule's anti-join.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_entries_bench SECRET_KEY=bench \\
    FIELD_ENCRYPTION_KEY=... .venv/bin/python bench/journey_segment_bench.py [--repeat 2]

Goal (issue 10): a segment entry of 1,000,000 subscribers in under 30 s. The machine may be
shared: the ratio to the bare statement is the figure that compares across runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from datetime import timedelta

from benchlib import BENCH_DIR, setup_django

ALL = {"type": "group", "op": "and", "children": [{"type": "all"}]}


class Rollback(Exception):
    pass


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--variants", default="bare,now,local,again")
    args = parser.parse_args()
    setup_django()

    from django.db import connection, transaction
    from django.utils import timezone

    from controlpanel.models import Project
    from journeys import segment_entry
    from journeys.models import Journey, JourneyRun, JourneyStatus, JourneyVersion

    slug = synthesize(args.subscribers)
    project = Project.objects.get(slug=slug)
    subscribers = project.subscribers.count()
    start_rss = rss_mb()

    def journey_for(schedule: dict) -> Journey:
        definition = {
            "name": "Segment bench",
            "entry": {"type": "segment", "rule": ALL, "schedule": schedule},
            "settings": {"reentry": "after_exit", "fallback_time_zone": "Europe/Berlin"},
            "steps": [{"id": "bye", "type": "exit"}],
        }
        now = timezone.now()
        journey = Journey.objects.create(
            project=project,
            name="Segment bench",
            definition=definition,
            status=JourneyStatus.ACTIVE,
            version=1,
            activated_at=now,
        )
        JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=definition)
        segment_entry.schedule(journey, now=now)
        return journey

    def run(variant: str) -> tuple[float, int]:
        written = 0
        try:
            with transaction.atomic():
                if variant == "bare":
                    journey = journey_for({})
                    started = time.perf_counter()
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "INSERT INTO journeys_journeyrun (project_id, public_id, journey_id, version,"
                            " subscriber_id, state, step_id, wake_at, waiting_events, context, entry_key,"
                            " exclusive, dry_run, entered_at, exit_reason, converted_step, attempts,"
                            " last_error, updated_at)"
                            " SELECT s.project_id, gen_random_uuid(), %s, 1, s.id, 'ready', 'bye', now(),"
                            " '[]', '{}', 'segment:20261207T000000Z:' || s.id::text, '1', false, now(), '', '', 0, '', now()"
                            " FROM subscribers_subscriber s WHERE s.project_id = %s",
                            [journey.pk, project.pk],
                        )
                        written = cursor.rowcount
                    elapsed = time.perf_counter() - started
                else:
                    schedule = {"local_time": "09:00"} if variant == "local" else {}
                    journey = journey_for(schedule)
                    now = max(timezone.now(), journey.next_entry_at)
                    if variant == "again":
                        segment_entry.fire_due(now=now)
                        # A second firing of the same segment, as a recurring entry would.
                        Journey.objects.filter(pk=journey.pk).update(
                            next_entry_at=now + timedelta(seconds=1), last_entry_at=None
                        )
                        now += timedelta(seconds=1)
                    started = time.perf_counter()
                    written = segment_entry.fire_due(now=now)
                    elapsed = time.perf_counter() - started
                    if variant == "local":
                        wake = JourneyRun.objects.filter(journey=journey).values_list("wake_at").distinct()
                        print(f"  distinct wake_at: {sorted(w[0].isoformat() for w in wake)}", flush=True)
                raise Rollback
        except Rollback:
            pass
        return elapsed, written

    variants = args.variants.split(",")
    times: dict[str, list[float]] = {v: [] for v in variants}
    counts: dict[str, int] = {}
    loads = []
    for i in range(args.repeat):
        for variant in variants:
            loads.append(os.getloadavg()[0])
            elapsed, written = run(variant)
            times[variant].append(elapsed)
            counts[variant] = written
            print(f"run {i + 1} {variant:6} {elapsed:7.2f} s  {written:,} runs", flush=True)
    bare = statistics.median(times["bare"]) if "bare" in times else None
    lines = [
        "# Journey segment entry benchmark",
        "",
        f"- subscribers in the project: {subscribers:,}",
    ]
    for variant in variants:
        median = statistics.median(times[variant])
        ratio = f", ratio to bare {median / bare:.2f}" if bare and variant != "bare" else ""
        runs = ", ".join(f"{t:.2f}" for t in times[variant])
        lines.append(f"- {variant}: median {median:.2f} s ({runs}); {counts[variant]:,} runs entered{ratio}")
    lines += [
        f"- process peak RSS: {rss_mb():.0f} MB (after Django setup: {start_rss:.0f} MB)",
        f"- load average (1 min) during the runs: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    (BENCH_DIR / "journey_segment_bench.md").write_text(report)


def synthesize(n: int) -> str:
    """A project of ``n`` subscribers written in SQL (kept for later runs); returns its slug."""
    from django.db import connection, transaction

    from controlpanel.models import Project

    slug = "journey-segment-synth"
    project, created = Project.objects.get_or_create(
        slug=slug, defaults={"name": "Journey segment synthetic"}
    )
    if not created and project.subscribers.count() >= n:
        return slug
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM subscribers_subscriber WHERE project_id = %s", [project.pk])
        cursor.execute(
            "INSERT INTO subscribers_subscriber (project_id, public_id, phone, wa_id, bsuid, external_id, name,"
            " email, language, country, time_zone, whatsapp_consent, whatsapp_consent_at, last_inbound_at,"
            " created_at, updated_at)"
            " SELECT %s, gen_random_uuid(), '+49151' || lpad(g::text, 8, '0'), '', NULL, NULL, 'Name ' || g,"
            " '', 'de', 'DE',"
            " (ARRAY['Europe/Berlin', 'America/New_York', '', 'Asia/Tokyo', 'Not/AZone'])[1 + g %% 5],"
            " CASE WHEN g %% 5 < 3 THEN 'opted_in' ELSE 'unknown' END,"
            " NULL, NULL, now(), now() FROM generate_series(1, %s) g",
            [project.pk, n],
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) subscribers_subscriber")
    print(f"synthesized {n:,} subscribers in {time.perf_counter() - started:.1f} s", flush=True)
    return slug


if __name__ == "__main__":
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (see bench/README.md).")
    main()
