"""The send pipeline end to end, and the standalone simulator's own cost (issue 9, "Performance").

Two modes, both on 127.0.0.1 against PostgreSQL (a database of your own whose name contains
``bench``: the script writes a project ``sendbench`` and replaces its outbox):

``simulator``
    The standalone simulator alone: ``--concurrency`` client threads POST template sends to
    distinct recipients (the subscribers' phones, as a campaign does). Reports the CPU
    milliseconds per accepted message of the simulator's processes and of the PostgreSQL backends
    serving them. ``--root /work/main`` runs another checkout's simulator: the "before" figure.
    Status webhooks go to a sink in this process that answers 200 (``--no-webhooks``: none).

``pipeline``
    Production mode: the Redis broker, ``rundramatiq --processes P`` for each P of
    ``--processes`` (1,2,4), the standalone simulator with each ``--latency`` (0,200 ms).
    ``--source campaign`` (the default) sends a promotion of ``--recipients`` subscribers the way
    a person does: ``drafts.create_campaign`` (the simulator's ``autumn_promo``, a marketing
    template with a Liquid binding per recipient) to a saved segment (``--audience segment``,
    "reachable on WhatsApp") or to everyone opted in (``--audience everyone``), ``lifecycle.launch``,
    the audience snapshot by ``lifecycle.start_due``, then the dispatcher and the ``send_messages``
    workers (claim, policy, render, POST, write-back). The first ``--recipients`` subscribers of
    the project are the opted-in ones, so both audiences are exactly that many.
    ``--source outbox`` replaces the campaign by ``--recipients`` queued one-message rows (no
    campaign, no rendering): the send path alone.
    Reports the rate end to end (launch to the last row, snapshot included) and in the steady
    middle, the seconds from the launch until the audience's rows are committed, the CPU
    milliseconds per message of each process group (workers, simulator, PostgreSQL, Redis, web
    when ``--webhooks``), the throttle check (no 1-second window of the simulator's acceptance
    times above the account's limit, the average of the full seconds against it), the 130429
    answers, duplicates from ``/simulator/sent.json`` and whether the campaign completed. This
    process ticks ``campaigns.lifecycle.start_due`` and ``campaigns.sending.dispatch`` every 0.2 s
    and ``campaigns.materialize.pending`` every second, as the scheduler does every 5 s, every
    second and every 5 s.

The machine is shared: the 1-minute load average is printed beside every figure.

Usage (see bench/README.md and docs/benchmarks.md):
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_simbench SECRET_KEY=bench \\
         FIELD_ENCRYPTION_KEY=Jx9Yk0aZ3jv0zS0QqMuFqk2b7vO2TzD6pGQ1m0yQF3E= \\
         DRAMATIQ_BROKER_URL=redis://127.0.0.1:6379/13
  .venv/bin/python manage.py migrate
  .venv/bin/python bench/send_bench.py simulator --messages 20000 --root /work/main   # before
  .venv/bin/python bench/send_bench.py simulator --messages 20000                     # after
  .venv/bin/python bench/send_bench.py pipeline --recipients 30000 --processes 1,2,4 --latency 0,200
  .venv/bin/python bench/send_bench.py pipeline --source outbox ...                   # no campaign
"""

from __future__ import annotations

import argparse
import http.server
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib
import requests

ROOT = benchlib.ROOT
HOST = benchlib.HOST
PROJECT_SLUG = "sendbench"
TOKEN = "send-bench-token"  # noqa: S105 - a local benchmark account
SECRET = "send-bench-secret"  # noqa: S105
WABA = "990000000000001"
NUMBER = "990000000000002"
DISPLAY = "15550009900"
TERMINAL = ("sent", "delivered", "read", "failed", "skipped", "unknown")
PROMO = "autumn_promo"  # the simulator's demo marketing template: "Hi {{1}}, ... code {{2}} ..."
SEGMENT = "Send bench: reachable on WhatsApp"
REACHABLE = {"type": "reachability", "channel": "whatsapp"}  # opted in, with a phone


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --- the database: project, account, audience, outbox -------------------------------------------
def setup(state_dir: Path) -> None:
    """Django in this process, pointed at the simulator state the child processes use."""
    os.environ["SIMULATOR_STATE_DIR"] = str(state_dir)
    os.environ.setdefault("DRAMATIQ_NAMESPACE", f"send-bench-{uuid.uuid4().hex[:10]}")
    benchlib.setup_django()
    from django.db import connection

    if "bench" not in connection.settings_dict["NAME"]:
        sys.exit("Give the benchmark a database of its own whose name contains 'bench' (DATABASE_URL).")


