"""Shared pieces of the segment and page benchmarks: Django setup, timing, a local granian server."""

from __future__ import annotations

import math
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # every benchmark stays on this machine
# Logs, collected static files and reports: $BENCH_DIR, else <tmp>/bench.
BENCH_DIR = Path(os.environ.get("BENCH_DIR") or Path(tempfile.gettempdir()) / "bench")
SERVER_DEFAULTS = {
    # Plain http on 127.0.0.1: secure-only cookies would never come back to the client.
    "SECURE_COOKIES": "false",
    "STATIC_ROOT": str(BENCH_DIR / "static"),
}


def setup_django() -> None:
    # A plain `kill` then still runs the cleanup (stop granian, drop the variants' objects).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
    # The same settings as the server (pages rendered in this process find its static manifest).
    for name, value in SERVER_DEFAULTS.items():
        os.environ.setdefault(name, value)
    import django

    django.setup()
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("The benchmarks need PostgreSQL: set DATABASE_URL (see bench/README.md).")


@dataclass
class Result:
    name: str
    samples: list[float]  # milliseconds
    target_ms: float | None = None
    note: str = ""
    cpu_ms: float | None = None  # server-side CPU per run, see cpu_meter()

    def pct(self, p: float) -> float:
        """Nearest-rank percentile: the smallest sample with at least p of them at or below it."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    @property
    def p50(self) -> float:
        return self.pct(0.50)

    @property
    def p95(self) -> float:
        return self.pct(0.95)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def verdict(self) -> str:
        if self.target_ms is None:
            return ""
        return "pass" if self.p95 < self.target_ms else "FAIL"

    def row(self) -> str:
        target = f"< {self.target_ms:.0f}" if self.target_ms is not None else ""
        cpu = f"{self.cpu_ms:.0f}" if self.cpu_ms is not None else ""
        return (
            f"| {self.name} | {len(self.samples)} | {self.p50:.1f} | {self.p95:.1f} | {self.max:.1f} "
            f"| {cpu} | {target} | {self.verdict} | {self.note} |"
        )


TABLE_HEAD = (
    "| measurement | n | p50 ms | p95 ms | max ms | CPU ms/run | target p95 ms | result | note |\n"
    "|---|---:|---:|---:|---:|---:|---:|---|---|"
)


def table(results: list[Result]) -> str:
    return "\n".join([TABLE_HEAD, *(r.row() for r in results)])


def measure(
    name: str,
    fn: Callable[[], object],
    *,
    repeat: int,
    warmup: int,
    cpu: Callable[[], float] | None = None,
    **kw,
) -> Result:
    """Run ``fn`` ``warmup`` times unmeasured (warm caches), then ``repeat`` times timed.

    ``cpu`` returns the CPU seconds used so far by the processes doing the work; its growth
    over the timed runs gives the CPU time per run, which other work on the machine does not
    inflate the way it inflates wall-clock time.
    """
    for _ in range(warmup):
        fn()
    samples = []
    cpu_before = cpu() if cpu else 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    result = Result(name, samples, **kw)
    if cpu:
        result.cpu_ms = (cpu() - cpu_before) / repeat * 1000
    cpu_text = f"  cpu {result.cpu_ms:7.1f}" if result.cpu_ms is not None else ""
    print(
        f"  {name:<76} p50 {result.p50:8.1f}  p95 {result.p95:8.1f}  max {result.max:8.1f} ms{cpu_text}",
        flush=True,
    )
    return result


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system, all threads) used so far by the processes ``pids``."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    return total


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (granian's workers)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            todo += [int(c) for c in children]
    return pids


def database_backends(*, exclude_own: bool) -> list[int]:
    """PIDs of the client backends connected to this database (the benchmark's own database).

    Parallel workers are separate, short-lived processes: their CPU is not included.
    """
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND (NOT %s OR pid <> pg_backend_pid())",
            [exclude_own],
        )
        return [pid for (pid,) in cur.fetchall()]


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**SERVER_DEFAULTS, **os.environ}
    env.update(extra or {})
    return env


class Server(str):
    """The base URL of a running server, with the pid of its main process."""

    pid: int


@contextmanager
def granian(
    port: int, *, workers: int = 2, blocking_threads: int = 32, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Serve controlpanel.wsgi:application with granian on 127.0.0.1 (the README's production command).

    ``env`` adds to (or overrides) this process's environment for the server, e.g.
    ``{"DATABASE_PG_SETTINGS": ""}``. Static files are collected first (whitenoise's manifest
    storage needs them). The server is this process's child and is stopped by its own pid.
    """
    env = server_env(env)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"], cwd=ROOT, env=env, check=True
    )
    log = BENCH_DIR / f"granian-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(Path(sys.executable).parent / "granian"),
        "--interface", "wsgi", "--host", HOST, "--port", str(port),
        "--workers", str(workers), "--blocking-threads", str(blocking_threads),
        "controlpanel.wsgi:application",
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = Server(f"http://{HOST}:{port}")
    base.pid = proc.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                sys.exit(f"granian exited with {proc.returncode}; see {log}")
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code < 500:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"granian did not answer on {base} within 60 s; see {log}")
            time.sleep(0.3)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


