"""Chaos: a large campaign while workers are SIGKILLed, Redis and PostgreSQL restart (issue 9, "Reliability").

The production stack on 127.0.0.1: granian serving the panel (status webhooks come back to it),
the standalone simulator (status webhooks on, optional fault injection), ``rundramatiq`` workers
under a supervisor loop (dramatiq stops all its processes when one dies, so the loop starts them
again, as systemd would), and ``runscheduler`` (audience snapshots every 5 s, dispatcher tick every
second, sweeper every minute).

The send is a promotion to ``--recipients`` subscribers, created and launched as a person does
(``send_bench.launch_campaign``: ``drafts.create_campaign`` with the simulator's marketing template
``autumn_promo`` and a Liquid binding, to a saved segment or with ``--audience everyone`` to
everyone opted in, then ``lifecycle.launch``); the scheduler's ``lifecycle.start_due`` snapshots
the audience and the dispatcher hands the rows to the ``send_messages`` workers. ``--source outbox``
sends that many queued one-message rows instead (no campaign, no snapshot, no rendering).

During the run: every ``--kill-every`` seconds one worker process gets SIGKILL (``--kills`` times);
after a third of the kills Redis restarts, after two thirds PostgreSQL restarts. The restarts use
instances of this run's own (``redis-server`` on a free port; a PostgreSQL cluster made with
``pg_createcluster`` and restarted with ``pg_ctlcluster ... restart``), never the shared ones.

Then the checks:
- every recipient's row is terminal (sent, delivered, read, failed, skipped or unknown) and the
  campaign completed;
- nobody received two accepted messages: the simulator's ledger (``/simulator/sent.json``);
- rows a kill left ``sending`` are swept to ``unknown`` (the sweep runs with a short age here, as if
  its ten minutes had passed) and settled by the status webhooks that carry their
  ``biz_opaque_callback_data``. Where the sweeper queues a row again that stayed ``unknown`` with no
  status webhook for ``UNKNOWN_RESEND_AFTER`` (default an hour; ``--resend-after`` seconds here, for
  this process and, through the environment, for the workers and the scheduler), the report counts
  those rows; an ``unknown`` row that stays so must be one the simulator never accepted (its
  recipient has no accepted message): nothing is resent blindly.

``tests/campaigns/test_chaos_reduced.py`` runs ``chaos()`` small.

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
    source: str = "campaign"  # or "outbox": one-message rows, no campaign
    audience: str = "segment"  # or "everyone" (opted in)
    resend_after: int = 30  # UNKNOWN_RESEND_AFTER, seconds: an hour would outlast the run
    restart_redis: Callable[[], None] | None = None
    restart_postgres: Callable[[], None] | None = None
    faults: dict[str, str] = field(default_factory=dict)  # SIMULATOR_* knobs, e.g. 5 % 130429
    timeout: float = 1800.0


@dataclass
class ChaosReport:
    source: str = "campaign"
    rows: int = 0
    kills: int = 0
    restarts: list[str] = field(default_factory=list)
    seconds: float = 0.0
    by_state: dict[str, int] = field(default_factory=dict)
    campaign: str = "-"  # the campaign's status at the end; "-" for one-message rows
    accepted: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)
    swept_to_unknown: int = 0
    unknown_settled: int = 0  # unknown, then settled by a status webhook
    resend: bool = False  # whether the sweeper queues unknown rows again (sending.RESEND_NOTE exists)
    requeued: int = 0  # unknown rows the sweeper queued again after UNKNOWN_RESEND_AFTER
    unknown_left: int = 0
    unknown_left_accepted: int = 0  # unknown rows whose recipient the simulator did accept: must be 0
    not_terminal: int = 0
    sent_not_accepted: int = 0  # rows we call sent that the simulator never accepted: must be 0

    @property
    def campaign_done(self) -> bool:
        # Without the resend, an unknown row the simulator never accepted keeps its campaign running
        # for progress.UNKNOWN_GRACE (an hour): nothing to hold against the run.
        if self.source != "campaign" or self.campaign == "completed":
            return True
        return not self.resend and self.unknown_left > 0

    @property
    def ok(self) -> bool:
        return (
            not self.not_terminal
            and not self.duplicates
            and not self.unknown_left_accepted
            and not self.sent_not_accepted
            and self.campaign_done
        )

    def text(self) -> str:
        requeued = f"{self.requeued}" if self.resend else "n/a (no UNKNOWN_RESEND_AFTER)"
        return (
            f"{self.source}: {self.rows:,} rows, {self.kills} SIGKILLs, restarts {self.restarts or 'none'}, "
            f"{self.seconds:.0f} s; by state {self.by_state}; campaign {self.campaign}; simulator accepted "
            f"{self.accepted:,}, recipients with 2+ accepted messages {len(self.duplicates)}; swept sending "
            f"-> unknown {self.swept_to_unknown}, settled by webhooks {self.unknown_settled}, queued again "
            f"{requeued}, unknown left {self.unknown_left} (of them accepted by the simulator: "
            f"{self.unknown_left_accepted}); not terminal {self.not_terminal}; marked sent but never "
            f"accepted {self.sent_not_accepted} -> {'OK' if self.ok else 'FAILED'}"
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


def _resend_note() -> str | None:
    """The history note of a row the sweeper queued again (``sending.RESEND_NOTE``), None where the
    sweeper does not do that (then unknown rows wait for a webhook only)."""
    from campaigns import sending

    return getattr(sending, "RESEND_NOTE", None)


def _unknown_waiting(project, note: str | None) -> int:
    """Unknown rows a webhook or the resend may still move; with the resend, a row queued again once
    and left unknown again is final."""
    from campaigns.models import Message

    rows = Message.objects.filter(project=project, status="unknown")
    if note:
        rows = rows.exclude(history__contains=[{"note": note}])
    return rows.count()


def _sweep(report: ChaosReport) -> None:
    """The sweeper, with the ten minutes of ``STUCK_AFTER`` shortened (the run has no ten minutes)."""
    from campaigns import sending

    report.swept_to_unknown += sending.sweep_stuck(older_than=timedelta(seconds=20))
    resend = getattr(sending, "resend_unknown", None)
    if resend is not None:
        resend()  # where sweep_stuck already calls it, this finds nothing more


def chaos(cfg: ChaosConfig, env: dict[str, str]) -> ChaosReport:
    """Run the scenario against the database of this process (Django set up) and the broker in ``env``."""
    from django.test import override_settings

    # The resend wait, short: for the sweeps this process runs and, through the environment, for the
    # scheduler's and workers' (settings read UNKNOWN_RESEND_AFTER from there where they know it).
    with override_settings(UNKNOWN_RESEND_AFTER=cfg.resend_after):
        return _chaos(cfg, {**env, "UNKNOWN_RESEND_AFTER": str(cfg.resend_after)})


def _chaos(cfg: ChaosConfig, env: dict[str, str]) -> ChaosReport:
    from django.db import connection

    from campaigns import progress
    from campaigns.models import Campaign, Message

    report = ChaosReport(source=cfg.source)
    note = _resend_note()
    report.resend = note is not None
    sim_port, web_port = free_port(), free_port()
    project, account = send_bench.ensure_audience(cfg.recipients, limit=cfg.limit, sim_port=sim_port)
    campaign = None
    if cfg.source == "outbox":
        report.rows = send_bench.reset_outbox(project, account, cfg.recipients)
    else:
        send_bench.clear_outbox(project)
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
        if cfg.source == "campaign":
            # Launched while the stack runs: the scheduler's start_due snapshots it within seconds.
            campaign = send_bench.launch_campaign(
                project, account, audience=cfg.audience, recipients=cfg.recipients, name="Chaos promotion"
            )
            log(f"campaign {campaign.pk} launched to {cfg.recipients:,} recipients ({cfg.audience})")
        next_kill = float("inf")  # from the first row sent on: a kill while workers boot proves nothing
        deadline = started + cfg.timeout
        while time.monotonic() < deadline:
            workers.ensure()
            if report.kills < cfg.kills and time.monotonic() >= next_kill:
                victims = workers.children()
                if victims:
                    try:
                        os.kill(random.choice(victims), signal.SIGKILL)
                    except ProcessLookupError:
                        continue  # it exited between the listing and the kill: choose again
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
                snapshotted = (
                    campaign is None
                    or Campaign.objects.filter(pk=campaign.pk, snapshot_at__isnull=False).exists()
                )
                waiting = _unknown_waiting(project, note) if note else 0
            except Exception as exc:  # PostgreSQL restarting: ask again
                log(f"counting failed ({type(exc).__name__}), retrying")
                connection.close()
                time.sleep(1)
                continue
            if next_kill == float("inf") and counts.get("sent"):
                next_kill = time.monotonic() + 0.5
            if snapshotted and not counts.get("queued") and report.kills >= cfg.kills:
                if not counts.get("sending") and not waiting:
                    break
                # What a kill left `sending` stays so, an unknown row waits for its webhook or the resend.
                time.sleep(5)
                _sweep(report)
            time.sleep(1)
        report.seconds = time.monotonic() - started
        # Status webhooks of accepted rows arrive within seconds; give them time to settle the unknown ones.
        settle_deadline = time.monotonic() + 60
        while time.monotonic() < settle_deadline:
            if not _unknown_waiting(project, note):
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
    if campaign is not None:
        progress.complete_finished([campaign.pk])  # what the sweeper's actor does every minute
        campaign.refresh_from_db()
        report.campaign = campaign.status
        report.rows = campaign.audience_size or 0
    report.accepted = book["accepted"]
    report.duplicates = {phone: n for phone, n in book["recipients"].items() if n > 1}
    left = Message.objects.filter(project=project, status="unknown").select_related("subscriber")
    report.unknown_left = left.count()
    # A row's history keeps every state it passed: swept to unknown, then settled by a webhook (or
    # queued again by the sweeper, then sent).
    was_unknown = Message.objects.filter(project=project, history__contains=[{"status": "unknown"}])
    if note:
        requeued = Message.objects.filter(project=project, history__contains=[{"note": note}])
        report.requeued = requeued.count()
        was_unknown = was_unknown.exclude(history__contains=[{"note": note}])
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
    parser.add_argument("--source", choices=["campaign", "outbox"], default="campaign",
                        help="a launched campaign (default) or queued one-message rows")  # fmt: skip
    parser.add_argument("--audience", choices=["segment", "everyone"], default="segment")
    parser.add_argument("--resend-after", type=int, default=30,
                        help="UNKNOWN_RESEND_AFTER in seconds for this run (the sweeper's resend wait)")  # fmt: skip
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
            source=args.source,
            audience=args.audience,
            resend_after=args.resend_after,
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
