"""`manage.py runsimulator`: the simulator alone, sharing the panel's database and state file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest
import requests
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests.controlpanel.test_embedded_run import PRODUCTION_VARS, ROOT, free_port, manage
from tests.factories import ProjectFactory
from whatsapp.models import WhatsAppAccount
from whatsapp.simulator import services, store


@pytest.fixture
def standalone(settings, tmp_path):
    settings.ROOT_URLCONF = "whatsapp.simulator.standalone_urls"
    settings.SIMULATOR_STATE_DIR = str(tmp_path / "simulator")
    settings.SIMULATOR_DELIVER_CALLBACKS = False
    settings.SIMULATOR_DELAYS_MS = "0,0,0"
    settings.SIMULATOR_CALLBACK_BASE = "http://panel.example"
    yield
    store.close()


def test_the_standalone_urls_serve_only_the_graph_api(client, db, standalone):
    account = WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id="5001",
        phone_number_id="5002",
        display_phone_number="15550001234",
        access_token="tok",
        app_secret="sec",
    )
    services.seed_templates(waba_id="5001")
    answer = client.get(
        "/simulator/graph/v23.0/5001/message_templates", headers={"Authorization": "Bearer tok"}
    )
    assert answer.status_code == 200 and len(answer.json()["data"]) == 4  # and hello_world
    other = client.get("/simulator/phone/")
    assert other.status_code == 400 and other.json()["error"]["code"] == 100
    assert client.get("/p/some-project/").status_code == 400
    sent = client.post(
        "/simulator/graph/v23.0/5002/messages",
        content_type="application/json",
        headers={"Authorization": "Bearer tok"},
        data={
            "messaging_product": "whatsapp",
            "to": "4915112345678",
            "type": "template",
            "template": {
                "name": "login_code",
                "language": {"code": "en_US"},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": "123456"}]},
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": 0,
                        "parameters": [{"type": "text", "text": "123456"}],
                    },
                ],
            },
        },
    )
    assert sent.status_code == 200
    due = store.claim_callbacks(time.time() + 60, 10)
    assert {row["url"] for row in due} == {
        "http://panel.example" + reverse("whatsapp_webhook", args=[account.public_id])
    }


def test_runsimulator_wants_an_http_callback_base(db):
    with pytest.raises(CommandError, match="callback-base"):
        call_command("runsimulator", "--callback-base", "panel.example")


def _processed_statuses(db_file) -> list[str]:
    with sqlite3.connect(db_file) as conn:
        rows = conn.execute(
            "SELECT body FROM whatsapp_webhookdelivery WHERE processed_at IS NOT NULL"
        ).fetchall()
    found = []
    for (body,) in rows:
        for entry in json.loads(body)["entry"]:
            for change in entry["changes"]:
                found += [s["status"] for s in change["value"].get("statuses", [])]
    return found


@pytest.mark.slow
def test_runsimulator_answers_and_its_webhooks_reach_the_panel(tmp_path):
    panel_port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_VARS}
    env.update(VAR_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1", SIMULATOR_DELAYS_MS="100,200,300")
    panel = f"http://127.0.0.1:{panel_port}"
    simulator = f"http://127.0.0.1:{sim_port}"
    manage(env, "migrate", "--no-input")
    manage(env, "bootstrap_demo", "--url", panel + "/")  # connects the demo project, seeds templates
    printed = manage(
        env,
        "connect_whatsapp",
        "demo",
        "--simulator",
        "--access-token",
        "load-token",
        "--base-url",
        f"{simulator}/simulator/graph",
        "--public-url",
        panel,
    )
    number = printed.split("phone_number_id=")[1].split()[0]
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(panel_port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [sys.executable, "manage.py", "runsimulator", "--port", str(sim_port), "--callback-base", panel],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        payload = {
            "messaging_product": "whatsapp",
            "to": "4915112345678",
            "type": "template",
            "biz_opaque_callback_data": "standalone-1",
            "template": {
                "name": "order_update",
                "language": {"code": "en_US"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "text": v} for v in ("Ana", "#1", "today")],
                    },
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": "0",
                        "parameters": [{"type": "text", "text": "1"}],
                    },
                ],
            },
        }
        deadline = time.monotonic() + 30
        answer = None
        while time.monotonic() < deadline and answer is None:
            try:
                answer = requests.post(
                    f"{simulator}/simulator/graph/v23.0/{number}/messages",
                    json=payload,
                    headers={"Authorization": "Bearer load-token"},
                    timeout=5,
                )
            except requests.ConnectionError:
                time.sleep(0.2)
        assert answer is not None and answer.status_code == 200, answer and answer.text
        assert answer.json()["messages"][0]["id"].startswith("wamid.")
        db_file = tmp_path / "var" / "db.sqlite3"
        while time.monotonic() < deadline and sorted(_processed_statuses(db_file)) != [
            "delivered",
            "read",
            "sent",
        ]:
            time.sleep(0.3)
        assert sorted(_processed_statuses(db_file)) == ["delivered", "read", "sent"]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
