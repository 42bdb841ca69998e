"""Journey event latency: events arriving at ``--rate``/s, each waking a run that waits for it.

Issue 10: "an event reaches a waiting run in under 1 s p95 while 1,000 events/s arrive".

Three processes, as a deployment has them: a producer recording events through the event service
(``subscribers.services.record_events``, ``--per-transaction`` events per transaction, on a fixed
schedule), a consumer pumping the ``journeys`` feed consumer as the ``pump_feed`` actor does
(drain; when the feed is empty wait for the next second, as the scheduler's tick does), and this
script. Before the run, one run per subscriber waits for ``BenchPing`` (a ``wait_event`` step);
each subscriber gets one event. Latency is the run's ``exited_at`` (the move) minus the event's
``received_at`` (written just before its transaction commits): commit, feed horizon, the
consumer's batch (entries, wakes, message counters, goals) and the engine's move.

Two decoy journeys make the consumer do its real work on every batch: one whose event entry
listens to ``BenchPing`` with a condition that never holds, one whose conversion goal is
``BenchPing`` with a condition that never holds.

Engine: ``journeys.engine.wake_for_events`` when the engine slice is merged and ``wait_event``
is registered (``engine: real`` in the output). Until then a stand-in (``engine: stand-in``) moves
the woken runs with one set-based UPDATE, so the figure is the feed plus this slice's consumer,
not the engine's step machinery: re-run after the merge.

    psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE wcp_bench_journeys'
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_bench_journeys SECRET_KEY=bench FIELD_ENCRYPTION_KEY=...
    .venv/bin/python manage.py migrate
    .venv/bin/python bench/journey_event_bench.py --rate 1000 --seconds 60

Everything it made (project, subscribers, events, journeys, runs, cursor) is removed at the end.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

SLUG = "journey-event-bench"
EVENT = "BenchPing"
CONSUMER = "journeys"


def _definition(name: str, steps: list[dict], **extra) -> dict:
    return {
        "name": name,
        "entry": {"type": "api"},
        "settings": {"reentry": "after_exit"},
        "steps": steps,
        **extra,
    }


def setup(count: int) -> tuple[int, int]:
    """The project, ``count`` subscribers, the journey with one waiting run each, two decoys."""
    from django.db import transaction
    from django.utils import timezone

    from controlpanel.models import Project
    from journeys.models import Journey, JourneyRun, JourneyStatus, JourneyVersion, RunState
    from subscribers.models import Subscriber

    project, _ = Project.objects.get_or_create(slug=SLUG, defaults={"name": "Journey event benchmark"})
    have = Subscriber.objects.filter(project=project).count()
    Subscriber.objects.bulk_create(
        [
            Subscriber(project=project, phone=f"+4916{800000000 + i}", name=f"J {i}")
            for i in range(have, count)
        ],
        batch_size=5_000,
    )
    ids = list(Subscriber.objects.filter(project=project).order_by("pk").values_list("pk", flat=True)[:count])
    never = [{"attribute": "kind", "op": "eq", "value": "never"}]
    wait_steps = [{"id": "wait", "type": "wait_event", "events": [{"event": EVENT}], "timeout": "P1D"}]
    definitions = {
        "bench wait": _definition("bench wait", wait_steps),
        "bench decoy entry": {
            **_definition("bench decoy entry", [{"id": "x", "type": "exit"}]),
            "entry": {"type": "event", "event": EVENT, "conditions": never},
        },
        "bench decoy goal": _definition(
            "bench decoy goal",
            [{"id": "x", "type": "exit"}],
            settings={
                "reentry": "after_exit",
                "goal": {"event": EVENT, "conditions": never, "window": "P1D"},
            },
        ),
    }
    journeys = {}
    with transaction.atomic():
        for name, definition in definitions.items():
            journey = Journey.objects.create(
                project=project,
                name=name,
                definition=definition,
                status=JourneyStatus.ACTIVE,
                version=1,
                entry_events=[EVENT] if "entry" in name else [],
            )
            JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=definition)
            journeys[name] = journey
    now = timezone.now()
    main = journeys["bench wait"]
    JourneyRun.objects.bulk_create(
        [
            JourneyRun(
                project=project,
                journey=main,
                version=1,
                subscriber_id=subscriber_id,
                state=RunState.WAITING,
                step_id="wait",
                wake_at=now + timedelta(days=1),
                waiting_events=[EVENT],
                entry_key=f"bench:{subscriber_id}",
                exclusive="1",
                entered_at=now,
            )
            for subscriber_id in ids
        ],
        batch_size=5_000,
    )
    # The engine finds each run's visit of the wait step (it wrote it when the run arrived).
    from journeys.models import JourneyRunStep

    runs = JourneyRun.objects.filter(journey=main).values_list("pk", flat=True)
    JourneyRunStep.objects.bulk_create(
        [
            JourneyRunStep(project=project, run_id=pk, step_id="wait", step_type="wait_event", entered_at=now)
            for pk in runs
        ],
        batch_size=5_000,
    )
    return project.pk, main.pk


def produce(rate: int, seconds: float, per_transaction: int, writer: str) -> None:
    """Write ``rate`` events a second, one per subscriber, on a fixed schedule (late batches catch up).

    ``service``: through ``record_events`` (validation, dedup keys: the path the API and the
    inbound processing take). ``bulk``: ``Event.objects.bulk_create`` as feed_bench.py does, for
    rates the service cannot write from one process on a loaded machine.
    """
    from django.db import transaction
    from django.utils import timezone

    from controlpanel.models import Project
    from subscribers.models import Event, Subscriber
    from subscribers.services import NewEvent, record_events

    project = Project.objects.get(slug=SLUG)
    ids = list(Subscriber.objects.filter(project=project).order_by("pk").values_list("pk", flat=True))
    interval = per_transaction / rate
    start = time.monotonic()
    written = n = 0
    while (now := time.monotonic()) - start < seconds and written < len(ids):
        due = start + n * interval
        if due > now:
            time.sleep(due - now)
        batch = ids[written : written + per_transaction]
        if writer == "service":
            record_events(
                project=project,
                events=[
                    NewEvent(sid, EVENT, {"kind": "ping", "n": written + i}) for i, sid in enumerate(batch)
                ],
            )
        else:
            at = timezone.now()
            with transaction.atomic():
                Event.objects.bulk_create(
                    [
                        Event(
                            project=project,
                            subscriber_id=sid,
                            name=EVENT,
                            occurred_at=at,
                            attributes={"kind": "ping", "n": written + i},
                        )
                        for i, sid in enumerate(batch)
                    ]
                )
        written += len(batch)
        n += 1
    print(f"written {written}", flush=True)


def consume() -> None:
    """Pump the journeys consumer until killed, as the pump_feed actor and the scheduler's tick do."""
    from subscribers import feed

    while True:
        tick = time.monotonic()
        if not feed.pump(CONSUMER, seconds=10):
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], env=os.environ.copy())


