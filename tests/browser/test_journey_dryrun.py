"""Journey pages in Chromium: the keyword shortcut form, the statistics page's chart and the dry run.

The dry run runs on the engine's ``journeys/dryrun.py``. Screenshots: SCREENSHOT_DIR=/tmp/shots
writes journeys-<name>.png there.
"""

from __future__ import annotations

import io
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from controlpanel.models import Role
from controlpanel.services import SYSTEM
from journeys import counters, services
from journeys.models import Journey, JourneyRun, JourneyStatus, JourneyVersion, RunState
from tests.browser.test_simulator_phone import simulator  # noqa: F401  (fixture)
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory, SubscriberFactory
from whatsapp import services as wa_services
from whatsapp.models import MessageTemplate, WhatsAppAccount
from whatsapp.simulator import services as sim_services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shot(page, name: str) -> None:
    if folder := os.environ.get("SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(folder) / f"journeys-{name}.png"), full_page=True)


def _log_in(page, user, slug: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/p/{slug}/")


def _project_on_the_simulator(live_server):
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    call_command(
        "connect_whatsapp", "alpha", "--simulator", "--public-url", live_server.url, stdout=io.StringIO()
    )
    account = WhatsAppAccount.objects.get(project=project)
    sim_services.seed_templates(waba_id=account.waba_id)
    wa_services.sync_templates(account=account)
    return project


def test_keyword_shortcut_creates_promo_with_a_follow_up(page, live_server, simulator):  # noqa: F811
    project = _project_on_the_simulator(live_server)
    marketer = MembershipFactory(project=project, role=Role.MARKETER).user
    _log_in(page, marketer, "alpha")

    page.goto("/p/alpha/journeys/keyword/new/")
    assert page.locator("[data-testid=example-hilfe] [data-testid=create-example-hilfe]").count() == 1
    page.fill("input[name=name]", "PROMO weekend")
    page.fill("input[name=keywords]", "PROMO, Aktion")
    page.fill("textarea[name=reply]", 'Danke {{ subscriber.name | default: "du" }}! Dein Code: SUSHI20')
    page.select_option("[data-testid=template]", "autumn_promo|en_US")
    # The template's placeholders come in by htmx.
    page.locator("[data-testid=binding]").first.wait_for()
    assert page.locator("[data-testid=binding]").count() == 2
    page.fill("input[name='delay_amount']", "2")
    page.select_option("select[name=delay_unit]", "hours")
    page.locator("[data-testid=binding]").nth(0).fill("{{ subscriber.name }}")
    page.locator("[data-testid=binding]").nth(1).fill("SUSHI20")
    shot(page, "keyword")
    page.click("[data-testid=save-draft]")
    page.wait_for_url("**/p/alpha/journeys/")
    # The list is the builder slice's page: its message names the new journey, and once the
    # builder's list is merged, so does its row.
    assert "PROMO weekend" in page.locator("#messages").inner_text()
    rows = page.locator("[data-testid=journey-name]")
    if rows.count():
        assert rows.filter(has_text="PROMO weekend").count() == 1
    journey = Journey.objects.get(project=project)
    steps = journey.definition["steps"]
    assert [s["type"] for s in steps] == ["whatsapp_text", "wait", "whatsapp_template"]
    assert steps[1]["duration"] == "PT2H"
    assert steps[2]["bindings"] == {"body.1": "{{ subscriber.name }}", "body.2": "SUSHI20"}
    assert journey.keywords == ["aktion", "promo"]

    # A bad regex comes back next to the keywords, nothing saved.
    page.goto("/p/alpha/journeys/keyword/new/")
    page.fill("input[name=name]", "Broken")
    page.fill("input[name=keywords]", "(a+")
    page.select_option("select[name=match]", "regex")
    page.fill("textarea[name=reply]", "x")
    page.click("[data-testid=save-activate]")
    assert (
        page.locator("[data-problem=keywords]")
        .inner_text()
        .startswith("“(a+” is not a valid regular expression")
    )
    assert Journey.objects.filter(project=project).count() == 1
    # The re-rendered form answers 400 on purpose; Chromium logs that, nothing else may appear.
    assert [p for p in page.console_problems if "status of 400" not in p] == []


def test_statistics_page_draws_its_chart(page, live_server, settings):
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    viewer = MembershipFactory(project=project, role=Role.VIEWER).user
    journey = services.create_journey(
        project=project,
        data={
            "name": "PROMO keyword",
            "entry": {"type": "event", "event": "WhatsAppReceived"},
            "steps": [
                {"id": "reply", "type": "whatsapp_text", "text": "Hi", "next": "wait"},
                {"id": "wait", "type": "wait", "duration": "PT1H", "next": None},
            ],
        },
        actor=SYSTEM,
    )
    JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=journey.definition)
    Journey.objects.filter(pk=journey.pk).update(status=JourneyStatus.ACTIVE, version=1)
    counters.bump(
        project.pk,
        journey.pk,
        {
            ("", "entered"): 120,
            ("", "converted"): 18,
            ("", "exited:completed"): 90,
            ("", "exited:goal"): 18,
            ("reply", "entered"): 120,
            ("reply", "sent"): 117,
            ("reply", "delivered"): 110,
            ("reply", "read"): 80,
            ("reply", "skipped"): 3,
            ("reply", "passed:next"): 120,
            ("wait", "entered"): 120,
        },
    )
    now = timezone.now()
    for i in range(12):  # a few runs over the last days, for the chart
        JourneyRun.objects.create(
            project=project,
            journey=journey,
            version=1,
            subscriber=SubscriberFactory(project=project),
            state=RunState.WAITING if i < 3 else RunState.DONE,
            step_id="wait",
            entry_key=f"e{i}",
            entered_at=now - timedelta(days=i % 5),
            converted_at=now - timedelta(days=i % 5) if i % 3 == 0 else None,
        )
    _log_in(page, viewer, "alpha")
    page.goto(f"/p/alpha/journeys/{journey.public_id}/stats/")
    assert page.locator("[data-testid=stat-in-journey]").inner_text() == "3"
    assert page.locator("[data-testid=stat-unique]").inner_text() == "12"
    assert page.locator("[data-testid=stat-entered]").inner_text() == "120"
    assert page.locator("[data-testid=stat-rate]").inner_text() == "15.0 %"
    page.wait_for_function("() => window.Chart && Chart.getChart('journey-chart')")
    counters.bump(project.pk, journey.pk, {("", "entered"): 5})
    # The partial polls every 5 s while the journey is active.
    page.wait_for_function(
        "() => document.querySelector('[data-testid=stat-entered]').textContent === '125'", timeout=15_000
    )
    shot(page, "stats")
    assert page.console_problems == []
    page.goto("about:blank")  # stop polling before the live server goes away


def test_dry_run_lights_up_the_path(page, live_server):
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    marketer = MembershipFactory(project=project, role=Role.MARKETER).user
    # Ana wrote to the number a minute ago: the window the reply needs is open.
    SubscriberFactory(
        project=project, name="Ana Lima", phone="+4915123456789", last_inbound_at=timezone.now()
    )
    account = WhatsAppAccount.objects.create(
        project=project, waba_id="w1", phone_number_id="p1", access_token="t", app_secret="s"
    )
    MessageTemplate.objects.create(
        project=project,
        account=account,
        name="follow_up_offer",
        language="de",
        category="MARKETING",
        status="APPROVED",
        components=[{"type": "BODY", "text": "Noch hungrig? Heute 20 % auf Sushi."}],
    )
    SubscriberFactory(project=project, name="Ben Ott")
    journey = services.create_journey(
        project=project,
        data={
            "name": "PROMO keyword",
            "entry": {
                "type": "event",
                "event": "WhatsAppReceived",
                "conditions": [{"attribute": "text", "op": "keyword", "value": "promo"}],
            },
            "steps": [
                {"id": "reply", "type": "whatsapp_text", "text": "Danke! Dein Code: SUSHI20", "next": "wait"},
                {"id": "wait", "type": "wait", "duration": "PT1H", "next": "offer"},
                {
                    "id": "offer",
                    "type": "whatsapp_template",
                    "template": {"name": "follow_up_offer", "language": "de"},
                    "next": None,
                },
            ],
        },
        actor=SYSTEM,
    )
    _log_in(page, marketer, "alpha")
    page.goto(f"/p/alpha/journeys/{journey.public_id}/dry-run/")
    assert page.locator("[data-testid=dryrun-idle]").is_visible()
    page.fill("[data-testid=dryrun-search]", "ana")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=pick-subscriber]').length === 1")
    page.check("[data-testid=pick-subscriber]")
    page.click("[data-testid=dryrun-go]")
    current = page.locator("[data-testid=path-step][aria-current=step]")
    current.wait_for()
    assert current.get_attribute("data-step") == "wait"
    assert "SUSHI20" in page.locator("[data-step=reply] [data-testid=would-send]").inner_text()
    assert page.locator("[data-testid=dryrun-subscriber]").inner_text() == "Ana Lima"
    shot(page, "dryrun")
    page.click("[data-testid=fast-forward]")
    page.locator("[data-testid=dryrun-state]", has_text="Done").wait_for()
    assert page.locator("[data-testid=path-step][aria-current=step]").count() == 0
    assert "Noch hungrig?" in page.locator("[data-step=offer]").inner_text()
    shot(page, "dryrun-done")
    assert page.console_problems == []