def ensure_audience(subscribers: int, *, limit: int, sim_port: int):
    """The project, its simulator account (limit ``limit``/s), its templates and at least ``subscribers``
    subscribers (added opted in; a campaign run then opts in exactly its audience: ``set_audience``)."""
    from django.db import connection

    from campaigns.models import SendingPolicy
    from controlpanel.models import Project
    from subscribers.models import Subscriber
    from whatsapp.models import MessageTemplate, WhatsAppAccount
    from whatsapp.simulator import services

    project, _ = Project.objects.get_or_create(slug=PROJECT_SLUG, defaults={"name": "Send bench"})
    account, _ = WhatsAppAccount.objects.update_or_create(
        phone_number_id=NUMBER,
        defaults={
            "project": project,
            "waba_id": WABA,
            "display_phone_number": DISPLAY,
            "access_token": TOKEN,
            "app_secret": SECRET,
            "base_url": f"http://{HOST}:{sim_port}/simulator/graph",
            "throughput_mps": limit,
            "status": "active",
            "status_reason": "",
        },
    )
    have = Subscriber.objects.filter(project=project).count()
    if have < subscribers:
        log(f"adding {subscribers - have:,} subscribers (INSERT ... SELECT)")
        with connection.cursor() as cur:
            cur.execute(
                """
                INSERT INTO subscribers_subscriber (public_id, phone, wa_id, name, email, language, country,
                    time_zone, whatsapp_consent, created_at, updated_at, project_id)
                SELECT gen_random_uuid(), '+49151' || lpad(i::text, 8, '0'), '49151' || lpad(i::text, 8, '0'),
                    'Bench ' || i, '', 'de', 'DE', 'Europe/Berlin', 'opted_in', now(), now(), %s
                FROM generate_series(%s, %s) AS i
                """,
                [project.pk, have + 1, subscribers],
            )
            cur.execute("ANALYZE subscribers_subscriber")
    # hello_world for one-message rows, autumn_promo (marketing, two body parameters) for campaigns:
    # approved at the simulator and in the panel's template list alike.
    for definition in (services.HELLO_WORLD, promo_template()):
        services.seed_templates(waba_id=WABA, definitions=[definition])
        MessageTemplate.objects.update_or_create(
            account=account,
            name=definition["name"],
            language=definition["language"],
            defaults={
                "project": project,
                "category": definition["category"],
                "status": "APPROVED",
                "components": definition["components"],
            },
        )
    # A frequency cap or quiet hours left by someone would skip or hold this run's promotion.
    SendingPolicy.objects.filter(project=project).delete()
    return project, account


def promo_template() -> dict:
    from whatsapp.simulator import services

    return next(t for t in services.DEMO_TEMPLATES if t["name"] == PROMO)


def set_audience(project, recipients: int) -> int:
    """The project's first ``recipients`` subscribers (by id) opted in, every later one not.

    One UPDATE that touches only rows whose consent differs, so a run of the same size writes
    nothing. Both campaign audiences ("everyone opted in" and the segment of subscribers
    reachable on WhatsApp) are then exactly these. Returns how many are opted in.
    """
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """
            WITH ranked AS (
                SELECT id, CASE WHEN row_number() OVER (ORDER BY id) <= %s THEN 'opted_in' ELSE 'unknown' END
                    AS consent
                FROM subscribers_subscriber WHERE project_id = %s
            )
            UPDATE subscribers_subscriber s SET whatsapp_consent = r.consent
            FROM ranked r WHERE s.id = r.id AND s.whatsapp_consent <> r.consent
            """,
            [recipients, project.pk],
        )
        if cur.rowcount:
            cur.execute("ANALYZE subscribers_subscriber")
        cur.execute(
            "SELECT count(*) FROM subscribers_subscriber WHERE project_id = %s AND whatsapp_consent = 'opted_in'",
            [project.pk],
        )
        return cur.fetchone()[0]


