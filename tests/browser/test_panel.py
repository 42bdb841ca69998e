from __future__ import annotations

import pytest

from controlpanel.context_processors import NAVIGATION
from controlpanel.models import Role
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_log_in_switch_project_visit_every_section_and_log_out(page, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    first = MembershipFactory(project=ProjectFactory(name="Alpha Foods", slug="alpha"), role=Role.OWNER)
    MembershipFactory(
        project=ProjectFactory(name="Beta Books", slug="beta"), user=first.user, role=Role.VIEWER
    )

    page.goto("/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", first.user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/p/*/")
    landed = page.locator("[data-testid=project-switcher]").inner_text().strip()
    assert landed in {"Alpha Foods", "Beta Books"}
    target = "Beta Books" if landed == "Alpha Foods" else "Alpha Foods"

    page.click("[data-testid=project-switcher]")
    page.get_by_role("link", name=target).click()
    page.wait_for_load_state()
    assert page.locator("[data-testid=project-switcher]").inner_text().strip() == target

    for label, _, _, _ in NAVIGATION:
        page.locator("#sidebar-menu .nav-link", has_text=label).first.click()
        page.wait_for_load_state()
        assert (
            page.locator(f"#sidebar-menu .nav-item.active .nav-link-title:text-is('{label}')").count() == 1
        ), label
        assert page.locator("h1.page-title").is_visible(), label

    page.click("[data-testid=logout]")
    page.wait_for_url("**/accounts/login/")
    page.goto("/p/alpha/")
    assert "/accounts/login/" in page.url
    # CSP violations and script errors show up as console errors.
    assert page.console_problems == []


def test_settings_pages_work_for_an_owner(page, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    owner = MembershipFactory(project=ProjectFactory(name="Alpha Foods", slug="alpha"), role=Role.OWNER).user
    page.goto("/accounts/login/")
    page.fill("input[name=username]", owner.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/p/alpha/")

    page.goto("/p/alpha/settings/api-keys/")
    page.fill("input[name=name]", "Shop backend")
    page.click("text=Create key")
    key = page.locator("#new-api-key").input_value()
    assert key.startswith("wak_")
    page.reload()  # shown once: a reload does not show it again
    assert page.locator("#new-api-key").count() == 0
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("text=Revoke")
    page.wait_for_load_state()
    assert page.locator(".badge", has_text="revoked").count() == 1
    assert page.console_problems == []
