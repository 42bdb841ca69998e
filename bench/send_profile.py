"""Where one send batch's CPU goes: the worker's Python and PostgreSQL, statement by statement.

In this process, against the standalone simulator (a child process, so its CPU is not counted
here): a campaign of ``--recipients`` (the simulator's ``autumn_promo`` with a Liquid binding, to
the saved segment, as ``send_bench.py pipeline`` sends it) is launched and snapshotted, then the
dispatcher's batches are sent one after another by ``campaigns.sending.send_batch`` on this thread.
The account's limit is set high (``--limit``) so that no batch waits for send slots: the figures
are CPU, not pacing.

Reported per message and per batch:

- the worker: CPU of this thread inside ``send_batch`` (``time.thread_time``), and of the whole
  process (the asyncio POST loop thread included);
- PostgreSQL: CPU of this connection's backend (``/proc/<pid>/schedstat``, nanoseconds) around
  every statement (``connection.execute_wrapper``), grouped by the statement's first words, and
  around each ``send_batch`` as a whole (the rest is BEGIN, COMMIT and the deferred foreign key
  checks that run at COMMIT);
- with ``--profile FILE``, a cProfile of ``send_batch`` on this thread's CPU clock (``--top`` rows
  printed by cumulative time, the file for ``snakeviz`` or ``pstats``).

The dispatcher's own statements are measured apart (they are per tick, not per batch).

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_sendh_bench SECRET_KEY=bench \\
           FIELD_ENCRYPTION_KEY=Jx9Yk0aZ3jv0zS0QqMuFqk2b7vO2TzD6pGQ1m0yQF3E=
    .venv/bin/python manage.py migrate
    .venv/bin/python bench/send_profile.py --recipients 6000 --profile /tmp/send.prof
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import send_bench


def backend_ns(pid: int) -> int:
    """CPU nanoseconds the PostgreSQL backend ``pid`` has run (the machine's PostgreSQL is local)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


_WORDS = re.compile(r'"|\s+')


def statement_kind(sql: str) -> str:
    """A statement's first words, enough to tell the claim, the load and the counters apart."""
    words = _WORDS.sub(" ", sql).split()
    head = " ".join(words[:6])
    if head.startswith("SELECT"):
        table = next((words[i + 1] for i, w in enumerate(words[:-1]) if w == "FROM"), "?")
        return f"SELECT FROM {table}"
    return head[:70]


class StatementMeter:
    """Backend CPU and wall time per kind of statement, while ``active``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.active = False
        self.stats: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # n, cpu ms, wall ms

    def __call__(self, execute, sql, params, many, context):
        if not self.active:
            return execute(sql, params, many, context)
        cpu, wall = backend_ns(self.pid), time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            entry = self.stats[statement_kind(sql)]
            entry[0] += 1
            entry[1] += (backend_ns(self.pid) - cpu) / 1e6
            entry[2] += (time.perf_counter() - wall) * 1000


@contextmanager
def measuring(meter: StatementMeter):
    meter.active = True
    try:
        yield
    finally:
        meter.active = False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=6000)
    parser.add_argument("--limit", type=int, default=100_000, help="the account's messages per second")
    parser.add_argument("--warmup", type=int, default=3, help="batches sent before measuring")
    parser.add_argument("--profile", default="", help="write a cProfile of send_batch here")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    os.environ.pop("DRAMATIQ_BROKER_URL", None)  # the stub broker: batches are sent on this thread
    state = Path(tempfile.mkdtemp(prefix="send-profile-"))
    send_bench.setup(state)

    from django.db import connection

    from campaigns import lifecycle, sending
    from campaigns.models import Campaign, Message

    sim_port = send_bench.free_port()
    project, account = send_bench.ensure_audience(args.recipients, limit=args.limit, sim_port=sim_port)
    batches: list[tuple[list[int], str]] = []
    sending._enqueue = lambda found, token: batches.extend((b, token) for b in found)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    meter, dispatch_meter = StatementMeter(pid), StatementMeter(pid)
    connection.execute_wrappers.append(meter)
    connection.execute_wrappers.append(dispatch_meter)
    # The process clock: the POST loop thread's CPU lands on the wait for the outcomes.
    profiler = cProfile.Profile(timer=time.process_time) if args.profile else None
    with (
        send_bench.webhook_sink() as sink,
        send_bench.simulator(port=sim_port, callback=sink, threads=64, webhooks=False),
    ):
        campaign = send_bench.launch_campaign(
            project, account, audience="segment", recipients=args.recipients
        )
        while not Campaign.objects.filter(pk=campaign.pk, snapshot_at__isnull=False).exists():
            lifecycle.start_due()
            time.sleep(0.2)
        sent = batches_sent = 0
        thread_cpu = process_cpu = 0.0
        pg_batch_ns = 0
        outcomes: dict[str, int] = defaultdict(int)
        while True:
            with measuring(dispatch_meter):
                sending.dispatch()
            if not batches:
                if not Message.objects.filter(campaign=campaign, status__in=["queued", "sending"]).exists():
                    break
                time.sleep(0.2)
                continue
            ids, token = batches.pop(0)
            if args.warmup > 0:
                args.warmup -= 1
                sending.send_batch(ids, token)
                continue
            t0, p0, b0 = time.thread_time(), time.process_time(), backend_ns(pid)
            with measuring(meter):
                if profiler is not None:
                    profiler.enable()
                counts = sending.send_batch(ids, token)
                if profiler is not None:
                    profiler.disable()
            time.sleep(0.05)  # the loop thread's last callbacks land in process_time
            thread_cpu += time.thread_time() - t0
            process_cpu += time.process_time() - p0
            pg_batch_ns += backend_ns(pid) - b0
            for outcome, n in counts.items():
                outcomes[outcome] += n
            sent += counts.get("sent", 0)
            batches_sent += 1
    per_msg = 1000 / max(sent, 1)
    statements_cpu = sum(v[1] for v in meter.stats.values())
    print(f"\n{batches_sent} batches, {sent} sent, outcomes {dict(outcomes)}, load {send_bench.load():.2f}")
    print(
        f"worker thread CPU {thread_cpu * per_msg:.3f} ms/msg, process {process_cpu * per_msg:.3f} ms/msg; "
        f"PostgreSQL backend {pg_batch_ns / 1e6 / max(sent, 1):.3f} ms/msg "
        f"(statements {statements_cpu / max(sent, 1):.3f}, BEGIN/COMMIT/deferred "
        f"{(pg_batch_ns / 1e6 - statements_cpu) / max(sent, 1):.3f})"
    )
    print("\nPostgreSQL per batch, by statement (n per batch, backend CPU ms per batch, wall ms per batch):")
    for kind, (n, cpu, wall) in sorted(meter.stats.items(), key=lambda kv: -kv[1][1]):
        print(f"  {n / batches_sent:5.2f}  {cpu / batches_sent:7.2f}  {wall / batches_sent:7.2f}  {kind}")
    print("\ndispatcher, whole run (n, backend CPU ms, wall ms):")
    for kind, (n, cpu, wall) in sorted(dispatch_meter.stats.items(), key=lambda kv: -kv[1][1]):
        print(f"  {n:5d}  {cpu:7.1f}  {wall:7.1f}  {kind}")
    if profiler is not None:
        profiler.dump_stats(args.profile)
        stats = pstats.Stats(args.profile)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