def clear_outbox(project) -> None:
    """Remove the project's outbox rows and campaigns of earlier runs (the rows in one DELETE)."""
    from django.db import connection

    from campaigns.models import Campaign

    with connection.cursor() as cur:
        cur.execute("DELETE FROM campaigns_message WHERE project_id = %s", [project.pk])
    # Few rows, and what hangs off them (given recipients, figures) goes with them.
    Campaign.objects.filter(project=project).delete()
    # Each run leaves every outbox row it sent four or five dead versions (lease, claim, posting,
    # write-back); where autovacuum is off or behind (it is off on the benchmark machine), later
    # runs would walk more of them than earlier ones. Every run starts from vacuumed tables, with
    # statistics from before its campaign exists, as a campaign launched in production meets them.
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with connection.cursor() as cur:
            cur.execute("VACUUM (ANALYZE) campaigns_message, campaigns_audiencerow, campaigns_campaigncounter,"
                        " campaigns_campaignminute, subscribers_subscriber")  # fmt: skip


def launch_campaign(project, account, *, audience: str, recipients: int, name: str = "Send bench promotion"):
    """A promotion to the first ``recipients`` subscribers, created and launched through the services a
    person's clicks call; the audience snapshot is left to ``lifecycle.start_due`` (the scheduler)."""
    from campaigns import drafts, lifecycle
    from campaigns.models import AudienceKind, CampaignPurpose
    from controlpanel.services import Actor
    from subscribers.models import Segment
    from subscribers.segments.service import save_segment

    actor = Actor(label="send bench")
    opted_in = set_audience(project, recipients)
    if opted_in != recipients:
        sys.exit(f"the project has {opted_in:,} subscribers to opt in, not {recipients:,}")
    clear_outbox(project)
    segment = None
    if audience == "segment":
        existing = Segment.objects.filter(project=project, name=SEGMENT).first()
        segment = save_segment(project=project, name=SEGMENT, rule=REACHABLE, actor=actor, segment=existing)
    data = drafts.CampaignInput(
        name=name,
        purpose=CampaignPurpose.PROMOTION,
        account=account,
        template_name=PROMO,
        languages=[promo_template()["language"]],
        bindings={"body": {"1": '{{ subscriber.name | default: "there" }}', "2": "BENCH20"}},
        audience_kind=AudienceKind.SEGMENT if segment is not None else AudienceKind.EVERYONE,
        segment=segment,
    )
    campaign = drafts.create_campaign(project=project, actor=actor, data=data)
    return lifecycle.launch(campaign=campaign, actor=actor)


