"""`manage.py serve`: the embedded mode in one process.

Serves the panel with a threaded WSGI server, runs Dramatiq worker threads on
the in-process broker and the scheduler as a thread. Ctrl-C stops all three.
Production runs granian, `rundramatiq` and `runscheduler` as separate processes.
"""

from __future__ import annotations

import os
import signal

import dramatiq
from django.conf import settings
from django.core.management.base import BaseCommand
from django.core.servers.basehttp import get_internal_wsgi_application, run
from dramatiq.brokers.stub import StubBroker

from controlpanel import scheduler


def start_workers(broker: dramatiq.Broker) -> list[dramatiq.Worker]:
    """Worker threads for every queue: the long queue's own, and the rest's.

    One worker over all queues would let a few imports or index builds take every thread
    while sends, webhooks and heartbeats wait; two whitelisted workers keep them apart, as
    production's separate `rundramatiq --queues` processes do.
    """
    long_queue = settings.DRAMATIQ_LONG_QUEUE
    short = set(settings.DRAMATIQ_QUEUES) - {long_queue}
    workers = [
        dramatiq.Worker(broker, queues=short, worker_threads=settings.DRAMATIQ_WORKER_THREADS),
        dramatiq.Worker(broker, queues={long_queue}, worker_threads=settings.DRAMATIQ_LONG_WORKER_THREADS),
    ]
    for worker in workers:
        worker.start()
    return workers


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
        # Ctrl-C must stop everything even when this process was started with SIGINT ignored (a
        # background job of a script, a test runner's child): Python only turns SIGINT into
        # KeyboardInterrupt if it was not ignored at start.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        broker = dramatiq.get_broker()
        in_process = isinstance(broker, StubBroker)
        run_workers = options["workers"] == "yes" or (options["workers"] == "auto" and in_process)
        workers = start_workers(broker) if run_workers else []
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
            for worker in workers:
                worker.stop(timeout=5_000)
            self.stdout.write("Stopped.")
