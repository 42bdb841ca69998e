"""Start the panel the way `make run` does, in real processes, and use it over HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_VARS = {
    "DATABASE_URL",
    "DRAMATIQ_BROKER_URL",
    "SECRET_KEY",
    "FIELD_ENCRYPTION_KEY",
    "REDIS_URL",
    "EMBEDDED",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_for_health(url: str, proc: subprocess.Popen, seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited early: {proc.stdout.read()}")
        try:
            return requests.get(url, timeout=1).json()
        except requests.RequestException:
            time.sleep(0.2)
    pytest.fail("server did not answer /healthz in time")


def heartbeat_seen(db: Path) -> bool:
    with sqlite3.connect(db) as conn:
        return (
            conn.execute("SELECT count(*) FROM controlpanel_heartbeat WHERE component='workers'").fetchone()[
                0
            ]
            > 0
        )


@pytest.mark.slow
def test_embedded_run_serves_logs_in_runs_workers_and_stops(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_VARS}
    env.update(VAR_DIR=str(tmp_path / "var"), PORT=str(port), HEARTBEAT_INTERVAL="1", PYTHONUNBUFFERED="1")
    base = f"http://127.0.0.1:{port}"

    manage(env, "migrate", "--no-input")
    printed = manage(env, "bootstrap_demo", "--url", base + "/")
    password = re.search(r"Log in as demo@example.com / (\S+)", printed).group(1)

    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        health = wait_for_health(base + "/healthz", proc)
        assert set(health.pop("event_feed")) == {"journeys"}  # the consumers, each with its lag
        assert health == {"status": "ok", "database": "ok", "broker": "ok"}

        session = requests.Session()
        login = session.get(base + "/accounts/login/", timeout=5)
        assert login.status_code == 200
        response = session.post(
            base + "/accounts/login/",
            data={
                "username": "demo@example.com",
                "password": password,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            headers={"Referer": base + "/accounts/login/"},
            timeout=5,
        )
        assert response.status_code == 200
        assert response.url == base + "/p/demo/"
        assert "Demo Shop" in response.text and "Dashboard" in response.text
        assert session.get(base + "/static/vendor/tabler/tabler.min.css", timeout=5).status_code == 200

        # The scheduler thread enqueues a heartbeat each second; an in-process worker records it.
        deadline = time.monotonic() + 20
        while not heartbeat_seen(tmp_path / "var" / "db.sqlite3"):
            assert time.monotonic() < deadline, "no worker heartbeat: scheduler or workers are not running"
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            # Workers finish their current message (up to 5 s per worker group); a loaded CI machine
            # once needed more than 20 s in a full run, never alone (about 4 s).
            output, _ = proc.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            last_words = "\n".join(output.splitlines()[-15:])
            pytest.fail(f"Ctrl-C did not stop the server; its last words:\n{last_words}")
    assert proc.returncode == 0, output
    assert "Stopped." in output

    # A second `make run` neither duplicates the demo data nor changes the login.
    again = manage(env, "bootstrap_demo")
    assert password in again
    with sqlite3.connect(tmp_path / "var" / "db.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM controlpanel_project").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM controlpanel_user").fetchone()[0] == 1


@pytest.mark.django_db
def test_demo_data_is_seeded_once(settings, tmp_path):
    from django.core.management import call_command

    from subscribers.models import Event, Subscriber

    settings.VAR_DIR = tmp_path
    call_command("bootstrap_demo", url="http://127.0.0.1:8123/")
    people, events = Subscriber.objects.count(), Event.objects.count()
    assert people >= 200 and events > people
    assert Subscriber.objects.filter(whatsapp_consent="opted_in").exists()
    call_command("bootstrap_demo", url="http://127.0.0.1:8123/")
    assert (Subscriber.objects.count(), Event.objects.count()) == (people, events)
