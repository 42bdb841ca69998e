"""CSV import benchmark: generate a CSV (phone, name, 3 tags, consent) and import it, twice.

    DATABASE_URL=postgres://... SECRET_KEY=x FIELD_ENCRYPTION_KEY=... \
        .venv/bin/python bench/import_bench.py --rows 1000000 [--csv /tmp/bench/sub1m.csv]

The first run creates every subscriber (with tag values and a consent ledger row each); the
second imports the same file again and must change nothing. Prints seconds and rows/s of the
upload step (format detection and row count) and of each job run. Goal: 1,000,000 rows < 60 s.

``--csv FILE`` imports that file; when it does not exist it is generated there first (and kept
for the next run, as docs/benchmarks-import.md's runs reuse it). Without ``--csv`` the file is
generated in a temporary directory and removed afterwards. The benchmark project, its jobs'
files and a benchmark user created by the run are removed at the end (also on Ctrl-C or
``kill``), unless ``--keep``.

``--phones N`` only measures the import's phone check (no database): the shortcut that
Validator uses against libphonenumber's public API, on N generated German mobile numbers.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import benchlib

ROOT = Path(__file__).resolve().parent.parent
CITIES = ["Berlin", "Hamburg", "München", "Köln", "Frankfurt", "Stuttgart", "Leipzig", "Dresden"]
FIRST = ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannah", "Jonas", "Lena", "Max", "Nora"]
BENCH_USER = "import-bench@example.com"
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann"]


MOBILE_PREFIXES = ("151", "160", "170", "171", "172", "175", "176")


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """Unique German mobile numbers in E.164, as CRM exports write them."""
    rng = random.Random(seed)
    numbers = rng.sample(range(10_000_000, 99_999_999), rows)
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("phone,name,city,orders,vip,whatsapp_opt_in\n")
        for n in numbers:
            prefix = rng.choice(MOBILE_PREFIXES)
            f.write(
                f"+49{prefix}{n},{rng.choice(FIRST)} {rng.choice(LAST)},{rng.choice(CITIES)},"
                f"{rng.randint(0, 40)},{rng.choice(('true', 'false'))},{rng.choice(('yes', 'yes', 'no'))}\n"
            )


def phone_check(count: int) -> None:
    """CPU time per number of the import's phone check and of libphonenumber's public API.

    The import's reader thread validates every row on one core and is the slower side of the
    pipeline, so each microsecond per number is about a second per million rows.
    """
    import phonenumbers

    from subscribers.imports.phone_numbers import fast_phone
    from subscribers.phones import normalize_phone

    rng = random.Random(7)
    numbers = [
        f"+49{rng.choice(MOBILE_PREFIXES)}{n}" for n in rng.sample(range(10_000_000, 99_999_999), count)
    ]

    def public_validity(text: str, country: str) -> str:
        # The public API's cheapest route for +<digits>: no parsing, only is_valid_number().
        number = phonenumbers.PhoneNumber(country_code=49, national_number=int(text[3:]))
        return text if phonenumbers.is_valid_number(number) else normalize_phone(text, country)

    variants = {
        "import shortcut (fast_phone, the library's metadata)": fast_phone,
        "public: PhoneNumber + is_valid_number": public_validity,
        "public: parse + is_valid_number + format (normalize_phone)": normalize_phone,
    }
    print(f"{count:,} German mobile numbers; load average {benchlib.load_average()}")
    for label, check in variants.items():
        assert all(check(n, "DE") == n for n in numbers[:1000]), label
        runs = []
        for _ in range(3):
            cpu = time.process_time()
            for n in numbers:
                check(n, "DE")
            runs.append(time.process_time() - cpu)
        best = min(runs)
        print(
            f"  {label}: {best:.2f} CPU-s, {best / count * 1e6:.1f} µs per number "
            f"(about {best / count * 1e6:.0f} s per million rows)"
        )


def _instrument(imports) -> dict[str, float]:
    """Wrap the pipeline's steps with timers (seconds per step, summed over the run)."""
    import functools

    timers: dict[str, float] = {}

    def timed(owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timers[label] = timers.get(label, 0.0) + time.perf_counter() - t

        setattr(owner, name, wrapper)

    timed(imports.Validator, "check", "validate")
    for name in (
        "fetch_subscribers",
        "fetch_tag_values",
        "insert_subscribers",
        "update_subscribers",
        "delete_tag_values",
        "insert_tag_values",
        "insert_consent",
        "insert_events",
    ):
        timed(imports.PostgresStore, name, name)
    timed(imports.Applier, "apply", "apply (whole chunk, with commit)")
    return timers


class CpuMeter:
    """CPU seconds of this process and of this database's PostgreSQL backends (same machine).

    Wall time on a shared machine depends on the neighbours; CPU time does not, so both are shown.
    """

    def __init__(self) -> None:
        import threading

        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        import psycopg
        from django.db import connection

        params = connection.get_connection_params()
        with psycopg.connect(**params, autocommit=True) as conn:
            own = conn.info.backend_pid
            while not self.stop.is_set():
                pids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s",
                        [own],
                    )
                ]
                for pid in pids:
                    cpu = self._cpu(pid)
                    if cpu is not None:
                        self.first.setdefault(pid, cpu)
                        self.last[pid] = cpu
                self.stop.wait(0.2)

    def __enter__(self) -> CpuMeter:
        from django.db import connection

        self.start_self = time.process_time()
        if connection.vendor == "postgresql":  # elsewhere there are no backends to sample
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self.python = time.process_time() - self.start_self
        self.postgres = sum(self.last[p] - self.first[p] for p in self.last)