def reset_outbox(project, account, recipients: int) -> int:
    """Replace the project's outbox by ``recipients`` queued hello_world rows (one INSERT ... SELECT)."""
    from django.db import connection

    from whatsapp.models import MessageTemplate

    template = MessageTemplate.objects.get(account=account, name="hello_world")
    clear_outbox(project)
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO campaigns_message (public_id, channel, status, kind, template_name, template_language,
                components, body, marketing, reason, error_title, error_details, pricing_category,
                pricing_type, attempts, history, created_at, updated_at, project_id, subscriber_id,
                "values", request_hash, account_id, template_id)
            SELECT gen_random_uuid(), 'whatsapp', 'queued', 'template', 'hello_world', 'en_US', '[]'::jsonb,
                'Welcome and congratulations!!', false, '', '', '', '', '', 0, '[]'::jsonb, now(), now(),
                %s, s.id, '{}'::jsonb, '', %s, %s
            FROM subscribers_subscriber s WHERE s.project_id = %s ORDER BY s.id LIMIT %s
            """,
            [project.pk, account.pk, template.pk, project.pk, recipients],
        )
        written = cur.rowcount
        cur.execute("ANALYZE campaigns_message")
    return written


def status_counts(project) -> dict[str, int]:
    from django.db.models import Count

    from campaigns.models import AudienceRow, Message

    rows = Message.objects.filter(project=project).values("status").annotate(n=Count("id"))
    counts = {row["status"]: row["n"] for row in rows}
    # Recipients whose outbox row is not written yet count as the row will (materialize.py).
    for reason, n in (
        AudienceRow.objects.filter(campaign__project=project).values_list("reason").annotate(n=Count("*"))
    ):
        status = "queued" if reason == "" else "skipped"
        counts[status] = counts.get(status, 0) + n
    return counts


# --- processes ------------------------------------------------------------------------------------
def start(name: str, cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen:
    # The chaos test calls this without main(): on a fresh machine the log folder is not there yet.
    benchlib.BENCH_DIR.mkdir(parents=True, exist_ok=True)
    out = open(benchlib.BENCH_DIR / f"send-{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
    # A session of its own: stopping it (by its pid) stops its children, nothing else.
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def wait_http(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def simulator_supports(root: Path, option: str) -> bool:
    out = subprocess.run([sys.executable, "manage.py", "runsimulator", "--help"], cwd=root,
                         capture_output=True, text=True, env=os.environ.copy())  # fmt: skip
    return option in out.stdout


@contextmanager
def simulator(
    *, port: int, callback: str, root: Path = ROOT, workers: int = 1, threads: int = 64,
    latency_ms: int = 0, webhooks: bool = True, extra_env: dict[str, str] | None = None, interface: str = "",
) -> Iterator[subprocess.Popen]:  # fmt: skip
    env = {**os.environ, "SIMULATOR_LATENCY_MS": str(latency_ms), **(extra_env or {})}
    cmd = [sys.executable, "manage.py", "runsimulator", "--port", str(port), "--callback-base", callback,
           "--workers", str(workers)]  # fmt: skip
    if simulator_supports(root, "--threads"):
        cmd += ["--threads", str(threads)]
        if not webhooks:
            cmd += ["--no-webhooks"]
    if interface and simulator_supports(root, "--interface"):
        cmd += ["--interface", interface]
    proc = start("simulator", cmd, env, cwd=root)
    try:
        wait_http(f"http://{HOST}:{port}/simulator/graph/")
        yield proc
    finally:
        stop(proc)


class _Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextmanager
def webhook_sink() -> Iterator[str]:
    """Where the simulator's status webhooks go when no panel is measured: 200 at once."""
    server = http.server.ThreadingHTTPServer((HOST, 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()


# --- CPU from /proc ------------------------------------------------------------------------------
@dataclass
class CpuMeter:
    """CPU seconds of a group of processes between start() and stop(); processes may come and go."""

    pids: Callable[[], list[int]]
    before: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0

    @staticmethod
    def _each(pids: list[int]) -> dict[int, float]:
        return {pid: benchlib.process_cpu([pid]) for pid in pids}

    def start(self) -> None:
        self.before = self._each(self.pids())

    def stop(self) -> float:
        after = self._each(self.pids())
        self.seconds = sum(cpu - self.before.get(pid, 0.0) for pid, cpu in after.items())
        return self.seconds


def tree(proc: subprocess.Popen | None) -> Callable[[], list[int]]:
    def pids() -> list[int]:
        if proc is None or proc.poll() is not None:
            return []
        try:
            return benchlib.process_tree(proc.pid)
        except FileNotFoundError:
            return []

    return pids


def postgres_backends() -> list[int]:
    return benchlib.database_backends(exclude_own=True)


def redis_pid(url: str) -> Callable[[], list[int]]:
    import redis

    pid = int(redis.Redis.from_url(url).info("server")["process_id"])
    return lambda: [pid]


# --- what the simulator accepted -----------------------------------------------------------------
def ledger(port: int) -> dict:
    answer = requests.get(f"http://{HOST}:{port}/simulator/sent.json", params={"phone_number_id": NUMBER},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)  # fmt: skip
    answer.raise_for_status()
    return answer.json()


def acceptance_times(state_dir: Path) -> list[float]:
    with sqlite3.connect(state_dir / "state.sqlite3") as conn:
        rows = conn.execute(
            "SELECT created_at FROM messages WHERE phone_number_id = ? AND direction = 'business'"
            " ORDER BY created_at",
            (NUMBER,),
        ).fetchall()
    return [r[0] for r in rows]


def refusal_times(state_dir: Path) -> list[float]:
    with sqlite3.connect(state_dir / "state.sqlite3") as conn:
        rows = conn.execute(
            "SELECT at FROM refusals WHERE phone_number_id = ? ORDER BY at", (NUMBER,)
        ).fetchall()
    return [r[0] for r in rows]


def refusals(state_dir: Path) -> dict[int, int]:
    with sqlite3.connect(state_dir / "state.sqlite3") as conn:
        rows = conn.execute(
            "SELECT code, count(*) FROM refusals WHERE phone_number_id = ? GROUP BY code", (NUMBER,)
        ).fetchall()
    return {int(c): int(n) for c, n in rows}


def throttle_check(times: list[float], limit: int) -> dict[str, Any]:
    """The busiest sliding 1-second window, and the full seconds' average against ``limit``."""
    busiest, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        busiest = max(busiest, i - j + 1)
    per_second: dict[int, int] = {}
    for t in times:
        per_second[int(t)] = per_second.get(int(t), 0) + 1
    every = range(min(per_second), max(per_second) + 1) if per_second else range(0)
    full = every[1:-1]  # the first and last seconds are partial; a second without a send counts too
    average = sum(per_second.get(s, 0) for s in full) / len(full) if full else 0.0
    return {"busiest_window": busiest, "average": average, "share": average / limit if limit else 0.0,
            "first": min(per_second, default=0), "seconds": [per_second.get(s, 0) for s in every]}  # fmt: skip


# --- mode: the simulator alone ---------------------------------------------------------------------
def drive(port: int, phones: list[str], concurrency: int) -> dict[str, int]:
    """POST a hello_world to each phone from ``concurrency`` threads; count the answers."""
    url = f"http://{HOST}:{port}/simulator/graph/v23.0/{NUMBER}/messages"
    counts: dict[str, int] = {}
    lock = threading.Lock()
    todo = iter(phones)

    def work() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        while True:
            with lock:
                phone = next(todo, None)
            if phone is None:
                return
            body = {"messaging_product": "whatsapp", "to": phone, "type": "template",
                    "template": {"name": "hello_world", "language": {"code": "en_US"}}}  # fmt: skip
            try:
                status = str(session.post(url, json=body, timeout=30).status_code)
            except requests.RequestException as exc:
                status = type(exc).__name__
            with lock:
                counts[status] = counts.get(status, 0) + 1

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def run_simulator(args) -> None:
    from subscribers.models import Subscriber

    root = Path(args.root).resolve()
    port = free_port()
    project, _ = ensure_audience(args.subscribers, limit=1_000_000, sim_port=port)
    phones = list(
        Subscriber.objects.filter(project=project)
        .order_by("id")
        .values_list("phone", flat=True)[: args.messages]
    )
    extra = {"SIMULATOR_DELAYS_MS": "300,800,1500"}
    with webhook_sink() as sink, simulator(port=port, callback=sink, root=root, workers=args.workers,
                                           interface=args.interface,
                                           threads=args.threads, webhooks=not args.no_webhooks,
                                           extra_env=extra) as sim:  # fmt: skip
        drive(port, phones[: min(500, len(phones) // 10)], args.concurrency)  # warm up (imports, caches)
        rest = phones[min(500, len(phones) // 10) :]
        # From the state file, not sent.json: an older checkout's simulator has no ledger endpoint.
        state_dir = Path(os.environ["SIMULATOR_STATE_DIR"])
        before_accepted = len(acceptance_times(state_dir))
        sim_cpu, pg_cpu = CpuMeter(tree(sim)), CpuMeter(postgres_backends)
        load_before = load()
        sim_cpu.start()
        pg_cpu.start()
        started = time.perf_counter()
        counts = drive(port, rest, args.concurrency)
        elapsed = time.perf_counter() - started
        time.sleep(args.settle)  # the status webhooks of the last messages go out too
        sim_cpu.stop()
        pg_cpu.stop()
        accepted = len(acceptance_times(state_dir)) - before_accepted
    label = f"{'before' if root != ROOT else 'after'} ({root})"
    per = 1000 / max(1, accepted)
    log(
        f"simulator {label}, {args.workers} worker(s), webhooks {'off' if args.no_webhooks else 'on'}: "
        f"{accepted:,} accepted in {elapsed:.1f} s ({accepted / elapsed:,.0f}/s, {args.concurrency} client "
        f"threads), answers {counts}; CPU ms per accepted message: simulator {sim_cpu.seconds * per:.2f}, "
        f"PostgreSQL {pg_cpu.seconds * per:.2f}; load {load_before:.2f} -> {load():.2f}"
    )


# --- mode: the whole pipeline -----------------------------------------------------------------------
def scheduler_tick() -> Callable[[], None]:
    """What ``runscheduler`` runs for sending, called here every 0.2 s: the audience snapshot of a
    due campaign (``lifecycle.start_due``, every 5 s there; it answers at once when nothing is
    due) and the dispatcher (``sending.dispatch``, every second there); every fifth call, the
    outbox rows a running campaign needs next (``materialize.pending``, after ``start_due`` there)."""
    from campaigns import lifecycle, materialize, sending

    calls = itertools.count()

    def tick() -> None:
        lifecycle.start_due()
        if next(calls) % 5 == 0:
            materialize.pending(budget_seconds=1.0)
        sending.dispatch()

    return tick


@dataclass
class PipelineRun:
    source: str
    processes: int
    latency_ms: int
    recipients: int
    seconds: float = 0.0
    snapshot_seconds: float = 0.0  # launch until the audience's rows are committed (0.2 s polls)
    steady_rate: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    throttle: dict[str, float] = field(default_factory=dict)
    refused: dict[int, int] = field(default_factory=dict)
    accepted: int = 0
    duplicates: int = 0
    campaign: str = "-"  # the campaign's status at the end ("completed"), "-" for outbox rows
    load: str = ""

    def row(self) -> str:
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in self.cpu_ms.items())
        rate = self.recipients / self.seconds if self.seconds else 0.0
        snapshot = f"{self.snapshot_seconds:.1f}" if self.source == "campaign" else "-"
        return (
            f"| {self.source} | {self.processes} | {self.latency_ms} | {self.recipients:,} | {rate:,.0f} "
            f"| {self.steady_rate:,.0f} | {snapshot} | {cpu} | {self.throttle.get('busiest_window', 0):.0f} "
            f"| {self.throttle.get('share', 0):.0%} | {self.refused or '-'} | {self.accepted:,} | {self.duplicates} "
            f"| {self.counts} | {self.campaign} | {self.load} |"
        )


HEAD = (
    "| source | worker processes | latency ms | rows | msg/s end to end | msg/s steady | launch to rows s | CPU ms/msg "
    "| busiest 1-s window | avg of limit | refused | accepted | duplicates | rows by state | campaign "
    "| load 1-min before/after |\n"
    "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---|---|---|"
)


def steady_rate(project) -> float:
    """Messages per second between the 10th and the 90th percentile of sent_at (no ramp-up, no tail)."""
    from campaigns.models import Message

    times = sorted(
        t.timestamp()
        for t in Message.objects.filter(project=project, sent_at__isnull=False).values_list(
            "sent_at", flat=True
        )
    )
    if len(times) < 20:
        return 0.0
    lo, hi = times[len(times) // 10], times[len(times) * 9 // 10]
    return (len(times) * 8 // 10) / (hi - lo) if hi > lo else 0.0


def run_pipeline_once(args, processes: int, latency_ms: int, state_root: Path) -> PipelineRun:
    from campaigns import progress
    from campaigns.models import Campaign, CampaignStatus
    from whatsapp.simulator import store

    state_dir = state_root / f"p{processes}-l{latency_ms}"
    os.environ["SIMULATOR_STATE_DIR"] = str(state_dir)
    store.close()
    sim_port = free_port()
    project, account = ensure_audience(args.recipients, limit=args.limit, sim_port=sim_port)
    campaign = None
    if args.source == "outbox":
        written = reset_outbox(project, account, args.recipients)
    else:
        clear_outbox(project)  # the rows come with the snapshot, after the launch below
        written = args.recipients
    run = PipelineRun(args.source, processes, latency_ms, written)
    env = {**os.environ, "SIMULATOR_STATE_DIR": str(state_dir)}
    web = None
    callback = f"http://{HOST}:{free_port()}"
    with webhook_sink() as sink:
        if args.webhooks:
            port = int(callback.rsplit(":", 1)[1])
            web = start("web", [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", HOST,
                                "--port", str(port), "--workers", "1", "--blocking-threads", "16",
                                "controlpanel.wsgi:application"], env)  # fmt: skip
        else:
            callback = sink
        with simulator(port=sim_port, callback=callback, workers=args.sim_workers, threads=args.sim_threads,
                       latency_ms=latency_ms, webhooks=args.webhooks, extra_env=env,
                       interface=args.sim_interface) as sim:  # fmt: skip
            tick = scheduler_tick()
            meters = {
                "workers": CpuMeter(lambda: tree(workers)()),
                "simulator": CpuMeter(tree(sim)),
                "PostgreSQL": CpuMeter(postgres_backends),
                "Redis": CpuMeter(redis_pid(os.environ["DRAMATIQ_BROKER_URL"])),
            }
            if web is not None:
                meters["web"] = CpuMeter(tree(web))
            load_before = load()
            workers = start("workers", [sys.executable, "manage.py", "rundramatiq", "--processes", str(processes),
                                        "--threads", str(args.threads)], env)  # fmt: skip
            # The workers are up before the clock starts: their boot is not the pipeline's rate.
            wait_workers(workers, processes)
            for meter in meters.values():
                meter.start()
            started = time.perf_counter()
            if args.source == "campaign":
                campaign = launch_campaign(
                    project, account, audience=args.audience, recipients=args.recipients
                )
            deadline = started + args.timeout
            while time.perf_counter() < deadline:
                tick()
                counts = status_counts(project)
                snapshotted = (
                    campaign is None
                    or Campaign.objects.filter(pk=campaign.pk, snapshot_at__isnull=False).exists()
                )
                if snapshotted and campaign is not None and not run.snapshot_seconds:
                    run.snapshot_seconds = time.perf_counter() - started
                if snapshotted and not counts.get("queued") and not counts.get("sending"):
                    break
                time.sleep(0.2)
            run.seconds = time.perf_counter() - started
            for meter in meters.values():
                meter.stop()  # the workers' CPU is read while they still run
            stop(workers)
            run.counts = status_counts(project)
            run.steady_rate = steady_rate(project)
            book = ledger(sim_port)
            run.accepted = book["accepted"]
            run.duplicates = sum(1 for n in book["recipients"].values() if n > 1)
    stop(web)
    if campaign is not None:
        progress.complete_finished([campaign.pk])
        campaign.refresh_from_db()
        run.recipients = campaign.audience_size or 0
        run.campaign = campaign.status
        if campaign.status != CampaignStatus.COMPLETED:
            log(
                f"campaign {campaign.pk} is {campaign.status}: {campaign.status_reason or 'rows not terminal'}"
            )
    per = 1000 / max(
        1, run.counts.get("sent", 0) + run.counts.get("delivered", 0) + run.counts.get("read", 0)
    )
    run.cpu_ms = {name: meter.seconds * per for name, meter in meters.items()}
    run.throttle = throttle_check(acceptance_times(state_dir), args.limit)
    run.refused = refusals(state_dir)
    run.load = f"{load_before:.2f} / {load():.2f}"
    log(f"accepted per second: {run.throttle['seconds']}")  # gaps and dips, for the log only
    refused_at = [int(t) - run.throttle["first"] for t in refusal_times(state_dir)]
    log(f"refused per second: {[refused_at.count(i) for i in range(len(run.throttle['seconds']))]}")
    log(HEAD.splitlines()[0])
    log(run.row())
    return run


def wait_workers(workers: subprocess.Popen, processes: int, seconds: float = 120) -> None:
    """Until rundramatiq's ``processes`` worker processes run (a parent plus its children)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if workers.poll() is not None:
            raise RuntimeError("rundramatiq exited; see var/bench/send-workers.log")
        if len(tree(workers)()) > processes:
            time.sleep(2)  # imports done, consumers connecting
            return
        time.sleep(0.2)
    raise RuntimeError(f"rundramatiq did not start {processes} processes within {seconds:.0f} s")


def run_pipeline(args) -> None:
    import redis

    results = []
    with tempfile.TemporaryDirectory(prefix="send-bench-") as tmp:
        try:
            for processes in [int(p) for p in args.processes.split(",")]:
                for latency in [int(x) for x in args.latency.split(",")]:
                    results.append(run_pipeline_once(args, processes, latency, Path(tmp)))
        finally:
            broker = redis.Redis.from_url(os.environ["DRAMATIQ_BROKER_URL"])
            namespace = os.environ["DRAMATIQ_NAMESPACE"]
            keys = list(broker.scan_iter(f"{namespace}*"))
            if keys:
                broker.delete(*keys)
    report = "\n".join([HEAD, *(r.row() for r in results)])
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# send_bench pipeline\n\n"
        f"limit {args.limit}/s, worker threads {args.threads}, simulator {args.sim_workers} "
        f"{args.sim_interface} worker(s)"
        f"{f' x {args.sim_threads} threads' if args.sim_interface == 'wsgi' else ''}, webhooks {'on' if args.webhooks else 'off'}\n\n{report}\n"
    )
    print(report)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    sim = sub.add_parser("simulator", help="CPU per accepted message of the standalone simulator")
    sim.add_argument("--root", default=str(ROOT), help="checkout whose simulator runs (before/after)")
    sim.add_argument("--messages", type=int, default=20_000)
    sim.add_argument("--subscribers", type=int, default=1_000_000, help="audience size in the database")
    sim.add_argument("--concurrency", type=int, default=16)
    sim.add_argument("--workers", type=int, default=1)
    sim.add_argument("--threads", type=int, default=64)
    sim.add_argument("--interface", choices=["asgi", "wsgi"], default="asgi", help="runsimulator --interface")
    sim.add_argument("--no-webhooks", action="store_true")
    sim.add_argument("--settle", type=float, default=3.0, help="seconds for the last webhooks")
    pipe = sub.add_parser("pipeline", help="the send path end to end")
    pipe.add_argument("--source", choices=["campaign", "outbox"], default="campaign",
                      help="a launched campaign (default) or queued one-message rows")  # fmt: skip
    pipe.add_argument("--audience", choices=["segment", "everyone"], default="segment",
                      help="the campaign's audience: a saved segment or everyone opted in")  # fmt: skip
    pipe.add_argument("--recipients", type=int, default=30_000)
    pipe.add_argument("--processes", default="1,2,4")
    pipe.add_argument("--threads", type=int, default=8, help="threads per worker process")
    pipe.add_argument("--latency", default="0,200", help="simulator latency per call, ms")
    pipe.add_argument("--limit", type=int, default=1000, help="the account's messages per second")
    pipe.add_argument("--sim-workers", type=int, default=1,
                      help="simulator processes (one event loop each; more contend for its state file)")  # fmt: skip
    pipe.add_argument("--sim-interface", choices=["asgi", "wsgi"], default="asgi",
                      help="runsimulator --interface (wsgi: a thread per request, --sim-threads)")  # fmt: skip
    pipe.add_argument("--sim-threads", type=int, default=128)
    pipe.add_argument("--webhooks", action="store_true", help="status webhooks back to a web server")
    pipe.add_argument("--timeout", type=float, default=900)
    pipe.add_argument("--out", default=str(benchlib.BENCH_DIR / "send_bench.md"))
    args = parser.parse_args()
    benchlib.BENCH_DIR.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="send-bench-state-"))
    setup(state)
    if args.mode == "pipeline" and not os.environ.get("DRAMATIQ_BROKER_URL", "").startswith("redis"):
        sys.exit("pipeline mode runs the production broker: set DRAMATIQ_BROKER_URL=redis://...")
    (run_simulator if args.mode == "simulator" else run_pipeline)(args)


if __name__ == "__main__":
    main()
