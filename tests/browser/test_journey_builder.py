"""Acceptance scenario 5 in Chromium: build the PROMO flow on the canvas (keyword entry "promo", a
text reply, a wait, a template), see the collision warning for a second PROMO journey, activate,
send PROMO from the simulator phone and watch the step counters move.

``test_build_promo_on_the_canvas_and_activate`` is the canvas; the last part
(``test_promo_from_the_phone_moves_the_counters``) runs the real engine, feed consumer and
WhatsApp steps behind it.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from controlpanel.models import Role
from journeys.models import Journey, JourneyStatus
from tests.browser.test_simulator_phone import simulator, workers  # noqa: F401  (fixtures)
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory
from whatsapp import services as wa_services
from whatsapp.models import WhatsAppAccount
from whatsapp.simulator import services as sim_services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HANDSET = "+4915123456789"


def shot(page, name: str) -> None:
    """Screenshots for a human to look at: SCREENSHOT_DIR=/tmp/shots writes journey-builder-<name>.png."""
    if folder := os.environ.get("SCREENSHOT_DIR"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"journey-builder-{name}.png"), full_page=True)


@pytest.fixture(autouse=True)
def _leave_the_builder(page):
    """Close Chromium's kept-alive connections while this test's database still stands: a live
    server thread that notices the closed socket later closes a connection of the next test."""
    yield
    page.context.close()
    time.sleep(0.5)


def setup_project(live_server):
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    marketer = MembershipFactory(project=project, role=Role.MARKETER).user
    call_command(
        "connect_whatsapp", "alpha", "--simulator", "--public-url", live_server.url, stdout=io.StringIO()
    )
    account = WhatsAppAccount.objects.get(project=project)
    sim_services.seed_templates(waba_id=account.waba_id)
    wa_services.sync_templates(account=account)
    # The second PROMO journey, already live: activating ours must be blocked while it holds PROMO.
    Journey.objects.create(
        project=project,
        name="Promo 2",
        status=JourneyStatus.ACTIVE,
        version=1,
        entry_kinds=["event"],
        entry_events=["WhatsAppReceived"],
        keywords=["promo"],
        definition={
            "name": "Promo 2",
            "entry": {
                "type": "event",
                "event": "WhatsAppReceived",
                "conditions": [{"attribute": "text", "op": "keyword", "value": "promo"}],
            },
            "steps": [{"id": "bye", "type": "exit"}],
        },
    )
    return project, marketer


def login(page, user) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/p/alpha/")


def node(page, step_id: str):
    return page.locator(".drawflow-node", has=page.locator(f"[data-step='{step_id}']"))


def wire(select, step_id: str) -> None:
    """Pick the step ``step_id`` in an outlet's "where it goes" select (labels carry the type's label)."""
    value = select.evaluate(
        "(el, id) => [...el.options].find(o => o.textContent.startsWith(id + ' ('))?.value", step_id
    )
    assert value, f"no option for {step_id}"
    select.select_option(value)


def build_promo(page) -> Journey:
    """Build the PROMO flow on a new journey's canvas and activate it (after the collision is gone)."""
    page.goto("/p/alpha/journeys/")
    page.get_by_test_id("new-journey").click()
    page.wait_for_url("**/p/alpha/journeys/*/")
    page.locator("#journey-builder[data-ready=true]").wait_for()
    journey = Journey.objects.get(project__slug="alpha", name="New journey")

    # Entry: an inbound WhatsApp message whose text is the keyword "promo".
    page.get_by_test_id("open-entry").click()
    page.get_by_test_id("entry-type").select_option("event")
    page.get_by_test_id("entry-event").fill("WhatsAppReceived")
    page.get_by_test_id("entry-keywords").fill("promo")

    # A text reply, dragged from the palette; the first step on the canvas is where runs start.
    palette = page.locator("[data-testid=palette-item]")
    palette.filter(has_text="WhatsApp text").drag_to(
        page.get_by_test_id("canvas"), target_position={"x": 330, "y": 120}
    )
    node(page, "reply").wait_for()
    page.get_by_test_id("text-input").fill("Danke! Dein Code: SUSHI20")

    # A wait and a template, added by clicking (the keyboard path) and set up in the side panel.
    palette.filter(has_text="Wait").first.click()
    node(page, "wait").wait_for()
    assert page.locator("[data-testid=side-panel] input[type=number]").input_value() == "1"
    palette.filter(has_text="WhatsApp template").click()
    node(page, "template").wait_for()
    page.get_by_test_id("template-select").select_option(label="autumn_promo (en_US, marketing)")
    page.locator("[data-testid=binding]").nth(1).wait_for()
    page.locator("[data-testid=binding]").nth(0).fill("{{ subscriber.name }}")
    page.locator("[data-testid=binding]").nth(1).fill("SUSHI20")

    # Wires: reply -> wait drawn with the mouse, wait -> template with the panel's outlet select.
    node(page, "reply").locator(".output_1").drag_to(node(page, "wait").locator(".input_1"))
    page.wait_for_function(
        "() => document.querySelectorAll('svg.connection').length === 2"
    )  # entry -> reply, reply -> wait
    node(page, "wait").locator(".jb-node-summary").click()
    wire(page.locator("[data-testid=outlet-target][data-outlet=next]"), "template")
    page.wait_for_function("() => document.querySelectorAll('svg.connection').length === 3")

    page.get_by_test_id("open-settings").click()
    page.get_by_test_id("journey-name").fill("PROMO keyword")
    shot(page, "built")

    # Validate: the keyword collides with the live "Promo 2" journey, named on the page.
    page.get_by_test_id("validate").click()
    status = page.get_by_test_id("builder-status")
    status.filter(has_text="Promo 2").wait_for()
    assert "PROMO" in status.inner_text().upper()
    assert status.get_attribute("data-kind") == "danger"
    shot(page, "collision")
    # Activation is blocked too, with the same reason.
    page.get_by_test_id("activate").click()
    status.filter(has_text="Not activated").wait_for()
    assert Journey.objects.get(pk=journey.pk).status == JourneyStatus.DRAFT

    saved = Journey.objects.get(pk=journey.pk).definition
    assert [s["id"] for s in saved["steps"]] == ["reply", "wait", "template"]
    reply, wait, template = saved["steps"]
    assert reply == {**reply, "type": "whatsapp_text", "text": "Danke! Dein Code: SUSHI20", "next": "wait"}
    assert wait["duration"] == "PT1H" and wait["next"] == "template"
    assert template["template"] == {"name": "autumn_promo", "language": "en_US"}
    assert template["bindings"] == {"body.1": "{{ subscriber.name }}", "body.2": "SUSHI20"}
    assert template["next"] is None
    assert all(isinstance(s["ui"]["x"], int) for s in saved["steps"])
    assert saved["entry"] == {
        "type": "event",
        "event": "WhatsAppReceived",
        "conditions": [{"attribute": "text", "op": "keyword", "value": "promo"}],
    }

    # Stop "Promo 2" from the list (with its confirmation), then activate ours.
    page.goto("/p/alpha/journeys/")
    shot(page, "list")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("[data-testid=journey-row]", has_text="Promo 2").get_by_test_id("journey-stop").click()
    page.locator("#messages", has_text="stopped").wait_for()
    page.locator("[data-testid=journey-row]", has_text="PROMO keyword").get_by_test_id("journey-name").click()
    page.locator("#journey-builder[data-ready=true]").wait_for()
    page.get_by_test_id("validate").click()
    page.get_by_test_id("builder-status").filter(has_text="Ready to activate").wait_for()
    page.get_by_test_id("activate").click()
    page.get_by_test_id("journey-status").filter(has_text="Active").wait_for()
    page.get_by_test_id("readonly").filter(has_text="pause it first").wait_for()
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.ACTIVE and journey.version == 1
    # Read-only now: the palette is disabled and the counters are on every step.
    assert (
        page.locator("[data-testid=palette-item]:disabled").count()
        == page.locator("[data-testid=palette-item]").count()
    )
    for step_id in ("reply", "wait", "template"):
        assert node(page, step_id).locator("[data-count=entered]").inner_text() == "0"
    assert page.locator("svg.connection text.jb-passed").count() == 3
    shot(page, "active")
    return journey


