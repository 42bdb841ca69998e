"""The reduced chaos scenario (bench/campaign_chaos.py, small): a campaign to a few thousand
recipients of a saved segment, a few SIGKILLed worker processes, no restart of PostgreSQL or Redis
(CI's services are shared).

Real processes on the test database (committed data, ``transaction=True``): granian serving the
panel, the standalone simulator, ``rundramatiq`` under a supervisor loop and ``runscheduler``. The
campaign is created and launched here through ``drafts`` and ``lifecycle``; the scheduler snapshots
its audience and dispatches, the workers send.
Runs on PostgreSQL with Redis (CI's PostgreSQL job); skipped on SQLite, whose one writer at a time
is not the production setup this scenario is about.
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest
from django.db import connection

from tests.controlpanel.test_embedded_run import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import campaign_chaos

from campaigns import actors, launch_actors


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_killed_workers_leave_every_recipient_terminal_and_nobody_twice(
    redis_url, settings, tmp_path, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("the chaos scenario runs the production setup: PostgreSQL (CI's PostgreSQL job)")
    state = tmp_path / "simulator"
    settings.SIMULATOR_STATE_DIR = str(state)
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DRAMATIQ_BROKER_URL": redis_url,
        "REDIS_URL": redis_url,
        "DRAMATIQ_NAMESPACE": f"chaos-test-{uuid.uuid4().hex[:10]}",  # nothing left for a later worker
        "SIMULATOR_STATE_DIR": str(state),
        "SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEY": ",".join(settings.FIELD_ENCRYPTION_KEYS),  # the tokens it encrypted
        "EMBEDDED": "false",
    }
    # This process's broker is not the workers' (their namespace is the run's own): what it would put
    # on a queue (launch's snapshot kick, the sweeper's dispatch kick) is recorded instead, and the
    # scheduler's ticks (start_due every 5 s, dispatch every second) do that work.
    kicks: list[str] = []
    monkeypatch.setattr(launch_actors.start_due_campaigns, "send", lambda: kicks.append("start_due"))
    monkeypatch.setattr(actors.dispatch_messages, "send", lambda: kicks.append("dispatch"))
    cfg = campaign_chaos.ChaosConfig(
        recipients=3000,
        kills=4,
        kill_every=3.0,
        processes=2,
        threads=8,
        limit=500,
        source="campaign",
        audience="segment",
        resend_after=30,
        timeout=600,
    )

    try:
        report = campaign_chaos.chaos(cfg, env)
    finally:
        import redis

        broker = redis.Redis.from_url(redis_url)
        keys = list(broker.scan_iter(f"{env['DRAMATIQ_NAMESPACE']}*"))
        if keys:
            broker.delete(*keys)

    assert "start_due" in kicks  # a "now" launch asks for its snapshot at once
    assert report.rows == 3000, report.text()  # the segment's audience, snapshotted by the scheduler
    assert report.kills == 4
    assert report.not_terminal == 0, report.text()
    assert report.duplicates == {}, report.text()
    assert report.unknown_left_accepted == 0, report.text()
    assert report.sent_not_accepted == 0, report.text()
    sent = sum(report.by_state.get(s, 0) for s in ("sent", "delivered", "read"))
    # Every row the simulator accepted is one we count as sent (or an unknown a webhook settled).
    assert report.accepted == sent, report.text()
    if report.resend:
        # Unknown rows without a webhook were queued again after 30 s: the campaign finished in the run.
        assert report.campaign == "completed", report.text()
    else:
        # Without the resend an unknown row nobody accepted holds its campaign for an hour.
        assert report.campaign == "completed" or report.unknown_left, report.text()
    assert report.ok, report.text()
