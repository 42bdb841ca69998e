"""A worker SIGKILLed in the middle of a batch leaves nothing stuck and nothing done twice
(issue 10, acceptance scenario 4, for the engine).

A real second process claims the runs and advances them; it is killed after its writes and before
its commit. PostgreSQL rolls its transaction back; the claim (committed on its own) holds the runs
until the lease passes; then a tick advances each of them exactly once. PostgreSQL only: the
production setup, and SQLite has no second writer to kill mid-transaction in a useful way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from journeys import counters, engine
from journeys.models import JourneyRun, JourneyRunStep, RunState
from subscribers.models import TagValue
from tests.factories import SubscriberFactory
from tests.journeys.test_engine import make_journey, start

ROOT = Path(__file__).resolve().parents[2]
N = 60

CHILD = """
import os, sys, time
from datetime import datetime
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
django.setup()
from journeys import engine
original = engine._Batch.flush
def flush(self):
    original(self)  # every write of the batch is made, inside its transaction
    print("flushed", flush=True)
    time.sleep(300)  # killed here, before the commit
engine._Batch.flush = flush
engine.tick(now=datetime.fromisoformat(sys.argv[1]))
"""


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_leaves_runs_advanced_once_after_the_lease(project):
    if connection.vendor != "postgresql":
        pytest.skip("a second worker process with a transaction of its own: PostgreSQL")
    journey = make_journey(
        project,
        [
            {"id": "tag", "type": "update_tags", "set": {"journeyed": "yes"}, "next": "wait"},
            {"id": "wait", "type": "wait", "duration": "PT1H", "next": "bye"},
            {"id": "bye", "type": "exit"},
        ],
    )
    now = timezone.now()
    runs = start(journey, SubscriberFactory.create_batch(N, project=project), now=now)
    env = {**os.environ, "DATABASE_URL": _database_url()}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, now.isoformat()],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "flushed", child.stderr.read()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    # The claim committed, the advance did not: leased, not moved, no visit, no tag, no counter.
    states = set(JourneyRun.objects.values_list("state", "step_id"))
    assert states == {(RunState.READY, "tag")}
    assert not JourneyRun.objects.filter(lease_until__isnull=True).exists()
    assert not JourneyRunStep.objects.exists() and not TagValue.objects.exists()
    assert counters.read(journey.pk) == {("", "entered"): N}

    assert engine.tick(now=now + timedelta(seconds=5)) == 0  # still leased: nobody takes them
    assert engine.tick(now=now + engine.LEASE + timedelta(seconds=1), limit=1000) == N
    assert set(JourneyRun.objects.values_list("state", "step_id")) == {(RunState.WAITING, "wait")}
    assert engine.tick(now=now + timedelta(hours=2), limit=1000) == N
    assert set(JourneyRun.objects.values_list("state", "exit_reason")) == {(RunState.DONE, "exit_step")}
    assert JourneyRunStep.objects.count() == 3 * N  # one visit per run and step
    assert TagValue.objects.count() == N
    stats = counters.read(journey.pk)
    assert [stats[(step, "entered")] for step in ("tag", "wait", "bye")] == [N, N, N]
    assert stats[("", "exited:exit_step")] == N
    assert {r.pk for r in runs} == set(JourneyRun.objects.values_list("pk", flat=True))