def test_build_promo_on_the_canvas_and_activate(page, live_server, simulator):  # noqa: F811
    _, marketer = setup_project(live_server)
    login(page, marketer)
    build_promo(page)
    # The refused activation answers 422 (which Chromium logs); nothing else may go wrong.
    assert [p for p in page.console_problems if "status of 422" not in p] == []


def test_a_problem_is_shown_on_the_step_and_its_field(page, live_server, simulator):  # noqa: F811
    _, marketer = setup_project(live_server)
    login(page, marketer)
    page.goto("/p/alpha/journeys/")
    page.get_by_test_id("new-journey").click()
    page.locator("#journey-builder[data-ready=true]").wait_for()
    page.locator("[data-testid=palette-item]", has_text="WhatsApp text").click()
    node(page, "reply").wait_for()
    # No text yet: validating says so on the step and on its field (whether the draft check or
    # the activation check finds it).
    page.get_by_test_id("validate").click()
    page.locator("[data-testid=builder-status][data-kind=danger]").wait_for()
    assert "jb-has-problem" in node(page, "reply").get_attribute("class")
    assert node(page, "reply").get_by_test_id("step-problems").inner_text()
    node(page, "reply").locator(".jb-node-summary").click()
    assert "is-invalid" in page.get_by_test_id("text-input").get_attribute("class")
    assert page.locator("[data-testid=field-problem][data-field^=text]").count() == 1
    shot(page, "problem")
    page.get_by_test_id("text-input").fill("Hallo!")
    page.get_by_test_id("save").click()
    page.get_by_test_id("builder-status").filter(has_text="Saved.").wait_for()
    assert node(page, "reply").get_by_test_id("step-problems").count() == 0

    # Duplicate gives a new id, delete removes it from the JSON.
    node(page, "reply").locator(".jb-node-summary").click()
    page.get_by_test_id("duplicate-step").click()
    node(page, "reply_2").wait_for()
    page.get_by_test_id("delete-step").click()
    node(page, "reply_2").wait_for(state="detached")
    page.get_by_test_id("save").click()
    page.get_by_test_id("builder-status").filter(has_text="Saved.").wait_for()
    steps = Journey.objects.get(project__slug="alpha", status="draft").definition["steps"]
    assert [s["id"] for s in steps] == ["reply"]


