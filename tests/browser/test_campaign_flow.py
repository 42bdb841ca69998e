"""A marketer's whole campaign in Chromium, against the simulator as in `manage.py serve`:

compose a campaign to a saved segment and watch the live preview render real recipients, save it,
read the preflight numbers, test-send to the simulator's handset, launch after the confirmation,
watch the live page's counters move and the handset receive the message. A Dramatiq worker sends;
the scheduler's jobs (start due campaigns, dispatch) are run by the test (see ``tick``).
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from campaigns import lifecycle, sending
from campaigns.models import Campaign, Message
from controlpanel.models import Role
from subscribers.models import ConsentState, Segment
from subscribers.segments.text import parse_rule
from tests.browser.test_simulator_phone import simulator, workers  # noqa: F401  (fixtures)
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory, SubscriberFactory
from whatsapp import services as wa_services
from whatsapp.models import WhatsAppAccount
from whatsapp.simulator import services as sim_services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HANDSET = "+4915123456789"


def shot(page, name: str) -> None:
    """Screenshots for a human to look at: SCREENSHOT_DIR=/tmp writes /tmp/composer-<name>.png."""
    if folder := os.environ.get("SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(folder) / f"composer-{name}.png"), full_page=True)


def tick(page, until: str, timeout: float = 45.0) -> None:
    """The scheduler's periodic jobs (start due campaigns, dispatch due rows), run from this thread until
    the page shows ``until``. This thread shares the live server's database connection: with the
    in-memory SQLite of the tests, a scheduler thread of its own would fight the server for table locks."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(until):
        assert time.monotonic() < deadline, (
            f"timed out waiting for {until}: "
            f"{list(Message.objects.values_list('campaign_id', 'status', 'reason', 'error_code'))}"
        )
        lifecycle.start_due()
        sending.dispatch()
        page.wait_for_timeout(500)


def test_compose_preview_test_send_launch_and_watch(page, live_server, simulator, workers):  # noqa: F811
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    marketer = MembershipFactory(project=project, role=Role.MARKETER).user
    call_command(
        "connect_whatsapp", "alpha", "--simulator", "--public-url", live_server.url, stdout=io.StringIO()
    )
    account = WhatsAppAccount.objects.get(project=project)
    sim_services.seed_templates(waba_id=account.waba_id)
    wa_services.sync_templates(account=account)
    for name, phone in (("Ana Lima", HANDSET), ("Ben Ott", "+4915123456780"), ("Cem Kaya", "+4915123456781")):
        SubscriberFactory(
            project=project, name=name, phone=phone, language="en", whatsapp_consent=ConsentState.OPTED_IN
        )
    SubscriberFactory(project=project, name="Dora", phone="+4915123456782", language="de")
    Segment.objects.create(
        project=project, name="English speakers", rule=parse_rule('F("language", eq, "en")')
    )

    page.goto("/accounts/login/")
    page.fill("input[name=username]", marketer.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/p/alpha/")

    page.goto("/p/alpha/campaigns/")
    page.get_by_test_id("new-campaign").click()
    page.wait_for_url("**/campaigns/new/")
    shot(page, "new")
    page.fill("input[name=name]", "Autumn sale")
    page.select_option("select[name=template_name]", "autumn_promo")
    # The template's placeholders arrive as inputs with the live preview.
    page.locator("[data-testid=binding]").nth(1).wait_for()
    page.fill("input[name='bindings.body.1']", '{{ subscriber.name | default: "Kunde" }}')
    page.fill("input[name='bindings.body.2']", "AUTUMN20")
    page.select_option("select[name=segment]", label="English speakers")
    preview = page.locator("[data-testid=preview]:visible [data-testid=preview-body]")
    preview.filter(has_text="AUTUMN20").wait_for()
    # One phone at a time; the tabs switch between the three recipients.
    page.wait_for_function("() => document.querySelectorAll('[data-preview]:not([hidden])').length === 1")
    assert page.locator("[data-testid=audience-size]").inner_text() == "3"
    assert page.locator("[data-testid=preview]").count() == 3
    expected = {f"Hi {n}, our autumn sale is on! Use code AUTUMN20 for 20% off until Sunday." for n in (
        "Ana Lima", "Ben Ott", "Cem Kaya")}  # fmt: skip
    # Read from the DOM, not after each click: a live-preview swap may land between a click and a read.
    page.wait_for_function(
        """(n) => [...document.querySelectorAll('[data-testid=preview-body]')]
                 .filter(e => e.textContent.includes('AUTUMN20')).length === n""",
        arg=3,
    )
    assert {t.strip() for t in page.locator("[data-testid=preview-body]").all_text_contents()} == expected
    for tab in page.locator("[data-preview-tab]").all():  # each tab shows its recipient
        tab.click()
        preview.filter(has_text=tab.inner_text().strip()).wait_for()
    page.locator("[data-check=ok]").wait_for()
    shot(page, "composer")

    # A broken binding is shown on its input, and the preview waits for a fix.
    page.fill("input[name='bindings.body.2']", "{{ values.code ")
    page.locator("[data-check=error][data-field='bindings.body.2']").wait_for()
    assert "is-invalid" in page.locator("input[name='bindings.body.2']").get_attribute("class")
    shot(page, "composer-error")
    page.fill("input[name='bindings.body.2']", "AUTUMN20")
    page.locator("[data-check=ok]").wait_for()

    page.get_by_test_id("save-preflight").click()
    page.wait_for_url("**/preflight/")
    campaign = Campaign.objects.get(project=project)
    assert campaign.status == "draft"
    assert page.get_by_test_id("pf-audience").inner_text() == "3"
    assert page.get_by_test_id("pf-sendable").inner_text() == "3"
    shot(page, "preflight")

    page.fill("[data-testid=test-phone]", "+49 151 23456789")
    page.get_by_test_id("send-test").click()
    page.get_by_test_id("last-test").wait_for()
    handset_url = page.get_by_test_id("handset-link").get_attribute("href")
    shot(page, "preflight-tested")

    dialogs = []

    def confirm(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    page.get_by_test_id("launch").click()
    page.wait_for_url(f"**/campaigns/{campaign.public_id}/")
    assert "to 3 recipients for about" in dialogs[0]
    # The counters move without a reload: the scheduler starts the campaign, the worker sends,
    # the simulator's status webhooks come back.
    # (The counts are cumulative: a read message was also sent and delivered.)
    tick(page, "() => document.querySelector('[data-testid=count-delivered]')?.innerText === '3'")
    assert page.get_by_test_id("count-sent").inner_text() == "3"
    assert page.get_by_test_id("count-queued").inner_text() == "0"
    assert Message.objects.filter(campaign=campaign).count() == 3
    shot(page, "live")

    page.goto(handset_url)
    bubbles = page.locator("[data-testid=bubble]", has_text="Hi Ana Lima, our autumn sale is on!")
    bubbles.nth(1).wait_for(timeout=20_000)  # the test send, then the campaign's message
    shot(page, "handset")
    assert page.console_problems == []
    page.goto("about:blank")  # stop the polling before the server and database go away
