"""Chaos: a large send while workers are SIGKILLed, Redis and PostgreSQL restart (issue 9, "Reliability").

The production stack on 127.0.0.1: granian serving the panel (status webhooks come back to it),
the standalone simulator (status webhooks on, optional fault injection), ``rundramatiq`` workers
under a supervisor loop (dramatiq stops all its processes when one dies, so the loop starts them
again, as systemd would), and ``runscheduler`` (dispatcher tick every second, sweeper).

During the run: every ``--kill-every`` seconds one worker process gets SIGKILL (``--kills`` times);
after a third of the kills Redis restarts, after two thirds PostgreSQL restarts. The restarts use
instances of this run's own (``redis-server`` on a free port; a PostgreSQL cluster made with
``pg_createcluster`` and restarted with ``pg_ctlcluster ... restart``), never the shared ones.

Then the checks:
- every recipient's row is terminal (sent, delivered, read, failed, skipped or unknown);
- nobody received two accepted messages: the simulator's ledger (``/simulator/sent.json``);
- rows a kill left ``sending`` are swept to ``unknown`` (the sweep runs with a short age here, as if
  its ten minutes had passed) and settled by the status webhooks that carry their
  ``biz_opaque_callback_data``; an ``unknown`` row that stays so must be one the simulator never
  accepted (its recipient has no accepted message): nothing is resent blindly.

The send is ``--recipients`` outbox rows (one-message rows; the campaign path lands with slice
launch's ``lifecycle.launch``). ``tests/campaigns/test_chaos_reduced.py`` runs ``chaos()`` small.

Usage (about 3 minutes per 100,000 rows at 1,000/s, plus setup):
  SECRET_KEY=bench FIELD_ENCRYPTION_KEY=Jx9Yk0aZ3jv0zS0QqMuFqk2b7vO2TzD6pGQ1m0yQF3E= \\
  .venv/bin/python bench/campaign_chaos.py --recipients 100000 --kills 30
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
import send_bench
from send_bench import HOST, ROOT, free_port, log, start, stop, wait_http

TERMINAL = {"sent", "delivered", "read", "failed", "skipped", "unknown"}


@dataclass
class ChaosConfig:
    recipients: int = 100_000
    kills: int = 30
    kill_every: float = 4.0
    processes: int = 2
    threads: int = 8
    limit: int = 1000
    restart_redis: Callable[[], None] | None = None
    restart_postgres: Callable[[], None] | None = None
    faults: dict[str, str] = field(default_factory=dict)  # SIMULATOR_* knobs, e.g. 5 % 130429
    timeout: float = 1800.0


@dataclass
class ChaosReport:
    rows: int = 0
    kills: int = 0
    restarts: list[str] = field(default_factory=list)
    seconds: float = 0.0
    by_state: dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)
    swept_to_unknown: int = 0
    unknown_settled: int = 0
    unknown_left: int = 0
    unknown_left_accepted: int = 0  # unknown rows whose recipient the simulator did accept: must be 0
    not_terminal: int = 0
    sent_not_accepted: int = 0  # rows we call sent that the simulator never accepted: must be 0

    @property
    def ok(self) -> bool:
        return (
            not self.not_terminal
            and not self.duplicates
            and not self.unknown_left_accepted
            and not self.sent_not_accepted
        )

    def text(self) -> str:
        return (
            f"{self.rows:,} rows, {self.kills} SIGKILLs, restarts {self.restarts or 'none'}, "
            f"{self.seconds:.0f} s; by state {self.by_state}; simulator accepted {self.accepted:,}, "
            f"recipients with 2+ accepted messages {len(self.duplicates)}; swept sending -> unknown "
            f"{self.swept_to_unknown}, settled by webhooks {self.unknown_settled}, unknown left "
            f"{self.unknown_left} (of them accepted by the simulator: {self.unknown_left_accepted}); "
            f"not terminal {self.not_terminal}; marked sent but never accepted {self.sent_not_accepted}"
            f" -> {'OK' if self.ok else 'FAILED'}"
        )


class Supervisor:
    """rundramatiq, started again whenever it exits (a killed worker makes dramatiq stop them all)."""

    def __init__(self, cmd: list[str], env: dict[str, str]):
        self.cmd, self.env, self.proc, self.starts = cmd, env, None, 0

    def ensure(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = start("chaos-workers", self.cmd, self.env)
            self.starts += 1

    def children(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [p for p in benchlib.process_tree(self.proc.pid) if p != self.proc.pid]

    def stop(self) -> None:
        stop(self.proc)


def _counts(project) -> dict[str, int]:
    return send_bench.status_counts(project)


def chaos(cfg: ChaosConfig, env: dict[str, str]) -> ChaosReport:
    """Run the scenario against the database of this process (Django set up) and the broker in ``env``."""
    from campaigns import sending
    from campaigns.models import Message

    report = ChaosReport()
    sim_port, web_port = free_port(), free_port()
    project, account = send_bench.ensure_audience(cfg.recipients, limit=cfg.limit, sim_port=sim_port)
    report.rows = send_bench.reset_outbox(project, account, cfg.recipients)
    callback = f"http://{HOST}:{web_port}"
    env = {**env, "SIMULATOR_DELAYS_MS": "200,400,-1", **cfg.faults}
    web = start("chaos-web", [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", HOST, "--port",
                              str(web_port), "--workers", "1", "--blocking-threads", "16",
                              "controlpanel.wsgi:application"], env)  # fmt: skip
    sim = start("chaos-simulator", [sys.executable, "manage.py", "runsimulator", "--port", str(sim_port),
                                    "--callback-base", callback, "--workers", "1", "--threads", "96"], env)  # fmt: skip
    scheduler = start("chaos-scheduler", [sys.executable, "manage.py", "runscheduler"], env)
    workers = Supervisor([sys.executable, "manage.py", "rundramatiq", "--processes", str(cfg.processes),
                          "--threads", str(cfg.threads)], env)  # fmt: skip
    try:
        wait_http(f"http://{HOST}:{sim_port}/simulator/graph/")
        wait_http(callback + "/")
        workers.ensure()
        started = time.monotonic()
        next_kill = float("inf")  # from the first row sent on: a kill while workers boot proves nothing
        deadline = started + cfg.timeout
        while time.monotonic() < deadline:
            workers.ensure()
            if report.kills < cfg.kills and time.monotonic() >= next_kill:
                victims = workers.children()
                if victims:
                    os.kill(random.choice(victims), signal.SIGKILL)
                    report.kills += 1
                    log(f"SIGKILL #{report.kills}")
                next_kill = time.monotonic() + cfg.kill_every
                if (
                    cfg.restart_redis
                    and report.kills == max(1, cfg.kills // 3)
                    and "redis" not in report.restarts
                ):
                    cfg.restart_redis()
                    report.restarts.append("redis")
                    log("Redis restarted")
                if (
                    cfg.restart_postgres
                    and report.kills == max(1, 2 * cfg.kills // 3)
                    and ("postgres" not in report.restarts)
                ):
                    cfg.restart_postgres()
                    report.restarts.append("postgres")
                    log("PostgreSQL restarted")
            try:
                counts = _counts(project)
            except Exception as exc:  # PostgreSQL restarting: ask again
                log(f"counting failed ({type(exc).__name__}), retrying")
                from django.db import connection

                connection.close()
                time.sleep(1)
                continue
            if next_kill == float("inf") and counts.get("sent"):
                next_kill = time.monotonic() + 0.5
            if not counts.get("queued") and report.kills >= cfg.kills:
                if not counts.get("sending"):
                    break
                # What a kill left `sending` stays so: the sweeper's ten minutes, shortened.
                time.sleep(5)
                report.swept_to_unknown += sending.sweep_stuck(older_than=timedelta(seconds=20))
            time.sleep(1)
        report.seconds = time.monotonic() - started
        # Status webhooks of accepted rows arrive within seconds; give them time to settle the unknown ones.
        settle_deadline = time.monotonic() + 60
        while time.monotonic() < settle_deadline:
            left = Message.objects.filter(project=project, status="unknown").count()
            if not left:
                break
            time.sleep(2)
        book = send_bench.ledger(sim_port)
    finally:
        workers.stop()
        for proc in (scheduler, sim, web):
            stop(proc)
    counts = _counts(project)
    report.by_state = counts
    report.not_terminal = sum(n for state, n in counts.items() if state not in TERMINAL)
    report.accepted = book["accepted"]
    report.duplicates = {phone: n for phone, n in book["recipients"].items() if n > 1}
    left = Message.objects.filter(project=project, status="unknown").select_related("subscriber")
    report.unknown_left = left.count()
    # A row's history keeps every state it passed: swept to unknown, then settled by a webhook.
    was_unknown = Message.objects.filter(project=project, history__contains=[{"status": "unknown"}])
    report.unknown_settled = was_unknown.exclude(status="unknown").count()
    accepted_phones = set(book["recipients"])
    report.unknown_left_accepted = sum(1 for m in left if m.subscriber.phone.lstrip("+") in accepted_phones)
    sent_rows = Message.objects.filter(project=project, status__in=["sent", "delivered", "read"])
    report.sent_not_accepted = sum(
        1
        for phone in sent_rows.values_list("subscriber__phone", flat=True)
        if phone.lstrip("+") not in accepted_phones
    )
    log(report.text())
    return report


# --- this run's own Redis and PostgreSQL -------------------------------------------------------------
class PrivateRedis:
    def __init__(self, directory: Path):
        self.port, self.dir, self.proc = free_port(), directory, None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(50):
            if (
                subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode
                == 0
            ):
                return
            time.sleep(0.1)

    def stop(self) -> None:
        stop(self.proc)

    def restart(self) -> None:
        # No persistence: what was on the broker is gone, as after a crash; leases bring it back.
        self.stop()
        self.start()


class PrivateCluster:
    """A PostgreSQL cluster of this run (pg_createcluster), dropped at the end."""

    def __init__(self, version: str, name: str):
        self.version, self.name, self.port = version, name, free_port()

    def create(self) -> None:
        subprocess.run(["pg_createcluster", self.version, self.name, "-p", str(self.port), "--start", "--",
                        "--auth=trust"], check=True, capture_output=True)  # fmt: skip
        subprocess.run(["psql", "-h", HOST, "-p", str(self.port), "-U", "postgres", "-c",
                        "CREATE DATABASE wcp_chaos_bench"], check=True, capture_output=True)  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgres://postgres@{HOST}:{self.port}/wcp_chaos_bench"

    def restart(self) -> None:
        subprocess.run(["pg_ctlcluster", self.version, self.name, "restart", "-m", "fast"], check=True)

    def drop(self) -> None:
        subprocess.run(["pg_dropcluster", "--stop", self.version, self.name], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--kill-every", type=float, default=4.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--no-postgres-restart", action="store_true")
    parser.add_argument("--no-redis-restart", action="store_true")
    parser.add_argument("--faults", action="store_true", help="simulator: 5 %% 130429, 1 %% HTTP 500, 200 ms")
    parser.add_argument("--pg-version", default="15")
    args = parser.parse_args()
    benchlib.BENCH_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    redis = PrivateRedis(workdir)
    cluster = PrivateCluster(args.pg_version, f"chaos{os.getpid()}")
    try:
        redis.start()
        cluster.create()
        os.environ.update(
            DATABASE_URL=cluster.url,
            DRAMATIQ_BROKER_URL=redis.url,
            SIMULATOR_STATE_DIR=str(workdir / "simulator"),
            DRAMATIQ_NAMESPACE="chaos",
        )
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
        send_bench.setup(workdir / "simulator")
        faults = {}
        if args.faults:
            faults = {"SIMULATOR_THROTTLE_ERROR_RATE": "0.05", "SIMULATOR_SERVER_ERROR_RATE": "0.01",
                      "SIMULATOR_LATENCY_MS": "200"}  # fmt: skip
        cfg = ChaosConfig(
            recipients=args.recipients,
            kills=args.kills,
            kill_every=args.kill_every,
            processes=args.processes,
            threads=args.threads,
            limit=args.limit,
            restart_redis=None if args.no_redis_restart else redis.restart,
            restart_postgres=None if args.no_postgres_restart else cluster.restart,
            faults=faults,
        )
        report = chaos(cfg, dict(os.environ))
        print(report.text())
        sys.exit(0 if report.ok else 1)
    finally:
        redis.stop()
        cluster.drop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
