"""An actor travels through the real Redis broker and a real worker runs it."""

from __future__ import annotations

import uuid

import dramatiq
import pytest
from django.conf import settings
from django_dramatiq.utils import load_middleware
from dramatiq.brokers.redis import RedisBroker

from controlpanel.actors import record_heartbeat
from controlpanel.models import Heartbeat


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_actor_sent_through_redis_is_executed_by_a_worker(redis_url):
    namespace = f"test-{uuid.uuid4().hex}"
    broker = RedisBroker(
        url=redis_url,
        namespace=namespace,
        middleware=[load_middleware(path) for path in settings.DRAMATIQ_BROKER["MIDDLEWARE"]],
    )
    original = record_heartbeat.broker
    record_heartbeat.broker = broker
    broker.declare_actor(record_heartbeat)
    worker = dramatiq.Worker(broker, worker_threads=1)
    try:
        record_heartbeat.send("redis-test")
        # The message sits in Redis before any worker runs: the broker is real, not in-process.
        assert broker.client.hlen(f"{namespace}:default.msgs") == 1
        assert not Heartbeat.objects.filter(component="redis-test").exists()
        worker.start()
        broker.join("default", timeout=15_000)
        worker.join()
        assert Heartbeat.objects.filter(component="redis-test").exists()
        assert broker.client.hlen(f"{namespace}:default.msgs") == 0
    finally:
        worker.stop()
        record_heartbeat.broker = original
        for key in broker.client.keys(f"{namespace}*"):
            broker.client.delete(key)
        broker.close()
