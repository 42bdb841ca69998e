"""`manage.py runsimulator --port 9000`: the Cloud API simulator alone, a load-test tool.

Serves only /simulator/graph/... and the ledger /simulator/sent.json (same database and state file
as the panel, so the accounts and templates are the same) under granian, never Django's threaded
development server: by default the ASGI app (``whatsapp.simulator.asgi``: the send route on the event
loop, one thread, the latency awaited; no middleware, accounts cached), which costs about half the
CPU per send of the thread-per-request WSGI app (``--interface wsgi``, kept for comparison). Webhooks go to
--callback-base (the panel's URL); --no-webhooks queues none (the send path alone).
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from whatsapp.simulator import config


class Command(BaseCommand):
    help = "Run the WhatsApp Cloud API simulator standalone (Graph API endpoints and the ledger only)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9000)
        parser.add_argument(
            "--callback-base",
            default=os.environ.get("SIMULATOR_CALLBACK_BASE")
            or settings.PUBLIC_BASE_URL
            or "http://127.0.0.1:8000",
            help="Base URL of the panel that receives the webhooks (default: PUBLIC_BASE_URL or :8000).",
        )
        parser.add_argument("--webhook-threads", type=int, default=config.callback_threads())
        parser.add_argument(
            "--no-webhooks", action="store_true", help="Queue no status webhooks (load tests of sending)."
        )
        parser.add_argument("--workers", type=int, default=1, help="granian worker processes.")
        parser.add_argument(
            "--interface",
            choices=("asgi", "wsgi"),
            default="asgi",
            help="asgi (default): sends on an event loop; wsgi: a thread per request (--threads).",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=64,
            help="With --interface wsgi, request threads per worker: calls in flight at once (with 200 "
            "ms latency, 1,000 messages/s need about 200 across the workers).",
        )

    def handle(
        self,
        *args,
        host: str,
        port: int,
        callback_base: str,
        webhook_threads: int,
        no_webhooks: bool,
        workers: int,
        interface: str,
        threads: int,
        **o,
    ):
        if not callback_base.startswith(("http://", "https://")):
            raise CommandError("--callback-base must be an http(s) URL, e.g. http://127.0.0.1:8000")
        # Environment, not settings: granian's worker processes read them.
        os.environ["SIMULATOR_CALLBACK_BASE"] = callback_base.rstrip("/")
        os.environ["SIMULATOR_CALLBACK_THREADS"] = str(max(1, webhook_threads))
        os.environ["SIMULATOR_DELIVER_CALLBACKS"] = "true"
        os.environ.setdefault("SIMULATOR_ACCOUNT_CACHE_SECONDS", "5")
        os.environ.setdefault("SIMULATOR_DB_THREADS", "4")
        # Group commit (SIMULATOR_GROUP_COMMIT=true) saves simulator CPU but stamps a whole batch
        # of sends with one slot time: in the send pipeline that pushed sends paced for one second
        # into the next and drew ~6 % 130429 refusals, halving the rate (docs/benchmarks.md). Off.
        if no_webhooks:
            os.environ["SIMULATOR_STATUS_WEBHOOKS"] = "false"
        config.clear_cache()  # values read before the lines above must not outlive them
        per_worker = f" x {threads} threads" if interface == "wsgi" else ""
        self.stdout.write(
            f"Cloud API simulator on http://{host}:{port}/simulator/graph/ "
            f"(webhooks {'off' if no_webhooks else f'to {callback_base}'}, state in {config.state_dir()}, "
            f"{workers} {interface.upper()} worker(s){per_worker}). Ctrl-C stops it."
        )
        from granian import Granian
        from granian.constants import Interfaces

        options: dict = {"interface": Interfaces.ASGI}
        if interface == "wsgi":
            options = {"interface": Interfaces.WSGI, "blocking_threads": max(1, threads)}
        Granian(
            f"whatsapp.simulator.{interface}:application",
            address=host,
            port=port,
            workers=max(1, workers),
            log_access=False,
            **options,
        ).serve()
