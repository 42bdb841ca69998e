"""Journey timer wake-ups: ``--runs`` runs (100,000) waiting on a timer that has just passed are
claimed and advanced by ``journeys.engine.tick`` (wait -> ``--then`` -> exit) in ``--workers``
processes; printed: runs per second from the first claim to the last run done, batches, CPU.

The runs and their open visits are written in SQL (as if they had entered an hour ago and waited),
so the clock measures the engine only: claim (``UPDATE ... RETURNING`` with ``SKIP LOCKED``), load,
advance, bulk write-back, counters. Every run must end ``done`` with exactly one visit per step;
the script checks it. The benchmark's project (``journey-bench``) keeps its subscribers for the
next run (``--drop`` removes it); its journeys are deleted at the end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_bench SECRET_KEY=bench FIELD_ENCRYPTION_KEY=... \\
    .venv/bin/python bench/journey_bench.py [--runs 100000] [--workers 1,2] [--batch 500] [--then exit]

Goal (issue 10): at least 2,000 runs/s. The machine may be shared: the load is printed with it.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

from benchlib import ROOT, process_cpu, setup_django

SLUG = "journey-bench"
THEN = {
    "exit": [{"id": "bye", "type": "exit"}],
    "split": [
        {"id": "reach", "type": "reachability", "channel": "whatsapp", "yes": "ab", "no": "bye"},
        {
            "id": "ab",
            "type": "ab_split",
            "variants": [
                {"name": "A", "percent": 50, "next": "bye"},
                {"name": "B", "percent": 50, "next": "bye"},
            ],
        },
        {"id": "bye", "type": "exit"},
    ],
}


def _subscribers(project, n: int) -> list[int]:
    from subscribers.models import ConsentState, Subscriber

    have = Subscriber.objects.filter(project=project).count()
    batch = []
    for i in range(have, n):
        batch.append(
            Subscriber(project=project, phone=f"+49170{i:08d}", whatsapp_consent=ConsentState.OPTED_IN)
        )
        if len(batch) == 10_000:
            Subscriber.objects.bulk_create(batch)
            batch = []
    if batch:
        Subscriber.objects.bulk_create(batch)
    return list(Subscriber.objects.filter(project=project).order_by("pk").values_list("pk", flat=True)[:n])


def _journey(project, then: str):
    from journeys.models import Journey, JourneyStatus, JourneyVersion

    first = THEN[then][0]["id"]
    definition = {
        "name": "Bench",
        "entry": {"type": "api"},
        "settings": {"reentry": "after_exit"},
        "steps": [{"id": "wait", "type": "wait", "duration": "PT1H", "next": first}, *THEN[then]],
    }
    journey = Journey.objects.create(
        project=project, name="Bench", definition=definition, status=JourneyStatus.ACTIVE, version=1
    )
    JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=definition)
    return journey


def _waiting_runs(journey, n: int) -> None:
    """n runs that entered an hour ago, waiting at "wait" since, due now; and their open visits."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO journeys_journeyrun (project_id, public_id, journey_id, version, subscriber_id, "
            "state, step_id, wake_at, waiting_events, context, entry_key, exclusive, dry_run, entered_at, "
            "exit_reason, converted_step, attempts, last_error, updated_at) "
            "SELECT %s, gen_random_uuid(), %s, 1, s.id, 'waiting', 'wait', now() - interval '1 second', "
            "'[]', '{}', 'bench:' || s.id, '1', false, now() - interval '1 hour', '', '', 0, '', now() "
            "FROM (SELECT id FROM subscribers_subscriber WHERE project_id = %s ORDER BY id LIMIT %s) s",
            [journey.project_id, journey.pk, journey.project_id, n],
        )
        cursor.execute(
            "INSERT INTO journeys_journeyrunstep (project_id, run_id, step_id, step_type, entered_at, "
            "outlet, detail) SELECT project_id, id, 'wait', 'wait', entered_at, '', '{}' "
            "FROM journeys_journeyrun WHERE journey_id = %s",
            [journey.pk],
        )
        cursor.execute("ANALYZE journeys_journeyrun")
        cursor.execute("ANALYZE journeys_journeyrunstep")


def _worker(batch: int) -> None:
    from django.db import connection

    from journeys import engine

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    ticks = 0
    while engine.tick(limit=batch):
        ticks += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # The PostgreSQL backend serving this worker runs on this machine: its CPU from /proc.
    print(f"{ticks} {usage.ru_utime + usage.ru_stime:.2f} {process_cpu([backend]):.2f}", flush=True)


def _measure(journey, n: int, workers: int, batch: int) -> dict:
    from journeys.models import JourneyRun, JourneyRunStep, RunState

    env = {**os.environ}
    cmd = [sys.executable, __file__, "--worker", "--batch", str(batch)]
    load = os.getloadavg()[0]
    started = time.monotonic()
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for _ in range(workers)
    ]
    outputs = [p.communicate()[0].split() for p in procs]
    elapsed = time.monotonic() - started
    done = JourneyRun.objects.filter(journey=journey, state=RunState.DONE).count()
    visits = JourneyRunStep.objects.filter(run__journey=journey).count()
    steps = len(journey.definition["steps"])
    return {
        "workers": workers,
        "runs": n,
        "done": done,
        "seconds": round(elapsed, 2),
        "runs_per_s": round(n / elapsed),
        "batches": sum(int(o[0]) for o in outputs),
        "worker_cpu_s": round(sum(float(o[1]) for o in outputs), 1),
        "postgres_cpu_s": round(sum(float(o[2]) for o in outputs), 1),
        "cpu_ms_per_run": round(1000 * sum(float(o[1]) + float(o[2]) for o in outputs) / n, 3),
        "visits_ok": visits <= n * steps and done == n,
        "load_before": round(load, 1),
        "load_after": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2", help="worker processes per measurement, comma-separated")
    parser.add_argument("--batch", type=int, default=500, help="runs per tick (engine.tick's limit)")
    parser.add_argument("--then", choices=sorted(THEN), default="exit", help="the steps after the wait")
    parser.add_argument("--drop", action="store_true", help="remove the benchmark's project at the end")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    setup_django()
    if args.worker:
        _worker(args.batch)
        return

    from controlpanel.models import Project
    from journeys.models import Journey

    project, _ = Project.objects.get_or_create(slug=SLUG, defaults={"name": "Journey bench"})
    _subscribers(project, args.runs)
    try:
        for workers in [int(w) for w in args.workers.split(",")]:
            journey = _journey(project, args.then)
            _waiting_runs(journey, args.runs)
            print(_measure(journey, args.runs, workers, args.batch), flush=True)
            journey.delete()
    finally:
        Journey.objects.filter(project=project).delete()
        if args.drop:
            project.delete()


if __name__ == "__main__":
    main()
