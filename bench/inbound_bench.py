"""Inbound WhatsApp processing: stored message webhooks turned into subscribers and events.

webhook_bench.py measures the intake and status deliveries; this measures the other half of
processing, the inbound messages, whose first step is finding or creating the subscriber
(subscribers.upsert). Two rounds through ``process_pending`` in this process:

1. ``--messages`` text messages from as many new WhatsApp users (each creates a subscriber
   with a ``Subscribed`` event, then records ``WhatsAppReceived``);
2. one more message from each of them (each finds the subscriber and changes nothing).

Prints deliveries per second and the CPU seconds of this process and its PostgreSQL backend.
DATABASE_URL must name a database containing "bench": its tables are flushed first, and the
run's rows are deleted at the end.

  DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_inbound_bench SECRET_KEY=bench \
  FIELD_ENCRYPTION_KEY=... .venv/bin/python bench/inbound_bench.py --messages 3000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def body(wa_id: str, n: int, round_: int) -> str:
    message = {
        "from": wa_id,
        "id": f"wamid.INBOUNDBENCH{round_}{n:010d}",
        "timestamp": str(1749416383 + round_ * 100 + n % 50),
        "type": "text",
        "text": {"body": "Does it come in another color?"},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": f"Bench {n}"}, "wa_id": wa_id, "user_id": f"DE.{n:012d}"}],
        "messages": [message],
    }
    entry = {"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}, separators=(",", ":"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--wait-load", type=float, default=0, help="first wait (<= 20 min) for a lower load")
    args = parser.parse_args()
    if "bench" not in os.environ.get("DATABASE_URL", ""):
        sys.exit("DATABASE_URL must name a database whose name contains 'bench' (it is flushed).")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
    import django

    django.setup()
    import benchlib
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from controlpanel.models import User
    from controlpanel.services import create_project
    from subscribers.models import Event, Subscriber
    from whatsapp.models import WebhookDelivery, WhatsAppAccount
    from whatsapp.processing import process_pending

    if args.wait_load:
        benchlib.wait_for_load(args.wait_load)
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    owner = User.objects.create_user("inbound-bench@example.com")
    project = create_project(name="Inbound bench", owner=owner, slug="inbound-bench")
    account = WhatsAppAccount.objects.create(
        project=project,
        waba_id="102290129340398",
        phone_number_id="106540352242922",
        display_phone_number="15550783881",
        access_token="bench-token",
        app_secret="bench-secret",
    )
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    wa_ids = [f"49151{n:08d}" for n in range(args.messages)]
    start = timezone.now()
    try:
        for round_, label in ((1, "new users"), (2, "known users")):
            WebhookDelivery.objects.bulk_create(
                [
                    WebhookDelivery(
                        project=project,
                        account=account,
                        body=(text := body(wa_id, n, round_)),
                        body_sha256=hashlib.sha256(text.encode()).hexdigest(),
                        received_at=start + timedelta(seconds=round_, microseconds=n),
                    )
                    for n, wa_id in enumerate(wa_ids)
                ],
                batch_size=2000,
            )
            db_cpu = benchlib.process_cpu([backend])
            cpu, t = time.process_time(), time.perf_counter()
            done = process_pending(account.pk, limit=10**9)
            took = time.perf_counter() - t
            cpu = time.process_time() - cpu
            db_cpu = benchlib.process_cpu([backend]) - db_cpu
            print(
                f"{label}: {done:,} deliveries in {took:.2f} s = {done / took:,.0f}/s; CPU python "
                f"{cpu:.2f} s, postgres {db_cpu:.2f} s; load average {benchlib.load_average()}"
            )
        subscribers = Subscriber.objects.for_project(project).count()
        events = dict(
            Event.objects.for_project(project).values_list("name").annotate(n=django.db.models.Count("id"))
        )
        errors = WebhookDelivery.objects.filter(project=project).exclude(error="").count()
        print(f"subscribers {subscribers:,}; events {events}; deliveries with errors {errors}")
    finally:
        call_command("flush", interactive=False, verbosity=0)


if __name__ == "__main__":
    main()
