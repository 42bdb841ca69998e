"""Webhook intake under load: signed status webhooks at rising rates against the production setup.

What it does, all on 127.0.0.1:
1. creates (or resets) the database given by DATABASE_URL, a project, a WhatsApp account and
   one outbox row with a wamid per three bodies;
2. writes unique signed status bodies (sent, delivered, read for each message) to a data file;
3. starts granian serving controlpanel.wsgi with the Redis broker (no workers yet);
4. drives wrk at each rate in ``--rates`` for ``--seconds`` (a Lua script paces each connection
   and sends every body once), recording acknowledged requests and latency percentiles;
5. checks that every acknowledged body is stored exactly once, then runs a worker to process
   them and checks that every delivery was processed once and every message ended as "read".

It cleans up after itself: the bodies (hundreds of MB) live in a temporary directory removed at
the end, and the server's broker keys live under a Redis namespace of this run
(``DRAMATIQ_NAMESPACE``), deleted at the end, so no later worker on that Redis database consumes
this run's processing kicks. ``--wait-load L`` first waits (at most 20 minutes) for the
1-minute load average to drop below L.

Usage (see docs/benchmarks.md):
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_webhook SECRET_KEY=bench \
  FIELD_ENCRYPTION_KEY=Jx9Yk0aZ3jv0zS0QqMuFqk2b7vO2TzD6pGQ1m0yQF3E= DRAMATIQ_BROKER_URL=redis://127.0.0.1:6379/12 \
  .venv/bin/python bench/webhook_bench.py --rates 1000,2000,3000,4000 --seconds 10
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import benchlib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
# This run's broker keys: the server inherits it, and the end of the run deletes them.
NAMESPACE = os.environ["DRAMATIQ_NAMESPACE"] = f"webhook-bench-{uuid.uuid4().hex[:12]}"

LUA = r"""
-- An open-loop schedule: each wrk thread hands out request slots `interval` ms apart, so the
-- offered rate is the target whatever the answer time (until every connection is busy).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local next_slot = nil

local bodies, sigs = {}, {}
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  interval = tonumber(args[2])
  local f = io.open(args[1], "r")
  local i = 0
  for line in f:lines() do
    local tab = line:find("\t")
    i = i + 1
    sigs[i] = line:sub(1, tab - 1)
    bodies[i] = line:sub(tab + 1)
  end
  f:close()
  total = i
  stride = tonumber(args[3])
  counter = tid + 1
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function delay()
  local t = now_ms()
  if next_slot == nil or next_slot < t - 100 then
    next_slot = t  -- start, or fallen far behind: do not burst to catch up
  end
  local slot = next_slot
  next_slot = slot + interval
  if slot <= t then return 0 end
  return slot - t
end

function request()
  local i = counter
  counter = counter + stride
  if i > total then
    wrk.thread:stop()
    i = total
  end
  wrk.headers["X-Hub-Signature-256"] = sigs[i]
  return wrk.format(nil, nil, nil, bodies[i])
end

