"""Email and push through the whole pipeline (issue 11, "Performance").

``email``: ``--messages`` emails to a local SMTP sink (aiosmtpd, its own process) through the
project's SMTP settings. ``push``: ``--messages`` pushes to the standalone push simulator
(``push/simulator/wsgi.py`` served by granian, FCM's URL shape) through the project's simulator
settings. Both on PostgreSQL with the Redis broker, in a database of your own whose name contains
``bench``; the project ``channelbench`` is reused and its outbox replaced.

Two phases, each timed:

1. **write**: ``mail.services.send_email`` / ``push.services.send_push`` for every recipient in
   this process (refusal rules, Liquid rendering, the outbox row), as a journey step or the API
   does. Reported as rows per second; no worker runs yet.
2. **send**: ``rundramatiq --processes P --threads T`` start (their boot is not counted), then
   this process ticks ``campaigns.channel_sending.dispatch`` every 0.2 s as the scheduler does
   every second, until no row is queued or sending. Reported: messages per second (sent rows over
   the phase's seconds), the CPU milliseconds per message of each process group (workers, the
   sink or the simulator's server, PostgreSQL, Redis), and what the receiver got (the sink's count,
   the simulator's stored pushes): equal to the sent rows, no duplicates.

Usage (see docs/benchmarks.md):
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_channel_bench SECRET_KEY=bench \\
         FIELD_ENCRYPTION_KEY=Jx9Yk0aZ3jv0zS0QqMuFqk2b7vO2TzD6pGQ1m0yQF3E= \\
         DRAMATIQ_BROKER_URL=redis://127.0.0.1:6379/13
  .venv/bin/python manage.py migrate
  .venv/bin/python bench/channel_bench.py email --messages 20000 --processes 2 --threads 8
  .venv/bin/python bench/channel_bench.py push --messages 50000 --processes 2 --threads 8
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import benchlib
from send_bench import (
    CpuMeter,
    free_port,
    load,
    log,
    postgres_backends,
    redis_pid,
    start,
    stop,
    tree,
    wait_http,
    wait_workers,
)

ROOT = benchlib.ROOT
HOST = benchlib.HOST
SLUG = "channelbench"
SINK = Path(__file__).with_name("smtp_sink.py")


def setup() -> None:
    os.environ.setdefault("DRAMATIQ_NAMESPACE", f"channel-bench-{uuid.uuid4().hex[:10]}")
    benchlib.setup_django()
    from django.db import connection

    if "bench" not in connection.settings_dict["NAME"]:
        sys.exit("Give the benchmark a database of its own whose name contains 'bench' (DATABASE_URL).")


def project_with_audience(n: int):
    """The bench project with at least ``n`` subscribers opted in to email, each with one push
    device (token ``sim-bench-<id>``), written set-based; its outbox emptied."""
    from django.db import connection

    from campaigns.models import Message
    from controlpanel.models import Project

    project, _ = Project.objects.get_or_create(slug=SLUG, defaults={"name": "Channel bench"})
    Message.objects.filter(project=project).delete()
    have = project.subscribers.count()
    with connection.cursor() as cur:
        if have < n:
            cur.execute(
                "INSERT INTO subscribers_subscriber (project_id, public_id, phone, wa_id, name, email, language,"
                " country, time_zone, whatsapp_consent, email_consent, email_consent_at, created_at, updated_at)"
                " SELECT %s, gen_random_uuid(), '+4917' || lpad(g::text, 9, '0'), '', 'Bench ' || g,"
                " 'bench' || g || '@example.test', 'de', 'DE', 'Europe/Berlin', 'unknown', 'opted_in', now(),"
                " now(), now() FROM generate_series(%s, %s) g",
                [project.pk, have + 1, n],
            )
        cur.execute(
            "INSERT INTO subscribers_device (project_id, public_id, subscriber_id, token, platform, app_version,"
            " language, time_zone, push_enabled, created_at, last_seen_at, removed_reason)"
            " SELECT s.project_id, gen_random_uuid(), s.id, 'sim-bench-' || s.id, 'android', '', '', '', true,"
            " now(), now(), '' FROM subscribers_subscriber s WHERE s.project_id = %s"
            " ON CONFLICT (project_id, token) DO NOTHING",
            [project.pk],
        )
    return project


def recipients(project, n: int) -> list:
    return list(project.subscribers.order_by("id")[:n])


def write_phase(project, people: list, channel: str) -> float:
    """Every recipient's row through the send service; returns rows per second."""
    from controlpanel.services import Actor

    actor = Actor(label="channel bench")
    if channel == "email":
        from mail.models import EmailTemplate
        from mail.services import send_email as send

        template, _ = EmailTemplate.objects.update_or_create(
            project=project, name="Bench newsletter",
            defaults={"subject": "Hallo {{ subscriber.name }}", "preheader": "20 % auf alles",
                      "html": "<p>Hallo {{ subscriber.name }}, <a href='https://example.test/sale'>zum Sale</a></p>",
                      "text": "Hallo {{ subscriber.name }}: https://example.test/sale", "marketing": True},
        )  # fmt: skip
    else:
        from push.models import PushTemplate
        from push.services import send_push as send

        template, _ = PushTemplate.objects.update_or_create(
            project=project, name="Bench push",
            defaults={"title": "Hallo {{ subscriber.name }}", "body": "20 % auf alles bis Sonntag",
                      "link": "app://sale", "marketing": True},
        )  # fmt: skip
    started = time.perf_counter()
    for person in people:
        send(project=project, subscriber=person, template=template, actor=actor)
    return len(people) / (time.perf_counter() - started)