def test_promo_from_the_phone_moves_the_counters(page, live_server, simulator, workers):  # noqa: F811
    from campaigns import sending
    from journeys import engine
    from subscribers import feed

    _, marketer = setup_project(live_server)
    login(page, marketer)
    journey = build_promo(page)

    handset = page.context.new_page()
    account = WhatsAppAccount.objects.get(project=journey.project)
    handset.goto("/simulator/phone/?project=alpha")
    handset.fill("input[name=phone]", HANDSET)
    handset.fill("input[name=name]", "Ana Lima")
    handset.get_by_role("button", name="Open handset").click()
    handset.wait_for_url(f"**/simulator/phone/4915123456789/{account.phone_number_id}/")
    handset.fill("[data-testid=composer]", "PROMO")
    handset.keyboard.press("Enter")

    # The scheduler's jobs, from this thread (it shares the live server's SQLite connection).
    deadline = time.monotonic() + 60
    entered = node(page, "reply").locator("[data-count=entered]")
    sent = node(page, "reply").locator("[data-count=sent]")
    while not (entered.inner_text() == "1" and sent.inner_text() == "1"):
        assert time.monotonic() < deadline, "the reply step's counters did not move"
        for consumer in feed.consumers():
            feed.pump(consumer.name, seconds=0.5)
        engine.tick()
        sending.dispatch()
        page.wait_for_timeout(700)
    # The run waits an hour at the wait step; the wire reply -> wait counted one passage.
    node(page, "wait").locator("[data-count=waiting]").filter(has_text="1").wait_for(timeout=10_000)
    passed = page.locator("svg.connection text.jb-passed[data-outlet=next]").first.text_content()
    assert passed in ("0", "1")
    handset.locator("[data-testid=bubble]", has_text="SUSHI20").wait_for(timeout=20_000)
    shot(page, "counting")


