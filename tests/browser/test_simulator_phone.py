"""The whole loop in Chromium, like a developer without a Meta account would try it:

connect a project to the simulator, sync its templates, type PROMO on a simulated phone, find it in
Conversations, reply inside the window and watch the reply's ticks turn blue, then see the reply on
the phone. Everything runs as in `manage.py serve`: the live server, the simulator's webhook threads
and a Dramatiq worker on the configured broker.
"""

from __future__ import annotations

import io
import re
import time

import dramatiq
import pytest
from django.core.management import call_command

from controlpanel.models import Role
from subscribers.models import Event
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory
from whatsapp import client as wa_client
from whatsapp.models import MessageTemplate, WhatsAppAccount
from whatsapp.simulator import callbacks, services, store

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def simulator(settings, tmp_path):
    settings.ROOT_URLCONF = "whatsapp.simulator.full_urls"
    settings.SIMULATOR_ENABLED = True  # connect_whatsapp --simulator accepts the local simulator URL
    settings.SIMULATOR_STATE_DIR = str(tmp_path / "simulator")
    settings.SIMULATOR_DELIVER_CALLBACKS = True
    settings.SIMULATOR_DELAYS_MS = "200,500,1000"
    settings.SIMULATOR_FAILURE_RATE = 0
    settings.SIMULATOR_DUPLICATE_RATE = 0
    settings.PUBLIC_BASE_URL = ""  # webhooks go back to the host the simulator is served on
    settings.WEBHOOK_GROUP_COMMIT = False
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    yield
    callbacks.stop_pump()  # the webhook threads of this test process end with the test
    store.close()


@pytest.fixture
def workers():
    broker = dramatiq.get_broker()
    # Earlier tests leave messages for rows that no longer exist (or whose ids now mean other rows).
    broker.flush_all()
    worker = dramatiq.Worker(broker, worker_threads=2)
    worker.start()
    yield
    worker.stop(timeout=10_000)
    broker.flush_all()
    # The workers' pooled Graph API sessions keep connections to the live server open: close them.
    with wa_client._lock:
        for session in wa_client._sessions.values():
            session.close()
        wa_client._sessions.clear()


def wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_promo_from_the_phone_reaches_conversations_and_the_reply_turns_blue(
    page, live_server, simulator, workers
):
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    owner = MembershipFactory(project=project, role=Role.OWNER).user
    out = io.StringIO()
    call_command("connect_whatsapp", "alpha", "--simulator", "--public-url", live_server.url, stdout=out)
    assert "phone_number_id=" in out.getvalue()
    account = WhatsAppAccount.objects.get(project=project)
    services.seed_templates(waba_id=account.waba_id)  # what "Meta" has approved for this WABA

    page.goto("/accounts/login/")
    page.fill("input[name=username]", owner.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/p/alpha/")

    page.goto("/p/alpha/settings/whatsapp/")
    page.click("[data-testid=test-connection]")
    page.wait_for_load_state()
    assert "Connected: Alpha Foods" in page.locator("#messages").inner_text()
    page.goto("/p/alpha/settings/whatsapp/")
    page.get_by_role("button", name="Sync templates").click()
    page.wait_for_load_state()
    # The demo's three and Meta's hello_world sample, which every new account starts with.
    assert "4 added (" in page.locator("#messages").inner_text()
    assert MessageTemplate.objects.filter(account=account, status="APPROVED").count() == 4

    page.get_by_test_id("simulator-phone").click()
    page.wait_for_url("**/simulator/phone/?project=alpha")
    # The phone pages keep the project's navigation.
    assert page.locator(".navbar .nav-link", has_text="Conversations").count() == 1
    page.fill("input[name=phone]", "+49 151 23456789")
    page.fill("input[name=name]", "Ana Lima")
    page.get_by_role("button", name="Open handset").click()
    page.wait_for_url(f"**/simulator/phone/4915123456789/{account.phone_number_id}/")
    page.fill("[data-testid=composer]", "PROMO")
    page.keyboard.press("Enter")
    page.locator("[data-testid=bubble]", has_text="PROMO").wait_for()
    assert page.locator("[data-testid=composer]").input_value() == ""
    # Two grey ticks: our webhook endpoint accepted the signed inbound message.
    page.locator("[data-testid=ticks][data-status=delivered]").wait_for(timeout=15_000)
    event = wait_for(lambda: Event.objects.filter(project=project, name="WhatsAppReceived").first())
    assert event.attributes["text"] == "PROMO"
    assert event.subscriber.name == "Ana Lima" and event.subscriber.phone == "+4915123456789"

    page.goto("/p/alpha/conversations/")
    row = page.locator("[data-testid=conversation-row]", has_text="Ana Lima")
    row.wait_for()
    row.click()
    page.locator("[data-testid=message-in]", has_text="PROMO").wait_for()
    page.fill("#reply-text", "Here is your code: AUTUMN20")
    page.click("[data-testid=send-reply]")
    reply = page.locator("[data-testid=message-out]", has_text="AUTUMN20")
    reply.wait_for()
    # sent, delivered, then read: the thread polls, and the ticks turn blue.
    reply.locator("[data-testid=ticks][data-status=read]").wait_for(timeout=30_000)
    color = reply.locator("[data-testid=ticks]").evaluate("el => getComputedStyle(el).color")
    red, green, blue = (int(v) for v in re.findall(r"\d+", color)[:3])
    assert blue > red and blue > green, color

    page.goto(f"/simulator/phone/4915123456789/{account.phone_number_id}/")
    page.locator("[data-testid=bubble]", has_text="Here is your code: AUTUMN20").wait_for()
    assert page.console_problems == []
    page.goto("about:blank")  # stop the chat's polling before the server and database go away
