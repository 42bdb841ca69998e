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


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
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
        return (
            f"| {self.name} | {len(self.samples)} | {self.p50:.1f} | {self.p95:.1f} | {self.max:.1f} "
            f"| {target} | {self.verdict} | {self.note} |"
        )


TABLE_HEAD = (
    "| measurement | n | p50 ms | p95 ms | max ms | target p95 ms | result | note |\n"
    "|---|---:|---:|---:|---:|---:|---|---|"
)


def table(results: list[Result]) -> str:
    return "\n".join([TABLE_HEAD, *(r.row() for r in results)])


def measure(name: str, fn: Callable[[], object], *, repeat: int, warmup: int, **kw) -> Result:
    """Run ``fn`` ``warmup`` times unmeasured (warm caches), then ``repeat`` times timed."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    result = Result(name, samples, **kw)
    print(f"  {name:<72} p50 {result.p50:8.1f}  p95 {result.p95:8.1f}  max {result.max:8.1f} ms", flush=True)
    return result


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    # Plain http on 127.0.0.1: secure-only cookies would never come back to the client.
    env.setdefault("SECURE_COOKIES", "false")
    env.setdefault("STATIC_ROOT", str(BENCH_DIR / "static"))
    return env


@contextmanager
def granian(port: int, *, workers: int = 2, blocking_threads: int = 8) -> Iterator[str]:
    """Serve controlpanel.wsgi:application with granian on 127.0.0.1 (the README's production command).

    Static files are collected first (whitenoise's manifest storage needs them). The server
    is this process's child and is stopped by its own pid.
    """
    env = server_env()
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
    base = f"http://{HOST}:{port}"
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


def pg_settings() -> dict[str, str]:
    from django.db import connection

    names = [
        "server_version", "shared_buffers", "work_mem", "effective_cache_size", "random_page_cost",
        "max_parallel_workers_per_gather", "jit",
    ]  # fmt: skip
    with connection.cursor() as cur:
        cur.execute("SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)", [names])
        rows = {name: f"{setting}{'' if unit in (None, '') else ' ' + unit}" for name, setting, unit in cur}
        cur.execute("SHOW shared_buffers")
        rows["shared_buffers"] = cur.fetchone()[0]
        cur.execute("SHOW effective_cache_size")
        rows["effective_cache_size"] = cur.fetchone()[0]
        cur.execute("SHOW work_mem")
        rows["work_mem"] = cur.fetchone()[0]
    return {name: rows.get(name, "?") for name in names}


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
