"""Build the "Asian food" segment in the visual builder and watch the live count follow each step."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from controlpanel.models import Role
from subscribers.models import ConsentState, Segment, Subscriber
from subscribers.services import record_event, set_tags
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory, SubscriberFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ASIAN_FOOD = 'T("city", eq, "Berlin") * E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian")'


def seed(project):
    """6 Berliners: 3 ordered Asian food lately, 2 Italian, 1 Asian but 45 days ago; 2 in Munich."""
    now = timezone.now()
    people = [
        ("Berlin", "asian", 3), ("Berlin", "asian", 10), ("Berlin", "asian", 29),
        ("Berlin", "italian", 5), ("Berlin", "italian", 12),
        ("Berlin", "asian", 45),
        ("Munich", "asian", 2), ("Munich", "italian", 2),
    ]  # fmt: skip
    for i, (city, cuisine, days_ago) in enumerate(people):
        s = SubscriberFactory(project=project, name=f"Customer {i}")
        set_tags(project=project, subscriber=s, tags={"city": city})
        record_event(project=project, subscriber=s, name="OrderPlaced", attributes={"cuisine": cuisine},
                     occurred_at=now - timedelta(days=days_ago))  # fmt: skip


def condition(page, n):
    return page.locator("[data-testid=condition]").nth(n)


def log_in_to_seeded_project(page, settings):
    """The Alpha Foods project with the seed's customers, and its marketer logged in."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    marketer = MembershipFactory(project=project, role=Role.MARKETER).user
    seed(project)
    page.goto("/accounts/login/")
    page.fill("input[name=username]", marketer.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/p/alpha/")
    return project


def test_build_the_asian_food_segment_and_watch_the_count(page, settings):
    project = log_in_to_seeded_project(page, settings)

    page.goto("/p/alpha/segments/")
    page.click("[data-testid=new-segment]")
    count = page.locator("[data-testid=audience-count]")
    expect(page.locator("[data-testid=preview-empty]")).to_be_visible()

    # 1. Tag city = Berlin.
    page.get_by_role("button", name="Add a condition").click()
    condition(page, 0).locator("[data-testid=tag-select]").select_option("city")
    expect(page.locator("[data-testid=preview-incomplete]")).to_contain_text("needs a value")
    condition(page, 0).get_by_label("value", exact=True).fill("Berlin")
    expect(count).to_have_attribute("data-count", "6")
    expect(page.locator("[data-testid=audience-sample] li")).to_have_count(6)

    # 2. AND performed OrderPlaced in the last 30 days.
    page.get_by_role("button", name="Add a condition").last.click()
    condition(page, 1).get_by_label("Condition kind").select_option("event")
    condition(page, 1).locator("[data-testid=event-select]").select_option("OrderPlaced")
    expect(count).to_have_attribute("data-count", "6")
    condition(page, 1).get_by_label("When", exact=True).select_option("days")
    expect(condition(page, 1).get_by_label("days", exact=True)).to_have_value("30")
    expect(count).to_have_attribute("data-count", "5")

    # 3. ... where cuisine = asian.
    condition(page, 1).get_by_role("button", name="Add an attribute condition").click()
    condition(page, 1).get_by_label("Attribute", exact=True).select_option("cuisine")
    condition(page, 1).locator("[data-testid=attribute-condition]").get_by_label("value", exact=True).fill(
        "asian"
    )
    expect(count).to_have_attribute("data-count", "3")
    expect(page.locator("[data-testid=rule-text]")).to_have_value(ASIAN_FOOD)

    # The text box drives the builder too: widen the window to 60 days and back.
    page.fill("[data-testid=rule-text]", ASIAN_FOOD.replace("30d", "60d"))
    expect(count).to_have_attribute("data-count", "4")
    expect(condition(page, 1).get_by_label("days", exact=True)).to_have_value("60")
    condition(page, 1).get_by_label("days", exact=True).fill("30")
    expect(count).to_have_attribute("data-count", "3")
    expect(page.locator("[data-testid=rule-text]")).to_have_value(ASIAN_FOOD)

    # 4. Save it.
    page.fill("#segment-name", "Asian food")
    page.click("[data-testid=save-segment]")
    page.wait_for_url("**/p/alpha/segments/")
    row = page.locator("[data-testid=segment-row]", has_text="Asian food")
    expect(row.locator("[data-testid=segment-count]")).to_have_text("3")
    expect(row).to_contain_text("just now")
    segment = Segment.objects.get(project=project, name="Asian food")
    assert segment.cached_count == 3
    assert page.console_problems == []


def test_syntax_errors_in_the_text_box_show_their_position(page, settings):
    project = log_in_to_seeded_project(page, settings)

    page.goto("/p/alpha/segments/new/")
    page.fill("[data-testid=rule-text]", 'T("city" eq "Berlin")')
    error = page.locator("[data-testid=preview-error]")
    expect(error).to_contain_text("expected ',' at position 9")
    expect(error.locator("mark")).to_have_text("e")
    page.fill("[data-testid=rule-text]", 'T("city", eq, "Munich")')
    expect(page.locator("[data-testid=audience-count]")).to_have_attribute("data-count", "2")
    expect(condition(page, 0).get_by_label("value", exact=True)).to_have_value("Munich")

    page.fill("#segment-name", "Munich")
    page.click("[data-testid=save-segment]")
    page.wait_for_url("**/p/alpha/segments/")

    # Saving a broken text keeps it, with the error, and changes nothing.
    page.locator("[data-testid=segment-table] a", has_text="Munich").click()
    expect(page.locator("[data-testid=audience-count]")).to_have_attribute("data-count", "2")
    page.fill("[data-testid=rule-text]", 'T("city", eq, "Munich") *')
    page.click("[data-testid=save-segment]")
    expect(page.locator("[data-testid=rule-error]")).to_contain_text("at position 25")
    expect(page.locator("[data-testid=rule-text]")).to_have_value('T("city", eq, "Munich") *')
    expect(condition(page, 0).get_by_label("value", exact=True)).to_have_value("Munich")
    assert Segment.objects.get(project=project).rule["value"] == "Munich"
    # The refused save answers 422, which Chromium logs; nothing else may show up.
    assert [p for p in page.console_problems if "status of 422" not in p] == []


def test_match_case_and_whatsapp_reachability(page, settings):
    project = log_in_to_seeded_project(page, settings)
    # Two of the six Berliners opted in; one of them has no number (a BSUID only).
    berliners = Subscriber.objects.filter(project=project, tag_values__value_text="Berlin").order_by("pk")
    Subscriber.objects.filter(project=project).update(whatsapp_consent=ConsentState.UNKNOWN)
    berliners.filter(pk__in=[b.pk for b in berliners[:2]]).update(whatsapp_consent=ConsentState.OPTED_IN)
    Subscriber.objects.filter(pk=berliners[1].pk).update(phone=None, bsuid="DE.4711")

    page.goto("/p/alpha/segments/new/")
    page.get_by_role("button", name="Add a condition").click()
    condition(page, 0).locator("[data-testid=tag-select]").select_option("city")
    condition(page, 0).get_by_label("value", exact=True).fill("BERLIN")
    count = page.locator("[data-testid=audience-count]")
    expect(count).to_have_attribute("data-count", "6")  # case does not matter ...
    expect(page.locator("[data-testid=audience-reachable]")).to_have_attribute("data-reachable", "1")
    expect(page.locator("[data-testid=audience-reachable]")).to_contain_text(
        "1 of them reachable on WhatsApp"
    )
    expect(page.locator("[data-testid=sample-unreachable]")).to_have_count(5)
    condition(page, 0).locator("[data-testid=match-case]").check()  # ... unless it should
    expect(count).to_have_attribute("data-count", "0")
    expect(page.locator("[data-testid=rule-text]")).to_have_value('T("city", eq_cs, "BERLIN")')
    page.fill("[data-testid=rule-text]", 'T("city", eq_cs, "Berlin")')
    expect(count).to_have_attribute("data-count", "6")
    expect(condition(page, 0).locator("[data-testid=match-case]")).to_be_checked()
    condition(page, 0).get_by_label("Operator").focus()  # the text box, focused, is not overwritten
    condition(page, 0).get_by_label("Operator").select_option("any")
    expect(condition(page, 0).locator("[data-testid=match-case]")).to_have_count(0)
    expect(page.locator("[data-testid=rule-text]")).to_have_value('T("city", any)')
    assert page.console_problems == []