function done(summary, latency, requests)
  local codes = 0
  io.write(string.format('{"requests": %d, "errors_status": %d, "errors_connect": %d, "errors_timeout": %d, ',
    summary.requests, summary.errors.status, summary.errors.connect, summary.errors.timeout))
  io.write(string.format('"duration_us": %d, "p50_ms": %.2f, "p90_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f}\n',
    summary.duration, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def django_setup():
    import django

    django.setup()


def prepare(messages: int):
    """Fresh schema, one project, one account, ``messages`` sent messages. Returns (account, wamids)."""
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0)
    from campaigns.models import Message, MessageStatus
    from controlpanel.models import User
    from controlpanel.services import create_project
    from subscribers.models import ConsentState, Subscriber
    from whatsapp.models import WhatsAppAccount

    owner = User.objects.create_user("bench@example.com", "bench-password-123")
    project = create_project(name="Webhook bench", owner=owner, slug="webhook-bench")
    account = WhatsAppAccount.objects.create(
        project=project,
        waba_id="102290129340398",
        phone_number_id="106540352242922",
        display_phone_number="15550783881",
        access_token="bench-token",
        app_secret="bench-secret",
    )
    subscribers = Subscriber.objects.bulk_create(
        [
            Subscriber(project=project, phone=f"+49151{i:08d}", whatsapp_consent=ConsentState.OPTED_IN)
            for i in range(messages)
        ],
        batch_size=5000,
    )
    wamids = [f"wamid.BENCH{i:010d}" for i in range(messages)]
    Message.objects.bulk_create(
        [
            Message(project=project, subscriber=s, account=account, wamid=w, status=MessageStatus.SENT)
            for s, w in zip(subscribers, wamids, strict=True)
        ],
        batch_size=5000,
    )
    return account, wamids


def signed_bodies(wamids: list[str], secret: str) -> Iterator[str]:
    """Unique signed bodies: for message i, sent then delivered then read (in rounds, so statuses interleave)."""
    from whatsapp.signature import sign

    base_ts = 1_750_000_000
    for step, state in enumerate(("sent", "delivered", "read")):
        for i, wamid in enumerate(wamids):
            wa_id = f"49151{i:08d}"
            payload = {
                "object": "whatsapp_business_account",
                "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                    "contacts": [{"profile": {"name": "Bench"}, "wa_id": wa_id, "user_id": f"DE.{i}"}],
                    "statuses": [{"id": wamid, "status": state, "timestamp": str(base_ts + step * 10 + i % 7),
                                  "recipient_id": wa_id,
                                  "pricing": {"billable": True, "pricing_model": "PMP", "type": "regular",
                                              "category": "marketing"}}]}}]}],
            }  # fmt: skip
            body = json.dumps(payload, separators=(",", ":")).encode()
            yield sign(body, secret) + "\t" + body.decode() + "\n"


def ensure_database() -> None:
    """Create the database DATABASE_URL names if it does not exist yet (the docstring promises it)."""
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    name = params.pop("dbname")
    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            admin.execute(f'CREATE DATABASE "{name}"')


def delete_broker_keys() -> int:
    """Remove this run's Dramatiq keys (queued processing kicks) from Redis."""
    from django.conf import settings

    if not settings.DRAMATIQ_BROKER_URL.startswith("redis"):
        return 0
    import redis

    client = redis.Redis.from_url(settings.DRAMATIQ_BROKER_URL)
    keys = list(client.scan_iter(match=f"{NAMESPACE}*"))
    if keys:
        client.delete(*keys)
    client.close()
    return len(keys)


