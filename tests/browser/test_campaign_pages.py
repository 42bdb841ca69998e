"""A marketer watches a campaign move, reads the message history, sees a paused campaign on the dashboard."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from campaigns import counters
from campaigns.models import AudienceRow, Campaign, Message
from controlpanel.models import Role
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory, SubscriberFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shot(page, name: str) -> None:
    """Full-page screenshots for a human to look at: SCREENSHOT_DIR=/tmp writes /tmp/panel-<name>.png."""
    if folder := os.environ.get("SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(folder) / f"panel-{name}.png"), full_page=True)


def log_in(page, user):
    page.goto("/accounts/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


@pytest.fixture
def watched(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    marketer = MembershipFactory(project=project, role=Role.MARKETER).user
    campaign = Campaign.objects.create(
        project=project, name="Spring sale", status="running", template_name="spring_promo", languages=["de"],
        audience_kind="everyone", launched_at=timezone.now(),
    )  # fmt: skip
    now = timezone.now()
    rows = []
    for i in range(24):
        status = ["read", "delivered", "sent", "failed", "skipped", "queued"][i % 6]
        rows.append(
            Message.objects.create(
                project=project,
                subscriber=SubscriberFactory(project=project, name=f"Person {i}"),
                campaign=campaign,
                status=status,
                marketing=True,
                body=f"Hallo Person {i}",
                sent_at=now - timedelta(minutes=i % 7) if status in ("read", "delivered", "sent") else None,
                error_code=131026 if status == "failed" else None,
                reason="No WhatsApp opt-in" if status == "skipped" else "",
                pricing_category="marketing" if status in ("read", "delivered") else "",
                replied_at=now if status == "read" and i % 2 == 0 else None,
            )
        )
    counters.recount([campaign.pk])  # rows written here directly, not by the writers that count
    return project, marketer, campaign, rows


def test_the_campaign_page_updates_without_a_reload(page, watched):
    _, marketer, campaign, _ = watched
    log_in(page, marketer)
    page.goto("/p/alpha/campaigns/")
    shot(page, "campaign-list")
    page.get_by_role("link", name="Spring sale").click()
    page.wait_for_selector("#campaign-chart")
    assert page.locator("[data-testid=count-queued]").inner_text() == "4"
    assert "not on WhatsApp" in page.locator("[data-testid=failures]").inner_text()
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('campaign-chart'))")
    shot(page, "campaign-page")
    url = page.url

    # The sender works through the queue: the page shows it within a poll or two, without a reload.
    Message.objects.filter(campaign=campaign, status="queued").update(status="sent", sent_at=timezone.now())
    counters.recount([campaign.pk])  # the rows moved by hand here, not by the sender that counts
    page.wait_for_function("() => document.querySelector('[data-testid=count-queued]').innerText === '0'")
    assert page.locator("[data-testid=count-sent]").inner_text() == "16"
    assert page.url == url
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('campaign-chart'))")

    # Recipients filter by state in place.
    page.select_option("#recipient-state", "failed")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=recipient-row]').length === 4")
    assert "state=failed" in page.url
    assert page.console_problems == []


def test_recipients_still_to_be_written_are_announced(page, watched):
    _, marketer, campaign, _ = watched
    for subscriber in SubscriberFactory.create_batch(2, project=campaign.project):
        AudienceRow.objects.create(campaign=campaign, subscriber=subscriber)
    counters.recount([campaign.pk])
    log_in(page, marketer)
    page.goto(f"/p/alpha/campaigns/{campaign.public_id}/")
    note = page.locator("[data-testid=recipients-waiting]")
    assert "the counts above include everyone" in note.inner_text()
    assert page.locator("[data-testid=count-queued]").inner_text() == "6"  # 4 rows, 2 to be written
    note.scroll_into_view_if_needed()
    shot(page, "campaign-recipients-waiting")
    assert page.console_problems == []


def test_history_filters_and_the_dashboard_alert(page, watched):
    project, marketer, campaign, rows = watched
    Campaign.objects.filter(pk=campaign.pk).update(
        status="paused", status_reason="Payment problem on the WhatsApp Business Account (131042)."
    )
    log_in(page, marketer)
    page.goto("/p/alpha/")
    assert "Payment problem" in page.locator("[data-testid=dashboard-alert]").inner_text()
    shot(page, "dashboard")

    page.goto("/p/alpha/messages/")
    assert page.locator("[data-testid=history-row]").count() == 24
    page.select_option("#history-state", "failed")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=history-row]').length === 4")
    assert "state=failed" in page.url
    shot(page, "history")

    page.goto(f"/p/alpha/campaigns/{campaign.public_id}/")
    assert "Payment problem" in page.locator("[data-testid=status-reason]").inner_text()
    shot(page, "campaign-paused")

    # Anyone can be written to: the subscriber page opens the composer, the conversation search finds them.
    person = rows[0].subscriber
    page.goto(f"/p/alpha/subscribers/{person.public_id}/")
    page.click("[data-testid=send-message]")
    page.wait_for_selector("[data-testid=composer]")
    shot(page, "send-message")
    SubscriberFactory(project=project, name="Zora Neu", phone="+4915199990001")  # never written to
    page.goto("/p/alpha/conversations/")
    page.fill("#conversation-q", "Zora")
    page.wait_for_selector("[data-testid=start-row]")
    page.click("[data-testid=start-row]")
    page.wait_for_selector("[data-testid=composer]")
    shot(page, "conversation-start")
    assert page.console_problems == []
