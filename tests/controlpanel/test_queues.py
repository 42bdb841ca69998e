"""Long jobs have their own queue, and the embedded mode's workers consume every queue."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from django.conf import settings
from django_dramatiq.utils import load_middleware
from dramatiq.brokers.stub import StubBroker

from campaigns import sending as campaign_sending
from campaigns.actors import dispatch_messages, send_messages, sweep_stuck_messages
from controlpanel.actors import record_heartbeat
from controlpanel.management.commands.serve import start_workers
from subscribers import imports
from subscribers.actors import build_attribute_index, drop_attribute_index, run_import_job, scrub_import_files
from whatsapp.actors import process_webhooks, sweep_webhooks
from whatsapp.privacy import scrub_webhook_bodies

LONG_JOBS = [
    run_import_job,
    build_attribute_index,
    drop_attribute_index,
    scrub_import_files,
    scrub_webhook_bodies,
]
ROOT = Path(__file__).resolve().parents[2]
SHORT_JOBS = [
    send_messages,
    dispatch_messages,
    process_webhooks,
    record_heartbeat,
    sweep_stuck_messages,
    sweep_webhooks,
]


def test_long_jobs_are_on_the_long_queue_and_every_queue_is_configured():
    assert {actor.queue_name for actor in LONG_JOBS} == {settings.DRAMATIQ_LONG_QUEUE}
    assert settings.DRAMATIQ_LONG_QUEUE not in {actor.queue_name for actor in SHORT_JOBS}
    # A queue missing from the settings would have no embedded worker: its jobs would never run.
    declared = {dramatiq.get_broker().get_actor(name).queue_name for name in dramatiq.get_broker().actors}
    assert declared <= set(settings.DRAMATIQ_QUEUES)


@pytest.fixture
def embedded() -> Iterator[StubBroker]:
    """A fresh in-process broker with the two actors used here, and `manage.py serve`'s workers."""
    broker = StubBroker(middleware=[load_middleware(p) for p in settings.DRAMATIQ_BROKER["MIDDLEWARE"]])
    actors = [scrub_import_files, send_messages]
    originals = [actor.broker for actor in actors]
    for actor in actors:
        actor.broker = broker
        broker.declare_actor(actor)
    workers: list[dramatiq.Worker] = []
    try:
        yield broker, workers
    finally:
        for worker in workers:
            worker.stop(timeout=5_000)
        for actor, original in zip(actors, originals, strict=True):
            actor.broker = original
        broker.close()


def test_embedded_workers_run_a_long_job_from_the_long_queue(embedded, monkeypatch):
    broker, workers = embedded
    ran = []
    monkeypatch.setattr(imports, "scrub_import_files", lambda **kwargs: ran.append(kwargs))
    scrub_import_files.send(7, ["+4915112345678"])
    assert broker.queues["long"].qsize() == 1  # enqueued on the long queue, not the default one
    workers += start_workers(broker)
    broker.join("long", timeout=10_000)
    assert ran == [{"project_id": 7, "identifiers": ["+4915112345678"]}]


def test_busy_long_queue_does_not_delay_a_send(embedded, monkeypatch, settings):
    broker, workers = embedded
    settings.DRAMATIQ_WORKER_THREADS = 2
    release, started = threading.Event(), threading.Semaphore(0)

    def slow_scrub(**kwargs):
        started.release()
        release.wait(20)

    sent = threading.Event()
    monkeypatch.setattr(imports, "scrub_import_files", slow_scrub)
    monkeypatch.setattr(campaign_sending, "send_batch", lambda message_ids, leased_until=None: sent.set())
    try:
        # More long jobs than the embedded mode has threads in all.
        for n in range(settings.DRAMATIQ_WORKER_THREADS + settings.DRAMATIQ_LONG_WORKER_THREADS + 1):
            scrub_import_files.send(n, ["x"])
        workers += start_workers(broker)
        assert started.acquire(timeout=10)  # a long job is running and holding its thread
        send_messages.send([1], None)
        assert sent.wait(10), "a send waited behind long jobs"
    finally:
        release.set()
    broker.join("long", timeout=20_000)


def test_redis_broker_keys_take_the_configured_namespace(tmp_path):
    # A benchmark gives its run a namespace of its own and deletes those keys at the end.
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DRAMATIQ_BROKER['OPTIONS'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "EMBEDDED", "REDIS_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="controlpanel.settings",
        VAR_DIR=str(tmp_path / "var"),
        DRAMATIQ_BROKER_URL="redis://127.0.0.1:6379/15",
    )
    default = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    env["DRAMATIQ_NAMESPACE"] = "bench-run-1"
    own = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    assert "'namespace': 'dramatiq'" in default.stdout, default.stderr
    assert "'namespace': 'bench-run-1'" in own.stdout, own.stderr