PLANNER_SETTINGS = [
    "server_version", "shared_buffers", "effective_cache_size", "max_parallel_workers_per_gather",
    "work_mem", "random_page_cost", "jit",
]  # fmt: skip


def session_settings(names: list[str] = PLANNER_SETTINGS) -> dict[str, str]:
    """The settings as this process's Django connection sees them (DATABASE_PG_SETTINGS applied)."""
    from django.db import connection

    with connection.cursor() as cur:
        return {name: _show(cur, name) for name in names}


def server_settings(names: list[str] = PLANNER_SETTINGS) -> dict[str, str]:
    """The settings a session gets without the app's options: the server's, database's and role's.

    That is what the application's sessions run with when ``DATABASE_PG_SETTINGS=""``.
    """
    import psycopg
    from django.db import connection

    keep = ("dbname", "user", "password", "host", "port")  # not "options"
    params = {k: v for k, v in connection.get_connection_params().items() if k in keep}
    with psycopg.connect(**params, autocommit=True) as raw, raw.cursor() as cur:
        return {name: _show(cur, name) for name in names}


def app_pg_options() -> list[tuple[str, str]]:
    """The ``-c name=value`` pairs settings.py passes to every session (from DATABASE_PG_SETTINGS)."""
    from django.db import connection

    options = connection.settings_dict.get("OPTIONS", {}).get("options", "")
    return [tuple(item.split("=", 1)) for item in re.findall(r"-c\s+(\S+=\S+)", options)]


def _show(cur, name: str) -> str:
    cur.execute("SELECT current_setting(%s)", [name])
    return cur.fetchone()[0]


def describe_settings(values: dict[str, str]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in values.items())


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def wait_for_load(limit: float, *, max_minutes: float = 20) -> None:
    """Wait until the 1-minute load average is below ``limit`` (other work shares the 2 cores)."""
    deadline = time.monotonic() + max_minutes * 60
    while os.getloadavg()[0] >= limit and time.monotonic() < deadline:
        print(f"  load average {os.getloadavg()[0]:.1f} >= {limit}: waiting", flush=True)
        time.sleep(30)


def owner_login(project):
    """The project's owner with a fresh random password (the generator leaves none usable)."""
    from controlpanel.models import Membership, Role

    membership = Membership.objects.filter(project=project, role=Role.OWNER).select_related("user").first()
    if membership is None:
        sys.exit(f"Project {project.slug!r} has no owner.")
    password = secrets.token_urlsafe(18)
    membership.user.set_password(password)
    membership.user.save(update_fields=["password"])
    return membership.user, password


def owner_logout(user) -> None:
    user.set_unusable_password()
    user.save(update_fields=["password"])


def login(http: requests.Session, base: str, email: str, password: str) -> None:
    page = http.get(f"{base}/accounts/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if token is None:
        sys.exit("No CSRF token on the login page.")
    response = http.post(
        f"{base}/accounts/login/",
        data={"username": email, "password": password, "csrfmiddlewaretoken": token.group(1)},
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=30,
        allow_redirects=False,
    )
    if response.status_code != 302:
        sys.exit(f"Login failed with {response.status_code}.")
