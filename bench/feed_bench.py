"""Event feed benchmark: events written at a fixed rate, one consumer, its lag; then the same with kills.

Three processes, as a deployment has them: a producer writing events at ``--rate`` per second
in small transactions (``--per-transaction`` events each, bulk_create as the bulk API and status
batches do); a consumer pumping the feed as the ``pump_feed`` actor does, with the scheduler's
one-second tick when the feed is empty; and this script, which measures.

The consumer's handler does nothing but note, in the transaction that moves its position, each
event's id and how old the event was when handled (one INSERT per batch into a table of the
benchmark). That table proves the rule: after the run every event written is there exactly once.

Phases: ``steady`` (no interference) and ``kill`` (the consumer is killed with SIGKILL every
``--kill-every`` seconds and started again), each ``--seconds`` long. With ``--webhooks R`` every
phase runs while ``webhook_bench.py`` offers R signed status webhooks a second to the production
server (granian, group commit) on the same machine, against its own database
(``--webhook-database-url``, reset by that script); the phase starts when wrk starts and the
intake's achieved rate and latency are reported beside the feed's lag. Printed: events written and
handled, the handling rate, lag p50/p95/p99/max, duplicates and losses, and CPU seconds per
process. Everything the benchmark made (its project, events, table, cursor) is removed at the end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_bench ... \\
      .venv/bin/python bench/feed_bench.py --rate 3000 --seconds 60

Needs PostgreSQL (the ordering rule is PostgreSQL's; SQLite serialises writers).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

CONSUMER = "feed-bench"
SLUG = "feed-bench"
TABLE = "feed_bench_handled"


def _project_and_subscribers(count: int) -> tuple[int, list[int]]:
    from controlpanel.models import Project
    from subscribers.models import Subscriber

    project, _ = Project.objects.get_or_create(slug=SLUG, defaults={"name": "Feed benchmark"})
    have = list(Subscriber.objects.filter(project=project).values_list("pk", flat=True)[:count])
    if len(have) < count:
        Subscriber.objects.bulk_create(
            [
                Subscriber(project=project, phone=f"+4915{900000000 + i}", name=f"Feed {i}")
                for i in range(len(have), count)
            ]
        )
        have = list(Subscriber.objects.filter(project=project).values_list("pk", flat=True)[:count])
    return project.pk, have


def produce(rate: int, seconds: float, per_transaction: int, subscribers: int) -> None:
    """Write ``rate`` events a second for ``seconds``, on a fixed schedule (late batches catch up)."""
    from django.db import transaction
    from django.utils import timezone

    from subscribers.models import Event

    project_id, ids = _project_and_subscribers(subscribers)
    interval = per_transaction / rate
    start = time.monotonic()
    written = 0
    n = 0
    while (now := time.monotonic()) - start < seconds:
        due = start + n * interval
        if due > now:
            time.sleep(due - now)
        at = timezone.now()
        with transaction.atomic():
            Event.objects.bulk_create(
                [
                    Event(
                        project_id=project_id,
                        subscriber_id=ids[(written + i) % len(ids)],
                        name="BenchFed",
                        occurred_at=at,
                        attributes={"n": written + i},
                    )
                    for i in range(per_transaction)
                ]
            )
        written += per_transaction
        n += 1
    print(f"written {written}", flush=True)


def consume() -> None:
    """Pump the feed until killed: drain, and when empty wait for the next second as the scheduler does."""
    from django.db import connection

    from subscribers import feed

    def note(events) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} (event_id, lag_ms) "  # noqa: S608
                "SELECT unnest(%s::bigint[]), extract(epoch FROM clock_timestamp() - unnest(%s::timestamptz[])) * 1000",
                [[e.pk for e in events], [e.received_at for e in events]],
            )

    feed.register(CONSUMER, note, batch_size=1000)
    while True:
        tick = time.monotonic()
        if not feed.pump(CONSUMER, seconds=10):
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], env=os.environ.copy())


def _cpu(pid: int) -> float:
    return benchlib.process_cpu([pid])


def _phase(name: str, args: argparse.Namespace) -> dict[str, object]:
    from django.db import connection

    from subscribers import feed
    from subscribers.models import FeedCursor

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE}")
    FeedCursor.objects.filter(consumer=CONSUMER).delete()
    feed.register(CONSUMER, lambda events: None)
    feed.ensure_cursor(CONSUMER)  # starts at the end: only this phase's events count
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM subscribers_event")
        first_id = cursor.fetchone()[0]

    webhooks = _start_webhooks(args) if args.webhooks else None
    consumer = _spawn("consume")
    producer = _spawn(
        "produce", str(args.rate), str(args.seconds), str(args.per_transaction), str(args.subscribers)
    )
    producer_pid, cpu = producer.pid, {"consumer": 0.0}
    kills = 0
    started = time.monotonic()
    next_kill = started + args.kill_every
    while producer.poll() is None:
        producer_cpu = _cpu(producer_pid)
        if name == "kill" and time.monotonic() >= next_kill:
            cpu["consumer"] += _cpu(consumer.pid)
            consumer.send_signal(signal.SIGKILL)
            consumer.wait()
            kills += 1
            consumer = _spawn("consume")
            next_kill += args.kill_every
        time.sleep(0.2)
    cpu["producer"] = producer_cpu
    # Let the consumer drain what is left, then stop it.
    deadline = time.monotonic() + 60
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM subscribers_event WHERE id > %s AND name = 'BenchFed'", [first_id]
        )
        written = cursor.fetchone()[0]
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(DISTINCT event_id) FROM {TABLE}")  # noqa: S608
            if cursor.fetchone()[0] >= written:
                break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    cpu["consumer"] += _cpu(consumer.pid)
    consumer.send_signal(signal.SIGTERM)
    consumer.wait()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*), COUNT(DISTINCT event_id), "  # noqa: S608
            "percentile_disc(0.5) WITHIN GROUP (ORDER BY lag_ms), "
            "percentile_disc(0.95) WITHIN GROUP (ORDER BY lag_ms), "
            "percentile_disc(0.99) WITHIN GROUP (ORDER BY lag_ms), MAX(lag_ms) "
            f"FROM {TABLE}"
        )
        rows, distinct, p50, p95, p99, worst = cursor.fetchone()
        cursor.execute(
            f"SELECT COUNT(*) FROM subscribers_event e WHERE e.id > %s AND e.name = 'BenchFed' "  # noqa: S608
            f"AND NOT EXISTS (SELECT 1 FROM {TABLE} h WHERE h.event_id = e.id)",
            [first_id],
        )
        lost = cursor.fetchone()[0]
    intake = _finish_webhooks(webhooks) if webhooks else {}
    return {
        "phase": name + (f" + {args.webhooks} webhooks/s" if webhooks else ""),
        "written": written,
        "handled": distinct,
        "rate/s": round(written / args.seconds),
        "duplicates": rows - distinct,
        "lost": lost,
        "lag p50 ms": round(p50 or 0),
        "lag p95 ms": round(p95 or 0),
        "lag p99 ms": round(p99 or 0),
        "lag max ms": round(worst or 0),
        "kills": kills,
        "cpu s producer": round(cpu["producer"], 1),
        "cpu s consumer": round(cpu["consumer"], 1),
        "elapsed s": round(elapsed, 1),
        **intake,
    }


def _start_webhooks(args: argparse.Namespace) -> subprocess.Popen:
    """Start webhook_bench.py at ``args.webhooks``/s and return once its wrk is about to run."""
    if not args.webhook_database_url:
        sys.exit(
            "--webhooks needs --webhook-database-url (a PostgreSQL database whose name contains 'bench')"
        )
    # Longer than the phase: the producer's Django start and the final drain stay under load too.
    seconds = int(args.seconds) + 10
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("webhook_bench.py")), "--rates", str(args.webhooks),
         "--seconds", str(seconds), "--no-process", "--port", str(args.webhook_port)],
        env={**os.environ, "DATABASE_URL": args.webhook_database_url},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in process.stdout:
        print(f"  webhooks: {line.rstrip()}", flush=True)
        if line.startswith("driving"):
            return process
    sys.exit(f"webhook_bench.py ended before driving (exit {process.wait()})")


def _finish_webhooks(process: subprocess.Popen) -> dict[str, object]:
    """Wait for webhook_bench.py; its wrk summary (the JSON line) as report columns."""
    summary: dict[str, object] = {}
    for line in process.stdout:
        print(f"  webhooks: {line.rstrip()}", flush=True)
        if line.startswith("{") and "achieved_rate" in line:
            summary = json.loads(line)
    process.wait()
    return {
        "webhooks/s": summary.get("achieved_rate", "?"),
        "webhook errors": sum(
            int(summary.get(k, 0)) for k in ("errors_status", "errors_connect", "errors_timeout")
        ),
        "webhook p99 ms": summary.get("p99_ms", "?"),
    }


def _cleanup() -> None:
    from django.db import connection

    from controlpanel.models import Project
    from subscribers.models import Event, FeedCursor

    FeedCursor.objects.filter(consumer=CONSUMER).delete()
    project = Project.objects.filter(slug=SLUG).first()
    if project is not None:
        Event.objects.filter(project=project).delete()
        project.delete()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=3000, help="events written per second")
    parser.add_argument("--seconds", type=float, default=60, help="length of each phase")
    parser.add_argument("--per-transaction", type=int, default=30, help="events per producer transaction")
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--kill-every", type=float, default=5, help="seconds between SIGKILLs (kill phase)")
    parser.add_argument("--phases", default="steady,kill")
    parser.add_argument("--wait-load", type=float, default=None, help="wait until the load average is below")
    parser.add_argument(
        "--webhooks", type=int, default=0, help="status webhooks a second offered during each phase"
    )
    parser.add_argument("--webhook-database-url", default="", help="the webhook benchmark's own database")
    parser.add_argument("--webhook-port", type=int, default=8777)
    args = parser.parse_args()

    benchlib.setup_django()
    from django.db import connection

    if args.wait_load is not None:
        benchlib.wait_for_load(args.wait_load)
    _project_and_subscribers(args.subscribers)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (event_id bigint NOT NULL, lag_ms double precision)"
        )
    results = []
    try:
        for phase in args.phases.split(","):
            results.append(_phase(phase, args))
            print(results[-1], flush=True)
    finally:
        _cleanup()
    keys = list(results[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for result in results:
        print("| " + " | ".join(str(result[k]) for k in keys) + " |")
    print(f"load average after: {benchlib.load_average()}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("produce", "consume"):
        benchlib.setup_django()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        if sys.argv[1] == "produce":
            produce(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        else:
            consume()
    else:
        main()
