"""A marketer opens a conversation, replies inside the service window and watches the ticks change."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.models import Message
from campaigns.services import apply_status, deliver
from controlpanel.models import Role
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory, SubscriberFactory
from tests.whatsapp import payloads
from whatsapp.models import WhatsAppAccount
from whatsapp.processing import handle_inbound
from whatsapp.signals import StatusUpdate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, user):
    page.goto("/accounts/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_reply_inside_the_window_and_watch_the_ticks(page, settings, graph):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    marketer = MembershipFactory(project=project, role=Role.MARKETER).user
    account = WhatsAppAccount.objects.create(
        project=project,
        waba_id="102290129340398",
        phone_number_id="106540352242922",
        access_token="EAAG-token",
        app_secret="secret",
    )
    anna = SubscriberFactory(project=project, name="Anna Schmidt", phone="+4915112340001")
    handle_inbound(
        account,
        {
            "from": "4915112340001",
            "id": payloads.wamid(),
            "timestamp": str(int((timezone.now() - timedelta(minutes=3)).timestamp())),
            "type": "text",
            "text": {"body": "Do you deliver on Saturdays?"},
        },
        [payloads.contact("4915112340001", name="Anna Schmidt", user_id="US.anna")],
        [],
    )
    log_in(page, marketer)

    page.goto("/p/alpha/conversations/")
    row = page.locator("[data-testid=conversation-row]", has_text="Anna Schmidt")
    expect(row.locator("[data-testid=conversation-snippet]")).to_have_text("Do you deliver on Saturdays?")
    expect(row.locator("[data-testid=unread]")).to_have_text("1")
    row.click()
    expect(page).to_have_url(re.compile(rf"/p/alpha/conversations/{anna.public_id}/$"))
    expect(page.locator("[data-testid=message-in]")).to_have_text(re.compile("Do you deliver on Saturdays?"))
    expect(page.locator("[data-testid=window-badge]")).to_have_text(
        re.compile(r"Window open, 23 h 5\d min left")
    )

    page.fill("#reply-text", "Yes, between 9 and 14 h.")
    page.keyboard.press("Enter")
    bubble = page.locator("[data-testid=message-out]", has_text="Yes, between 9 and 14 h.")
    expect(bubble).to_have_attribute("data-status", "queued")  # a clock until the worker sends it
    expect(page.locator("#reply-text")).to_have_value("")
    # The list moved the reply to Anna's row, and she is answered now.
    expect(row.locator("[data-testid=conversation-snippet]")).to_contain_text("Yes, between 9 and 14 h.")
    expect(row.locator("[data-testid=ticks]")).to_have_attribute("data-status", "queued")
    expect(row.locator("[data-testid=unread]")).to_have_count(0)

    message = Message.objects.get(subscriber=anna)
    assert deliver(message.pk) == "sent"
    assert graph.calls[0][2]["text"]["body"] == "Yes, between 9 and 14 h."
    ticks = bubble.locator("[data-testid=ticks]")
    expect(ticks).to_have_attribute("data-status", "sent", timeout=10_000)  # polling, no reload
    grey = ticks.evaluate("el => getComputedStyle(el).color")

    message.refresh_from_db()
    for status in ("delivered", "read"):
        apply_status(
            StatusUpdate(
                project_id=project.pk,
                account_id=account.pk,
                wamid=message.wamid,
                status=status,
                timestamp=timezone.now(),
            )
        )
    expect(ticks).to_have_attribute("data-status", "read", timeout=10_000)
    assert ticks.evaluate("el => getComputedStyle(el).color") == "rgb(29, 155, 240)" != grey
    assert page.console_problems == []