def test_branches_follow_the_step_configuration(page, live_server, simulator):  # noqa: F811
    """Outlets are the step's configuration: one per awaited event and per variant; wires survive
    a removed event or a renamed variant, and the timeout's target never overwrites its duration."""
    _, marketer = setup_project(live_server)
    login(page, marketer)
    page.goto("/p/alpha/journeys/")
    page.get_by_test_id("new-journey").click()
    page.locator("#journey-builder[data-ready=true]").wait_for()
    palette = page.locator("[data-testid=palette-item]")
    for label, step_id in (("Wait for event", "wait_for"), ("WhatsApp text", "reply"), ("Exit", "exit")):
        palette.filter(has_text=label).click()
        node(page, step_id).wait_for()
        if step_id == "reply":
            page.get_by_test_id("text-input").fill("Danke!")
    outputs = node(page, "wait_for").locator(".outputs .output")
    assert [o.get_attribute("data-outlet") for o in outputs.all()] == ["event1", "timeout"]

    node(page, "wait_for").locator(".jb-node-summary").click()
    panel = page.get_by_test_id("side-panel")
    panel.get_by_role("button", name="+ event").click()
    panel.locator("input[data-field='events[1].event']").fill("WhatsAppButtonClicked")
    labels = [o.get_attribute("data-label") for o in outputs.all()]
    assert labels == ["WhatsAppRead", "WhatsAppButtonClicked", "not happened"]
    wire(panel.locator("[data-testid=outlet-target][data-outlet=event2]"), "reply")
    wire(panel.locator("[data-testid=outlet-target][data-outlet=timeout]"), "exit")
    panel.locator("input[data-field=timeout]").fill("2")
    panel.locator(".jb-duration select").last.select_option("D")
    # Removing the first event: the second one (now event1) keeps its wire to the reply.
    panel.get_by_role("button", name="Remove this event").first.click()
    assert [o.get_attribute("data-outlet") for o in outputs.all()] == ["event1", "timeout"]

    palette.filter(has_text="A/B split").click()
    node(page, "split").wait_for()
    wire(panel.locator("[data-testid=outlet-target][data-outlet=B]"), "exit")
    panel.locator("input[data-field='variants[1].name']").fill("Control")
    panel.locator("input[data-field='variants[1].name']").dispatch_event("change")
    panel.get_by_role("button", name="+ variant").click()
    split_outputs = node(page, "split").locator(".outputs .output")
    assert [o.get_attribute("data-outlet") for o in split_outputs.all()] == ["A", "Control", "C"]
    # Every step reachable from the first one: the reply goes on to the split.
    node(page, "reply").locator(".jb-node-summary").click()
    wire(panel.locator("[data-testid=outlet-target][data-outlet=next]"), "split")

    page.get_by_test_id("save").click()
    page.get_by_test_id("builder-status").filter(has_text="Saved.").wait_for()
    steps = {
        s["id"]: s for s in Journey.objects.get(project__slug="alpha", status="draft").definition["steps"]
    }
    wait_for = steps["wait_for"]
    assert [(e["event"], e["next"]) for e in wait_for["events"]] == [("WhatsAppButtonClicked", "reply")]
    assert wait_for["timeout"] == "P2D" and wait_for["timeout_next"] == "exit"
    variants = [(v["name"], v["percent"], v["next"]) for v in steps["split"]["variants"]]
    assert variants == [("A", 34, None), ("Control", 33, "exit"), ("C", 33, None)]
    assert steps["reply"]["next"] == "split"
    shot(page, "branches")
