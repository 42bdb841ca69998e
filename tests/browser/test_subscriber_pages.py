"""A marketer adds a subscriber, edits a tag inline, opts them out and reads the timeline."""

from __future__ import annotations

import re

import pytest

from controlpanel.models import Role
from subscribers.models import ConsentChange, Subscriber, TagDefinition
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, user):
    page.goto("/accounts/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_add_edit_tag_inline_opt_out_and_timeline(page, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    marketer = MembershipFactory(project=project, role=Role.MARKETER).user
    TagDefinition.objects.create(project=project, name="orders", type="integer")
    log_in(page, marketer)

    page.goto("/p/alpha/subscribers/")
    page.get_by_role("link", name="Add subscriber").click()
    page.fill("input[name=phone]", "0151 12")
    page.fill("input[name=name]", "Anna Schmidt")
    page.click("button:text('Add subscriber')")
    # The reason is on the field and the input is kept.
    assert page.locator("[data-testid=error-phone]").is_visible()
    assert page.locator("input[name=name]").input_value() == "Anna Schmidt"
    page.fill("input[name=phone]", "0151 1234 0001")
    page.check("input[name=opt_in]")
    page.fill("textarea[name=opt_in_evidence]", "Signed up at the counter")
    page.click("button:text('Add subscriber')")
    page.wait_for_url(re.compile(r"/p/alpha/subscribers/[0-9a-f-]{36}/$"))
    assert page.locator("h1.page-title").inner_text() == "Anna Schmidt"
    assert "+4915112340001" in page.locator("[data-testid=profile]").inner_text()

    # Add a tag of a known type, then edit it inline with htmx.
    page.fill("[data-testid=tag-add] input[name=name]", "orders")
    page.fill("[data-testid=tag-add] input[name=value]", "3")
    page.click("[data-testid=tag-add] button:text('Add tag')")
    row = page.locator("[data-testid=tag-row][data-tag=orders]")
    assert row.locator("[data-testid=tag-value]").inner_text().strip() == "3"
    url_before = page.url
    row.get_by_role("link", name="Edit").click()
    number = row.locator("input[name=value][type=number]")
    number.fill("7")
    row.get_by_role("button", name="Save").click()
    page.wait_for_selector("[data-testid=tag-row][data-tag=orders] [data-testid=tag-value]")
    assert row.locator("[data-testid=tag-value]").inner_text().strip() == "7"
    assert page.url == url_before  # swapped in place, no page load

    # A refused value: Country must be a two-letter code; the message shows in the row.
    country = page.locator("[data-testid=tag-row][data-tag=Country]")
    country.get_by_role("link", name="Edit").click()
    country.locator("input[name=value]").fill("Germany")
    country.get_by_role("button", name="Save").click()
    error = country.locator("[data-testid=tag-error]")
    error.wait_for()
    assert "two-letter code" in error.inner_text()
    assert country.locator("input[name=value]").input_value() == "Germany"
    country.get_by_role("link", name="Cancel").click()
    page.wait_for_selector("[data-testid=tag-row][data-tag=Country] [data-testid=tag-value]")

    # Opt out with a reason: a ledger row, and the Unsubscribed event on the timeline.
    page.fill("#opt-out-evidence", "Replied STOP on the phone")
    page.click("[data-testid=opt-out-form] button")
    page.wait_for_load_state()
    assert "Opted out" in page.locator("[data-testid=consent]").inner_text()
    assert "Replied STOP on the phone" in page.locator("[data-testid=consent-history]").inner_text()
    events = page.locator("[data-testid=timeline] tbody tr")
    assert "Opted out of WhatsApp" in events.nth(0).inner_text()  # newest first, in words
    assert "Subscribed" in events.last.inner_text()

    subscriber = Subscriber.objects.get(project=project)
    assert subscriber.whatsapp_consent == "opted_out"
    assert ConsentChange.objects.filter(subscriber=subscriber).count() == 2

    # Back on the list: filter by consent through htmx; the URL follows so it can be shared.
    page.goto("/p/alpha/subscribers/")
    page.select_option("#f-consent", "opted_out")
    page.wait_for_url("**consent=opted_out**")
    assert "Anna Schmidt" in page.locator("#subscriber-results").inner_text()
    page.select_option("#f-consent", "opted_in")
    page.wait_for_url("**consent=opted_in**")
    page.wait_for_selector("[data-testid=no-results]")
    assert page.console_problems == []
