"""`manage.py runsimulator --port 9000`: the Cloud API simulator alone, e.g. for load tests.

Serves only /simulator/graph/... (same database and state file as the panel, so the accounts and
templates are the same). Webhooks go to --callback-base (the panel's URL). With --workers > 1 it
runs under granian with that many processes; otherwise Django's threaded server.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.core.servers.basehttp import get_internal_wsgi_application, run

from whatsapp.simulator import callbacks, config


class Command(BaseCommand):
    help = "Run the WhatsApp Cloud API simulator standalone (Graph API endpoints only)."

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
        parser.add_argument("--workers", type=int, default=1, help="Processes (granian) for load tests.")

    def handle(
        self, *args, host: str, port: int, callback_base: str, webhook_threads: int, workers: int, **o
    ):
        if not callback_base.startswith(("http://", "https://")):
            raise CommandError("--callback-base must be an http(s) URL, e.g. http://127.0.0.1:8000")
        # Environment, not settings: granian's worker processes read them too.
        os.environ["SIMULATOR_CALLBACK_BASE"] = callback_base.rstrip("/")
        os.environ["SIMULATOR_CALLBACK_THREADS"] = str(max(1, webhook_threads))
        os.environ["SIMULATOR_DELIVER_CALLBACKS"] = "true"
        self.stdout.write(
            f"Cloud API simulator on http://{host}:{port}/simulator/graph/ "
            f"(webhooks to {callback_base}, state in {config.state_dir()}). Ctrl-C stops it."
        )
        if workers > 1:
            from granian import Granian

            Granian(
                "whatsapp.simulator.wsgi:application",
                address=host,
                port=port,
                interface="wsgi",
                workers=workers,
                blocking_threads=8,
            ).serve()
            return
        settings.ROOT_URLCONF = "whatsapp.simulator.standalone_urls"
        callbacks.ensure_pump()  # webhooks left over from a previous run go out now
        try:
            run(host, port, get_internal_wsgi_application(), threading=True)
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