def _written(project_id: int) -> tuple[int, float]:
    """Events written, and the seconds between the first and the last (the producer's real rate)."""
    from django.db.models import Count, Max, Min

    from subscribers.models import Event

    row = Event.objects.filter(project_id=project_id, name=EVENT).aggregate(
        n=Count("id"), first=Min("received_at"), last=Max("received_at")
    )
    span = (row["last"] - row["first"]).total_seconds() if row["n"] > 1 else 1.0
    return row["n"], max(span, 0.001)


def moved(journey_id: int) -> int:
    from journeys.models import JourneyRun, RunState

    return JourneyRun.objects.filter(journey_id=journey_id, state=RunState.DONE).count()


def measure(project_id: int, journey_id: int) -> dict[str, object]:
    """Latency per moved run: its exited_at minus its subscriber's event's received_at (in Python:
    two plain reads, where a join of fresh, unanalysed tables can take minutes)."""
    from journeys.models import JourneyRun, RunState
    from subscribers.models import Event

    received = dict(
        Event.objects.filter(project_id=project_id, name=EVENT).values_list("subscriber_id", "received_at")
    )
    lags = sorted(
        (exited - received[sid]).total_seconds() * 1000
        for sid, exited in JourneyRun.objects.filter(journey_id=journey_id, state=RunState.DONE).values_list(
            "subscriber_id", "exited_at"
        )
        if sid in received and exited is not None
    )

    def pct(p: float) -> int:
        return round(lags[max(0, math.ceil(p * len(lags)) - 1)]) if lags else 0

    return {
        "moved": len(lags),
        "p50 ms": pct(0.5),
        "p95 ms": pct(0.95),
        "p99 ms": pct(0.99),
        "max ms": pct(1.0),
    }


def cleanup() -> None:
    """Remove what a run made, with plain DELETEs (the ORM's cascade collects every row in Python)."""
    from django.db import connection, transaction

    from controlpanel.models import Project
    from subscribers.models import FeedCursor

    FeedCursor.objects.filter(consumer=CONSUMER).delete()
    project = Project.objects.filter(slug=SLUG).first()
    if project is None:
        return
    tables = (
        "journeys_journeyrunstep",
        "journeys_journeyrun",
        "journeys_journeystat",
        "journeys_journeyversion",
        "journeys_journey",
        "subscribers_event",
        "subscribers_subscriber",
    )
    with transaction.atomic(), connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"DELETE FROM {table} WHERE project_id = %s", [project.pk])  # noqa: S608
    project.delete()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1000, help="events recorded per second")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--per-transaction", type=int, default=20)
    parser.add_argument("--writer", choices=("service", "bulk"), default="service")
    parser.add_argument("--wait-load", type=float, default=None, help="wait until the load average is below")
    parser.add_argument("--keep", action="store_true", help="keep what the run made (for a look afterwards)")
    args = parser.parse_args()
    benchlib.setup_django()

    from subscribers import feed
    from subscribers.models import FeedCursor

    if args.wait_load is not None:
        benchlib.wait_for_load(args.wait_load)
    count = int(args.rate * args.seconds)
    cleanup()
    t0 = time.monotonic()
    project_id, journey_id = setup(count)
    print(f"{count} waiting runs set up in {time.monotonic() - t0:.1f} s", flush=True)
    FeedCursor.objects.filter(consumer=CONSUMER).delete()
    feed.ensure_cursor(CONSUMER)  # from the end: only this run's events
    try:
        consumer = _spawn("consume")
        time.sleep(3)  # Django start of the consumer, before the clock runs
        producer = _spawn(
            "produce", str(args.rate), str(args.seconds), str(args.per_transaction), args.writer
        )
        producer.wait()
        written, span = _written(project_id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if moved(journey_id) >= written:
                break
            time.sleep(1)
        cpu = benchlib.process_cpu([consumer.pid])
        consumer.send_signal(signal.SIGTERM)
        consumer.wait()
        result = {
            "writer": args.writer,
            "events": written,
            "rate/s": round(written / span),
            **measure(project_id, journey_id),
            "consumer cpu s": round(cpu, 1),
            "load avg": benchlib.load_average(),
        }
    finally:
        if not args.keep:
            cleanup()
    keys = list(result)
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    print("| " + " | ".join(str(result[k]) for k in keys) + " |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("produce", "consume"):
        benchlib.setup_django()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        if sys.argv[1] == "produce":
            produce(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        else:
            consume()
    else:
        main()