def counts(project) -> dict[str, int]:
    from django.db.models import Count

    from campaigns.models import Message

    rows = Message.objects.filter(project=project).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def unfinished(project, channel: str) -> bool:
    """Any row still queued or sending: probes of the dispatcher's and the sweeper's partial indexes
    (``channel <> 'whatsapp'`` lets PostgreSQL match ``message_channel_due``), not a count of the
    whole outbox five times a second, which would load the database the benchmark measures."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM campaigns_message WHERE status = 'queued' AND channel = %s"
            " AND channel <> 'whatsapp') OR EXISTS (SELECT 1 FROM campaigns_message WHERE status = 'sending'"
            " AND channel = %s AND project_id = %s)",
            [channel, channel, project.pk],
        )
        return bool(cursor.fetchone()[0])


def send_phase(args, project, receiver, received) -> dict:
    """Workers up, then ticks until nothing is queued or sending."""
    from campaigns import channel_sending

    env = dict(os.environ)
    workers = start(f"{args.channel}-workers", [sys.executable, "manage.py", "rundramatiq", "--processes",
                                                str(args.processes), "--threads", str(args.threads)], env)  # fmt: skip
    try:
        wait_workers(workers, args.processes)
        meters = {
            "workers": CpuMeter(tree(workers)),
            "receiver": CpuMeter(tree(receiver)),
            "PostgreSQL": CpuMeter(postgres_backends),
            "Redis": CpuMeter(redis_pid(os.environ["DRAMATIQ_BROKER_URL"])),
        }
        for meter in meters.values():
            meter.start()
        load_before = load()
        started = time.perf_counter()
        deadline = started + args.timeout
        while time.perf_counter() < deadline:
            channel_sending.dispatch()
            if not unfinished(project, args.channel):
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        for meter in meters.values():
            meter.stop()
    finally:
        stop(workers)
    final = counts(project)
    sent = final.get("sent", 0) + final.get("delivered", 0)
    per = 1000 / max(1, sent)
    return {
        "seconds": seconds,
        "rate": sent / seconds,
        "counts": final,
        "received": received(),
        "cpu_ms": {name: meter.seconds * per for name, meter in meters.items()},
        "load": f"{load_before:.2f} / {load():.2f}",
    }


def run_email(args) -> dict:
    from mail.models import EmailBackend, EmailSettings, SmtpSecurity

    project = project_with_audience(args.messages)
    port, count_file = free_port(), Path(benchlib.BENCH_DIR) / f"smtp-sink-{uuid.uuid4().hex[:8]}.count"
    benchlib.BENCH_DIR.mkdir(parents=True, exist_ok=True)
    sink = start("smtp-sink", [sys.executable, str(SINK), "--port", str(port), "--count-file", str(count_file)],
                 dict(os.environ))  # fmt: skip
    EmailSettings.objects.update_or_create(
        project=project,
        defaults={"backend": EmailBackend.SMTP, "smtp_host": HOST, "smtp_port": port,
                  "smtp_security": SmtpSecurity.NONE, "from_email": "news@example.test", "from_name": "Bench"},
    )  # fmt: skip
    try:
        time.sleep(1)
        write_rate = write_phase(project, recipients(project, args.messages), "email")
        log(f"write: {write_rate:,.0f} rows/s")

        def received() -> int:
            time.sleep(1)
            return int(count_file.read_text() or 0) if count_file.exists() else 0

        result = send_phase(args, project, sink, received)
    finally:
        stop(sink)
    return {"write_rate": write_rate, **result}


def run_push(args) -> dict:
    from push.models import PushMode, PushSettings, SimulatedPush

    project = project_with_audience(args.messages)
    port = free_port()
    base = f"http://{HOST}:{port}"
    os.environ["PUSH_SIMULATOR_URL"] = f"{base}/simulator/fcm"
    env = {**os.environ, "SIMULATOR_ENABLED": "true"}
    # The standalone push simulator (push/simulator/wsgi.py: FCM's route, no panel middleware), as
    # the WhatsApp benchmarks use the standalone Cloud API simulator.
    web = start("push-simulator", [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", HOST,
                                   "--port", str(port), "--workers", str(args.web_workers), "--blocking-threads",
                                   "32", "push.simulator.wsgi:application"], env)  # fmt: skip
    PushSettings.objects.update_or_create(project=project, defaults={"mode": PushMode.SIMULATOR})
    SimulatedPush.objects.filter(project=project).delete()
    try:
        wait_http(f"{base}/simulator/fcm/")
        write_rate = write_phase(project, recipients(project, args.messages), "push")
        log(f"write: {write_rate:,.0f} rows/s")

        def received() -> int:
            return SimulatedPush.objects.filter(project=project).count()

        result = send_phase(args, project, web, received)
    finally:
        stop(web)
    return {"write_rate": write_rate, **result}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("channel", choices=["email", "push"])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--web-workers", type=int, default=1, help="granian workers serving the push simulator"
    )
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    setup()
    result = run_email(args) if args.channel == "email" else run_push(args)
    cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in result["cpu_ms"].items())
    print(
        f"{args.channel}: {args.messages:,} messages, {args.processes} processes x {args.threads} threads\n"
        f"  write {result['write_rate']:,.0f} rows/s; send {result['rate']:,.0f} messages/s "
        f"({result['seconds']:.1f} s)\n  rows {result['counts']}; receiver got {result['received']:,}\n"
        f"  CPU ms per message: {cpu}\n  load {result['load']}"
    )


if __name__ == "__main__":
    main()