def _drop(project) -> None:
    """Delete the benchmark project with its jobs' files; set-based, as the ORM's cascade
    collects rows in Python."""
    from django.db import connection, transaction

    from subscribers.models import ImportJob

    for job in ImportJob.objects.for_project(project):
        # A run that was interrupted leaves its source file behind (its rejected rows go with
        # the job).
        for f in (job.file, job.report):
            if f and f.name:
                f.storage.delete(f.name)
    with transaction.atomic(), connection.cursor() as cur:
        for table in (
            "subscribers_tagvalue",
            "subscribers_consentchange",
            "subscribers_event",
            "subscribers_subscriber",
        ):
            cur.execute(f"DELETE FROM {table} WHERE project_id = %s", [project.pk])  # noqa: S608
        project.delete()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--csv", type=Path, help="import this CSV; generated there first if missing")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark project afterwards")
    parser.add_argument("--stages", action="store_true", help="time validation and each database step")
    parser.add_argument("--writers", type=int, help="writer threads (settings.IMPORT_WRITERS, default 2)")
    parser.add_argument(
        "--wait-load", type=float, default=0, help="before each import wait (<= 20 min) for a lower load"
    )
    parser.add_argument("--phones", type=int, metavar="N", help="only measure the phone check on N numbers")
    args = parser.parse_args()

    # A plain `kill` then still runs the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
    import django

    django.setup()
    if args.phones:
        phone_check(args.phones)
        return
    from django.conf import settings
    from django.core.files.uploadedfile import UploadedFile
    from django.db import connection

    from controlpanel.models import Project, User
    from controlpanel.services import Actor
    from subscribers import imports
    from subscribers.models import ImportJob

    if connection.vendor != "postgresql":
        print("warning: not PostgreSQL; the 60 s goal is for PostgreSQL", file=sys.stderr)
    settings.IMPORT_MAX_ROWS = max(args.rows, imports.max_rows())
    if args.writers:
        settings.IMPORT_WRITERS = args.writers

    workdir = None if args.csv else Path(tempfile.mkdtemp(prefix="import-bench-"))
    csv_path = args.csv or workdir / f"subscribers-{args.rows}.csv"
    project = user = None
    try:
        if not csv_path.exists():
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            generate(csv_path, args.rows)
            print(
                f"generated {args.rows:,} rows in {csv_path} ({csv_path.stat().st_size / 1e6:.0f} MB) "
                f"in {time.perf_counter() - t:.1f} s"
            )

        timers = _instrument(imports) if args.stages else None
        project = Project.objects.create(name="Import benchmark", slug=f"import-bench-{int(time.time())}")
        # As in the panel, a user runs the import: each ledger row then names them (actor_user).
        runner = User.objects.filter(email=BENCH_USER).first()
        if runner is None:
            runner = user = User.objects.create_user(BENCH_USER)  # ours: removed at the end
        actor = Actor(user=runner)
        for attempt in ("first import", "same file again"):
            if args.wait_load:
                benchlib.wait_for_load(args.wait_load)
            t = time.perf_counter()
            with csv_path.open("rb") as f:
                upload = UploadedFile(f, name=csv_path.name, size=csv_path.stat().st_size)
                job = imports.create_import(project=project, upload=upload, actor=actor)
            upload_s = time.perf_counter() - t
            job = imports.start_import(
                job=job,
                columns=job.mapping["columns"],
                key="phone",
                default_evidence="Opted in at checkout (benchmark data)",
                actor=actor,
            )
            t = time.perf_counter()
            with CpuMeter() as cpu:
                imports.run_import(job_id=job.pk)
            run_s = time.perf_counter() - t
            job = ImportJob.objects.get(pk=job.pk)
            rows = job.total_rows or 0
            print(
                f"{attempt}: upload {upload_s:.1f} s; job {run_s:.1f} s = {rows / run_s:,.0f} rows/s; "
                f"total {upload_s + run_s:.1f} s; status {job.status}; created {job.created_count:,}, "
                f"updated {job.updated_count:,}, unchanged {job.unchanged_count:,}, "
                f"rejected {job.rejected_count:,}"
            )
            print(
                f"   CPU: python {cpu.python:.1f} s, postgres backends {cpu.postgres:.1f} s; "
                f"load average {benchlib.load_average()} (2 cores: above 2, neighbours took CPU)"
            )
            if timers is not None:
                print(
                    "   stages (s, summed over threads): "
                    + ", ".join(f"{k} {v:.1f}" for k, v in timers.items())
                )
                timers.clear()
    finally:
        if not args.keep:
            t = time.perf_counter()
            if project is not None:
                _drop(project)
            if user is not None:
                user.delete()
            print(f"(cleanup {time.perf_counter() - t:.0f} s)")
        if workdir is not None:
            csv_path.unlink(missing_ok=True)
            workdir.rmdir()


if __name__ == "__main__":
    main()
