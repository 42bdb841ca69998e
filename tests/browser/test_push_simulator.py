"""The push simulator in Chromium: add a simulated device, receive a push at the FCM-shaped URL,
tap "Open", and find PushOpened in the subscriber's timeline.

Everything runs as in ``manage.py serve``: the "Open" button reports the open over real HTTP to
this live server's public API with the simulator's own key.
"""

from __future__ import annotations

import httpx
import pytest
from django.urls import reverse

from campaigns.models import Message
from controlpanel.models import Role
from push.models import SimulatedPush
from subscribers.models import Device, Event
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory, SubscriberFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def simulator(settings):
    settings.SIMULATOR_ENABLED = True
    settings.ROOT_URLCONF = "push.simulator.full_urls"
    settings.PUBLIC_BASE_URL = ""  # the API is called on the host the page is served on
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def add_device(page, subscriber: str, platform: str, *, shows: str):
    """Add a simulated device on the (empty) device page; its phone, once shown with ``shows``."""
    page.get_by_test_id("no-devices").wait_for()
    page.fill("input[name=subscriber]", subscriber)
    page.select_option("select[name=platform]", platform)
    page.get_by_test_id("add-device").click()
    phone = page.locator("[data-testid=push-device]", has_text=shows)
    phone.wait_for()
    return phone


def test_a_push_arrives_on_the_simulated_device_and_open_records_push_opened(page, live_server, simulator):
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    marketer = MembershipFactory(project=project, role=Role.MARKETER).user
    ana = SubscriberFactory(project=project, name="Ana Lima", phone="+4915123456789")

    page.goto("/accounts/login/")
    page.fill("input[name=username]", marketer.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/p/alpha/")

    page.get_by_test_id("push-simulator").click()
    page.wait_for_url("**/simulator/push/?project=alpha")
    assert page.locator(".navbar .nav-link", has_text="Journeys").count() == 1  # the panel's layout
    phone = add_device(page, "+49 151 23456789", "ios", shows="Ana Lima")
    device = Device.objects.get(project=project)
    assert device.token.startswith("sim-") and device.subscriber == ana and device.platform == "ios"

    # What the push transport sends in simulator mode: FCM v1 with our message id in the data.
    message = Message.objects.create(
        project=project, subscriber=ana, channel="push", status="sent", content={"title": "Sushi"}
    )
    answer = httpx.post(
        live_server.url + reverse("push_simulator:fcm_send", args=["simulator"]),
        json={
            "message": {
                "token": device.token,
                "notification": {"title": "Sushi night", "body": "20% off until 22:00"},
                "data": {"message_id": str(message.public_id), "link": "alpha://offers"},
            }
        },
        headers={"Authorization": "Bearer simulator"},
    )
    assert answer.status_code == 200, answer.text

    # The device page polls: the push shows up without a reload.
    card = phone.locator("[data-testid=push]", has_text="Sushi night")
    card.wait_for(timeout=10_000)
    assert "20% off until 22:00" in card.inner_text()
    card.get_by_test_id("open-push").click()
    page.locator("[data-testid=push] [data-testid=push-opened]").wait_for()

    # The button's request answered after the API's: the open is committed.
    event = Event.objects.get(project=project, name="PushOpened")
    assert event.attributes["message"] == str(message.public_id)
    assert event.attributes["device"] == str(device.public_id)
    assert SimulatedPush.objects.get().opened_at is not None

    page.goto(reverse("subscribers:detail", args=["alpha", ana.public_id]))
    page.locator("[data-testid=timeline-entry] a[title=PushOpened]").wait_for()
    assert page.console_problems == []
    page.goto("about:blank")  # stop the device page's polling before the server goes away
