"""Issue 11's acceptance scenario 4 in Chromium: a journey's push arrives on the push simulator's
device page, "Open" is tapped there, and the journey takes its "opened" branch.

The panel and both simulators run on the live server; the push transport posts to its FCM-shaped
URL over HTTP and the "Open" button reports the open over HTTP to its public API, as in
``manage.py serve``. The workers' part (the API start's request, the engine, the channel sender,
the feed consumer) runs in the test process, as the embedded server's in-process workers would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from campaigns.models import Channel, Message, MessageStatus
from controlpanel.models import Role
from controlpanel.services import create_api_key
from journeys import engine, services, stats
from journeys.models import JourneyRun, RunState
from mail.models import EmailTemplate
from push.models import PushTemplate, SimulatedPush
from subscribers import feed
from subscribers.models import ConsentState
from tests.browser.test_journey_builder import login
from tests.browser.test_push_simulator import add_device
from tests.factories import MembershipFactory, ProjectFactory, SubscriberFactory
from tests.journeys.test_omnichannel_acceptance import (  # noqa: F401 (fixtures)
    ACTOR,
    _queue,
    _queue_channels,
    api,
    fcm_client,
    pump,
    run_queued,
    send_due,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
JOURNEY = {
    "name": "Push first",
    "entry": {"type": "api"},
    "steps": [
        {"id": "push", "type": "send_push", "template": "dinner_push", "next": "opened"},
        {"id": "opened", "type": "wait_event",
         "events": [{"event": "PushOpened", "of_step": "push", "next": "tag"}],
         "timeout": "PT1H", "timeout_next": "email"},
        {"id": "tag", "type": "update_tags", "set": {"push_fan": True}, "next": "bye"},
        {"id": "bye", "type": "exit"},
        {"id": "email", "type": "send_email", "template": "dinner_mail", "next": None},
    ],
}  # fmt: skip


@pytest.fixture
def embedded(request, settings, live_server):
    request.getfixturevalue("fcm_client")  # the push client of this test, closed after it
    settings.SIMULATOR_ENABLED = True
    settings.ROOT_URLCONF = "push.simulator.full_urls"
    settings.PUBLIC_BASE_URL = ""  # the "Open" button calls the API on the host the page came from
    settings.PUSH_SIMULATOR_URL = f"{live_server.url}/simulator/fcm"
    feed.ensure_cursor("journeys")


def test_a_journey_push_is_opened_on_the_simulated_device_and_takes_the_opened_branch(embedded, page):
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    marketer = MembershipFactory(project=project, role=Role.MARKETER).user
    ana = SubscriberFactory(
        project=project,
        name="Ana Lima",
        phone="+4915123456789",
        email="ana@example.com",
        email_consent=ConsentState.OPTED_IN,
    )
    PushTemplate.objects.create(
        project=project,
        name="dinner_push",
        title="Sushi night, {{ subscriber.name }}",
        body="20% off until 22:00",
    )
    EmailTemplate.objects.create(
        project=project, name="dinner_mail", subject="Sushi night", html="<p>{{ unsubscribe_url }}</p>"
    )
    journey = services.activate(
        journey=services.create_journey(project=project, data=JOURNEY, actor=ACTOR), actor=ACTOR
    )

    # A simulated phone for Ana, added on the device page.
    login(page, marketer)
    page.goto("/simulator/push/?project=alpha")
    phone = add_device(page, "+49 151 23456789", "android", shows="Ana Lima")

    # The shop's backend starts the journey for her; the workers carry it out and send the push.
    key = create_api_key(project=project, name="shop", actor=ACTOR)[1]
    started = api(
        Client(), key, f"journeys/{journey.public_id}/start", {"subscribers": [{"id": str(ana.public_id)}]}
    )
    assert started.status_code == 202, started.content
    run_queued()  # the start request
    engine.tick()  # the scheduler's tick (every second)
    send_due()
    run = JourneyRun.objects.get(journey=journey, subscriber=ana)
    assert (run.state, run.step_id) == (RunState.WAITING, "opened")
    push = Message.objects.get(subscriber=ana, channel=Channel.PUSH)
    assert push.status == MessageStatus.SENT and SimulatedPush.objects.count() == 1

    # The device page polls: the push shows up without a reload.
    card = phone.locator("[data-testid=push]", has_text="Sushi night, Ana Lima")
    card.wait_for(timeout=10_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "omnichannel-push-device.png"), full_page=True)
    card.get_by_test_id("open-push").click()
    card.get_by_test_id("push-opened").wait_for()

    # The consumer reads PushOpened from the feed and wakes the run: the "opened" branch.
    assert pump() >= 1
    run_queued()
    run.refresh_from_db()
    assert (run.state, run.exit_reason) == (RunState.DONE, "exit_step")
    assert set(run.steps.values_list("step_id", "outlet")) == {
        ("push", "next"),
        ("opened", "event1"),
        ("tag", "next"),
        ("bye", ""),
    }
    assert not Message.objects.filter(subscriber=ana, channel=Channel.EMAIL).exists()
    assert stats.step_counts(journey)["push"]["opened"] == 1

    page.goto(f"/p/alpha/journeys/{journey.public_id}/stats/")
    row = page.locator("[data-testid=funnel-step][data-step=push]")
    assert row.locator("[data-testid=step-counter][data-key=opened]").inner_text().endswith(": 1")
    assert row.locator("[data-testid=step-counter][data-key=sent]").inner_text().endswith(": 1")
    passed = page.locator("[data-testid=funnel-step][data-step=opened] [data-testid=passed]")
    assert passed.all_inner_texts() == ["event1: 1"]
    page.screenshot(path=str(SCREENSHOTS / "omnichannel-journey-stats.png"), full_page=True)
    assert page.console_problems == []
