"""The builder's email and push steps in Chromium: a template picker per channel, the chained
reachability (one outlet per channel, in the chosen order, then "none reachable"), silent hours
that hold only some channels, and the channel's counters on the nodes."""

from __future__ import annotations

import pytest

from controlpanel.models import Role
from journeys import counters
from journeys.models import Journey, JourneyStatus
from mail.models import EmailTemplate
from push.models import PushTemplate
from tests.browser.test_journey_builder import login, node, wire
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_build_an_omnichannel_fallback_on_the_canvas(page, live_server):
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    marketer = MembershipFactory(project=project, role=Role.MARKETER).user
    mail = EmailTemplate.objects.create(project=project, name="cart_mail", subject="Your cart")
    push = PushTemplate.objects.create(project=project, name="cart_push", title="Still hungry?", body="b")
    login(page, marketer)
    page.goto("/p/alpha/journeys/")
    page.get_by_test_id("new-journey").click()
    page.locator("#journey-builder[data-ready=true]").wait_for()
    palette = page.locator("[data-testid=palette-item]")
    panel = page.get_by_test_id("side-panel")

    palette.filter(has_text="Reachability check").click()
    node(page, "reach").wait_for()
    panel.get_by_test_id("reachability-mode").select_option("chain")
    outputs = node(page, "reach").locator(".outputs .output")
    assert [o.get_attribute("data-outlet") for o in outputs.all()] == ["whatsapp", "email", "push", "none"]
    # Push first: tick order is changed with the arrows; WhatsApp is left out.
    channels = panel.get_by_test_id("reachability-channels")
    channels.locator("[data-channel=push] button").click()
    channels.locator("[data-channel=push] button").click()
    channels.locator("[data-channel=whatsapp] input").uncheck()
    assert [o.get_attribute("data-outlet") for o in outputs.all()] == ["push", "email", "none"]

    palette.filter(has_text="Send push").click()
    node(page, "push").wait_for()
    assert node(page, "push").locator(".jb-node-summary").inner_text() == "cart_push"  # the first one
    palette.filter(has_text="Send email").click()
    node(page, "email").wait_for()
    panel.get_by_test_id("channel-template-select").select_option(str(mail.public_id))
    node(page, "reach").locator(".jb-node-summary").click()
    wire(panel.locator("[data-testid=outlet-target][data-outlet=push]"), "push")
    wire(panel.locator("[data-testid=outlet-target][data-outlet=email]"), "email")

    page.get_by_test_id("open-settings").click()
    panel.locator("input[data-field='settings.silent_hours.start']").fill("21:00")
    panel.locator("input[data-field='settings.silent_hours.end']").fill("08:00")
    panel.get_by_test_id("silent-channels").get_by_label("Email").uncheck()
    page.get_by_test_id("save").click()
    page.get_by_test_id("builder-status").filter(has_text="Saved.").wait_for()

    journey = Journey.objects.get(project=project, status=JourneyStatus.DRAFT)
    steps = {s["id"]: s for s in journey.definition["steps"]}
    reach = steps["reach"]
    assert (reach["channels"], reach["push"], reach["email"], reach.get("none")) == (
        ["push", "email"],
        "push",
        "email",
        None,
    )
    assert "channel" not in reach and "whatsapp" not in reach
    assert steps["push"]["template"] == str(push.public_id)
    assert steps["email"]["template"] == str(mail.public_id)
    silent = journey.definition["settings"]["silent_hours"]
    assert silent == {"start": "21:00", "end": "08:00", "channels": ["whatsapp", "push"]}

    # Once it has figures, the email node shows its channel's counters.
    Journey.objects.filter(pk=journey.pk).update(version=1, status=JourneyStatus.PAUSED)
    counters.bump(project.pk, journey.pk, {("email", "sent"): 5, ("email", "opened"): 3})
    page.reload()
    page.locator("#journey-builder[data-ready=true]").wait_for()
    shown = node(page, "email").get_by_test_id("step-counts")
    assert shown.locator("[data-count=opened]").inner_text() == "3"
    assert shown.locator("[data-count=bounced]").inner_text() == "0"
    assert not shown.locator("[data-count=read]").count()
    assert not page.console_problems