def wait_http(url: str, seconds: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback only
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def drive(args, account, wamids, rates, per_level, tmp: Path) -> list[dict]:
    """Write each level's bodies, start granian, run wrk per level; the server is stopped on exit."""
    from django.db import connection

    bodies = signed_bodies(wamids, account.app_secret)
    level_files = []
    for n, count in enumerate(per_level):
        # Each level gets its own slice of unique bodies.
        level_files.append(tmp / f"level-{n}.tsv")
        with level_files[-1].open("w") as dst:
            dst.writelines(itertools.islice(bodies, count))
    script = tmp / "bench.lua"
    script.write_text(LUA)
    connection.close()
    if args.wait_load:
        benchlib.wait_for_load(args.wait_load)
    print(f"load average {benchlib.load_average()} at the start", flush=True)

    env = {**os.environ, "WEBHOOK_GROUP_COMMIT": "true", "LOG_LEVEL": "WARNING", "ALLOWED_HOSTS": "127.0.0.1"}
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(args.port),
         "--workers", str(args.granian_workers), "--blocking-threads", str(args.granian_threads),
         "--log-level", "warning", *args.granian_extra.split(), "controlpanel.wsgi:application"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    results = []
    try:
        wait_http(f"http://127.0.0.1:{args.port}/healthz")
        url = f"http://127.0.0.1:{args.port}/webhooks/whatsapp/{account.public_id}/"
        for rate, level_file in zip(rates, level_files, strict=True):
            # Each wrk thread offers rate / threads requests per second on a fixed schedule.
            interval_ms = args.wrk_threads * 1000 / rate
            # feed_bench.py --webhooks starts its phase on this line.
            print(f"driving {rate}/s for {args.seconds} s", flush=True)
            out = subprocess.run(
                ["wrk", "-t", str(args.wrk_threads), "-c", str(args.connections), "-d", f"{args.seconds}s",
                 "--timeout", "5s", "-s", str(script), url, "--", str(level_file), f"{interval_ms:.4f}",
                 str(args.wrk_threads)],
                capture_output=True, text=True, timeout=args.seconds + 60,
            )  # fmt: skip
            summary = json.loads(out.stdout.strip().splitlines()[-1])
            summary["target_rate"] = rate
            summary["achieved_rate"] = round(summary["requests"] / (summary["duration_us"] / 1e6), 1)
            results.append(summary)
            print(json.dumps(summary), flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    print(f"load average {benchlib.load_average()} at the end", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="1000,2000,3000,4000")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--granian-workers", type=int, default=2)
    parser.add_argument("--granian-threads", type=int, default=32)
    parser.add_argument("--granian-extra", default="", help="more granian options, e.g. '--http 1 --no-ws'")
    parser.add_argument("--port", type=int, default=8777)
    parser.add_argument("--no-process", action="store_true", help="skip draining the stored deliveries")
    parser.add_argument("--wait-load", type=float, default=0, help="first wait (<= 20 min) for a lower load")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    # 20% more bodies than the target needs, so no level runs out of unique bodies.
    per_level = [int(rate * args.seconds * 1.2) for rate in rates]
    total = sum(per_level)

    django_setup()
    from django.db import connection

    name = connection.settings_dict["NAME"]
    if connection.vendor != "postgresql" or "bench" not in str(name):
        sys.exit(
            f"Refusing to reset database {name!r}: use a PostgreSQL database whose name contains 'bench'."
        )

    messages = (total + 2) // 3
    print(f"preparing {messages} messages and {total} signed bodies ...", flush=True)
    ensure_database()
    account, wamids = prepare(messages)
    try:
        # The bodies take hundreds of MB: gone with the directory, whatever happens.
        with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp:
            results = drive(args, account, wamids, rates, per_level, Path(tmp))
        report(args, account, results)
    finally:
        print(f"removed {delete_broker_keys()} broker keys of namespace {NAMESPACE}", flush=True)


def report(args, account, results: list[dict]) -> None:
    """Compare acknowledged with stored deliveries, then (unless --no-process) process them all."""
    from whatsapp.models import WebhookDelivery

    acknowledged = sum(r["requests"] - r["errors_status"] for r in results)
    stored = WebhookDelivery.objects.count()
    print(
        f"acknowledged={acknowledged} stored={stored} (every 200 must be stored; duplicates impossible by key)"
    )

    if args.no_process:
        return
    print("processing with one worker process ...", flush=True)
    started = time.monotonic()
    from whatsapp.processing import process_pending

    processed = process_pending(account.pk, limit=10**9)
    took = time.monotonic() - started
    from django.db.models import Count

    from campaigns.models import Message

    unprocessed = WebhookDelivery.objects.filter(processed_at__isnull=True).count()
    failed = WebhookDelivery.objects.exclude(error="").count()
    statuses = dict(Message.objects.values_list("status").annotate(n=Count("id")))
    print(
        json.dumps(
            {
                "processed": processed,
                "processing_per_second": round(processed / took, 1),
                "unprocessed": unprocessed,
                "errors": failed,
                "message_statuses": statuses,
            }
        )
    )


if __name__ == "__main__":
    main()
