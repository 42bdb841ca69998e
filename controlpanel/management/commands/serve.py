"""`manage.py serve`: the embedded mode in one process.

Serves the panel with a threaded WSGI server, runs Dramatiq worker threads on
the in-process broker and the scheduler as a thread. Ctrl-C stops all three.
Production runs granian, `rundramatiq` and `runscheduler` as separate processes.
"""

from __future__ import annotations

import os

import dramatiq
from django.conf import settings
from django.core.management.base import BaseCommand
from django.core.servers.basehttp import get_internal_wsgi_application, run
from dramatiq.brokers.stub import StubBroker

from controlpanel import scheduler


class Command(BaseCommand):
    help = "Serve the panel together with in-process workers and the scheduler."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--workers",
            choices=["auto", "yes", "no"],
            default="auto",
            help="Run worker threads in this process (auto: only with the in-process broker).",
        )
        parser.add_argument("--no-scheduler", action="store_true")

    def handle(self, *args, **options) -> None:
        broker = dramatiq.get_broker()
        in_process = isinstance(broker, StubBroker)
        run_workers = options["workers"] == "yes" or (options["workers"] == "auto" and in_process)
        worker = None
        if run_workers:
            worker = dramatiq.Worker(broker, worker_threads=settings.DRAMATIQ_WORKER_THREADS)
            worker.start()
        background = None
        if not options["no_scheduler"]:
            background = scheduler.build(blocking=False)
            background.start()
        host, port = options["host"], options["port"]
        self.stdout.write(
            f"Serving on http://{host}:{port}/ "
            f"(workers: {'in-process' if run_workers else 'external'}, "
            f"scheduler: {'on' if background else 'off'}). Ctrl-C stops everything.",
        )
        try:
            run(host, port, get_internal_wsgi_application(), threading=True)
        except KeyboardInterrupt:
            pass
        finally:
            if background is not None:
                background.shutdown(wait=False)
            if worker is not None:
                worker.stop(timeout=5_000)
            self.stdout.write("Stopped.")
