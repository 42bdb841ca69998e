"""Create a template through the form in Chromium and see it previewed like a phone shows it."""

from __future__ import annotations

import pytest

from controlpanel.models import Role
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory
from whatsapp.models import MessageTemplate, WhatsAppAccount

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def graph(graph):
    # Meta answers a template creation as PENDING, echoing the category.
    graph.answer = lambda body: (
        200,
        {"id": "1689556908129832", "status": "PENDING", "category": body["category"]},
    )
    return graph


@pytest.fixture
def marketer(page, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    project = ProjectFactory(name="Alpha Foods", slug="alpha")
    WhatsAppAccount.objects.create(
        project=project,
        waba_id="102290129340398",
        phone_number_id="106540352242922",
        display_phone_number="15550783881",
        verified_name="Alpha Foods",
        access_token="EAAG-token",
        app_secret="secret",
    )
    user = MembershipFactory(project=project, role=Role.MARKETER).user
    page.goto("/accounts/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/p/alpha/")
    return page


def test_create_a_marketing_template_and_see_its_preview(marketer, graph):
    page = marketer
    page.goto("/p/alpha/templates/")
    page.click("[data-testid=new-template]")
    page.wait_for_url("**/templates/new/")

    page.fill("input[name=name]", "Spring Offer")
    page.select_option("select[name=header_format]", "TEXT")
    page.fill("input[name=header_text]", "Spring deals for {{1}}")
    page.fill("input[name=header_example]", "you")
    page.fill("textarea[name=body]", "Hi {{1}}, enjoy *{{2}} off* until Sunday.")
    # One sample input per parameter appears as the body is typed.
    page.fill("input[name='example:1']", "Mark")
    page.fill("input[name='example:2']", "20%")
    page.fill("input[name=footer]", "Reply STOP to opt out")
    page.click("[data-add-button]")
    first = page.locator("[data-button-row]").nth(0)
    first.locator("select[name=button_type]").select_option("URL")
    first.locator("input[name=button_text]").fill("Shop now")
    first.locator("input[name=button_url]").fill("https://shop.example/spring/{{1}}")
    first.locator("input[name=button_example]").fill("sale")
    page.click("[data-add-button]")
    page.locator("[data-button-row]").nth(1).locator("input[name=button_text]").fill("Stop promotions")

    # The live preview and checks follow the form.
    phone = page.locator("#template-live [data-testid=phone-preview]")
    phone.locator(".wa-button-label", has_text="Stop promotions").wait_for()
    assert phone.locator("[data-testid=preview-body]").inner_text() == "Hi Mark, enjoy 20% off until Sunday."
    assert phone.locator("[data-testid=preview-header]").inner_text() == "Spring deals for you"
    assert phone.locator(".wa-button-label").all_inner_texts() == ["Shop now", "Stop promotions"]
    page.locator("[data-check=ok]").wait_for()
    assert page.locator("input[name=name]").input_value() == "spring_offer"

    # In-memory SQLite locks a table against concurrent threads: let the last preview finish first.
    page.wait_for_load_state("networkidle")
    page.click("[data-testid=submit-template]")
    page.wait_for_url("**/p/alpha/templates/*-*/")
    assert "spring_offer was sent to Meta for review" in page.locator("#messages").inner_text()
    assert page.locator("h1 [data-testid=status]").inner_text() == "Pending review"
    body = page.locator("[data-testid=preview-body]")
    assert body.inner_text() == "Hi Mark, enjoy 20% off until Sunday."
    assert body.locator("strong").inner_text() == "20% off"
    assert page.locator("[data-testid=preview-footer]").inner_text() == "Reply STOP to opt out"

    [(_, _, sent, _)] = graph.calls
    assert sent["name"] == "spring_offer" and sent["components"][-1]["buttons"][0]["example"] == [
        "https://shop.example/spring/sale"
    ]
    assert MessageTemplate.objects.get(name="spring_offer").meta_id == "1689556908129832"
    assert page.console_problems == []


def test_authentication_form_shows_only_what_authentication_allows(marketer, graph):
    page = marketer
    page.goto("/p/alpha/templates/new/")
    page.fill("textarea[name=body]", "Typed before switching")
    page.select_option("select[name=category]", "AUTHENTICATION")
    assert page.locator("textarea[name=body]").is_hidden()
    page.fill("input[name=name]", "login_code")
    page.fill("input[name=code_expiration_minutes]", "10")
    page.select_option("select[name=otp_type]", "ONE_TAP")
    page.fill("input[name=package_name]", "com.example.shop")
    page.fill("input[name=signature_hash]", "K8a/AINcGX7")
    phone = page.locator("#template-live [data-testid=phone-preview]")
    phone.locator("[data-testid=preview-footer]", has_text="This code expires in 10 minutes.").wait_for()
    assert "123456 is your verification code." in phone.locator("[data-testid=preview-body]").inner_text()

    # In-memory SQLite locks a table against concurrent threads: let the last preview finish first.
    page.wait_for_load_state("networkidle")
    page.click("[data-testid=submit-template]")
    page.wait_for_url("**/p/alpha/templates/*-*/")
    [(_, _, sent, _)] = graph.calls
    # The hidden body was not sent: Meta writes the text of authentication templates.
    assert sent["components"][0] == {"type": "BODY", "add_security_recommendation": True}
    assert sent["components"][-1]["buttons"][0]["supported_apps"] == [
        {"package_name": "com.example.shop", "signature_hash": "K8a/AINcGX7"}
    ]
    assert page.console_problems == []


def test_problems_of_a_submit_go_away_as_their_fields_are_fixed(marketer, graph):
    page = marketer
    page.goto("/p/alpha/templates/new/")
    page.fill("input[name=name]", "welcome_note")
    page.fill("textarea[name=body]", "Hi {{1}}, welcome to our shop.")
    page.wait_for_load_state("networkidle")
    page.click("[data-testid=submit-template]")
    page.wait_for_load_state("networkidle")
    note = page.locator("#template-form [data-problem='example:1']")
    assert note.count() == 1 and page.locator("[data-testid=form-errors]").count() == 1
    assert "is-invalid" in page.locator("input[name='example:1']").get_attribute("class")

    page.fill("input[name='example:1']", "Mark")
    page.locator("[data-check=ok]").wait_for()
    note.wait_for(state="detached")
    assert page.locator("[data-testid=form-errors]").count() == 0
    assert "is-invalid" not in page.locator("input[name='example:1']").get_attribute("class")
    assert not graph.calls  # nothing went to Meta
    page.wait_for_load_state("networkidle")
