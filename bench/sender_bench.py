"""The batch sender in one process: dispatcher ticks, ``--workers`` threads running ``send_batch``,
against a local stub of Meta's endpoint with ``--latency`` per call. Reports messages per second,
CPU milliseconds per message of this process, and the busiest 1-second window the stub saw
(the throttle: never above ``--limit``, on average near it).

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_bench SECRET_KEY=bench FIELD_ENCRYPTION_KEY=...
    .venv/bin/python manage.py migrate
    .venv/bin/python bench/sender_bench.py --messages 5000 --limit 1000 --latency 0.2 --workers 8

It creates its own project (slug ``send-bench-<random>``) and deletes it at the end. Rendering is
a stand-in (the campaign's body with the phone), so what is measured is the send path itself:
lease, claim, load, slots, POST, write-back. The end-to-end figure with the simulator, Redis and
several worker processes is the simulator benchmark's.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from benchlib import setup_django


class Stub(BaseHTTPRequestHandler):
    latency = 0.0
    stamps: list[float] = []
    lock = threading.Lock()
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.stamps.append(time.time())
            n = len(self.stamps)
        time.sleep(self.latency)
        answer = json.dumps(
            {"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
             "messages": [{"id": f"wamid.BENCH{n:09d}{secrets.token_hex(4)}", "message_status": "accepted"}]}
        ).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


def busiest_window(stamps: list[float]) -> int:
    stamps, best, start = sorted(stamps), 0, 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--limit", type=int, default=1000, help="the number's messages per second")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per call at the stub")
    parser.add_argument("--workers", type=int, default=8, help="threads running send_batch")
    args = parser.parse_args()
    setup_django()

    from django.db import connection
    from django.utils import timezone

    from campaigns import actors, rendering, sending
    from campaigns.models import Campaign, CampaignStatus, Message, MessageKind
    from controlpanel.models import Project
    from subscribers.models import ConsentState, Subscriber
    from whatsapp.models import WhatsAppAccount

    Stub.latency = args.latency
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    slug = f"send-bench-{secrets.token_hex(4)}"
    project = Project.objects.create(name=slug, slug=slug)
    try:
        account = WhatsAppAccount.objects.create(
            project=project, waba_id=slug, phone_number_id=slug, access_token="bench", app_secret="bench",
            base_url=f"http://127.0.0.1:{server.server_port}", throughput_mps=args.limit,
        )  # fmt: skip
        campaign = Campaign.objects.create(
            project=project, name=slug, account=account, template_name="bench", languages=["en_US"],
            status=CampaignStatus.RUNNING, snapshot_at=timezone.now(),
        )  # fmt: skip
        subscribers = Subscriber.objects.bulk_create(
            Subscriber(project=project, phone=f"+4915{i:09d}", whatsapp_consent=ConsentState.OPTED_IN)
            for i in range(args.messages)
        )
        Message.objects.bulk_create(
            Message(project=project, subscriber=s, campaign=campaign, account=account, kind=MessageKind.TEMPLATE)
            for s in subscribers
        )  # fmt: skip

        def render(messages):
            return {
                m.pk: rendering.Rendered(None, "bench", "en_US", [], f"Hello {m.subscriber.phone}")
                for m in messages
            }

        rendering.render_batch = render
        queue: list[tuple[list[int], str]] = []
        queue_lock = threading.Lock()

        def enqueue(ids, lease):
            with queue_lock:
                queue.append((ids, lease))

        actors.send_messages.send = enqueue  # the broker: a list in this process
        done = threading.Event()

        def worker() -> None:
            from django.db import connection as own

            while not done.is_set():
                with queue_lock:
                    item = queue.pop(0) if queue else None
                if item is None:
                    time.sleep(0.005)
                    continue
                sending.send_batch(*item)
            own.close()

        threads = [threading.Thread(target=worker) for _ in range(args.workers)]
        started, cpu = time.monotonic(), time.process_time()
        for t in threads:
            t.start()
        remaining = args.messages
        while remaining:
            sending.dispatch()
            time.sleep(1.0)  # the scheduler's tick
            remaining = Message.objects.filter(campaign=campaign, status="queued").count()
        while Message.objects.filter(campaign=campaign, status="sending").exists():
            time.sleep(0.05)
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
        done.set()
        for t in threads:
            t.join()
        sent = Message.objects.filter(campaign=campaign, status="sent").count()
        print(f"{sent:,} of {args.messages:,} sent in {elapsed:.1f} s: {sent / elapsed:,.0f} messages/s "
              f"(limit {args.limit}/s, latency {args.latency * 1000:.0f} ms, {args.workers} workers, "
              f"{connection.vendor}); CPU {cpu * 1000 / max(sent, 1):.2f} ms per message in this process "
              f"(sender and stub); busiest 1-second window {busiest_window(Stub.stamps)} calls")  # fmt: skip
    finally:
        Message.objects.filter(project=project).delete()
        Subscriber.objects.filter(project=project).delete()
        project.delete()
        server.shutdown()


if __name__ == "__main__":
    main()
