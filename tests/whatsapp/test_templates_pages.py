"""Template pages: list with filters, detail with a phone preview, and creating a template at Meta
(HTTP seam faked like tests/campaigns/fakegraph.py)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from controlpanel.models import AuditEntry, Role
from tests.factories import MembershipFactory, ProjectFactory
from tests.fakegraph import error_answer
from whatsapp.models import MessageTemplate, WhatsAppAccount
from whatsapp.processing import handle_template_status
from whatsapp.template_forms import TemplateForm
from whatsapp.template_views import copy_data
from whatsapp.templates_lint import build_payload, lint

from .payloads import template_status

CREATED = {"id": "1689556908129832", "status": "PENDING", "category": "MARKETING"}


@pytest.fixture
def as_role(client, account):
    def login(role: Role):
        client.force_login(MembershipFactory(project=account.project, role=role).user)
        return client

    return login


@pytest.fixture
def marketer(as_role):
    return as_role(Role.MARKETER)


def make(account, name, **kw) -> MessageTemplate:
    defaults = {
        "project": account.project,
        "account": account,
        "name": name,
        "language": "en_US",
        "category": "MARKETING",
        "status": "APPROVED",
        "components": [{"type": "BODY", "text": f"Hello from {name}."}],
    }
    defaults.update(kw)
    return MessageTemplate.objects.create(**defaults)


def url(name: str, project, *args) -> str:
    return reverse(f"whatsapp:{name}", args=[project.slug, *args])


# --- list ---------------------------------------------------------------------------------------------


def test_list_shows_every_template_with_status_quality_and_reason(marketer, account):
    make(account, "summer_sale", quality_score="GREEN")
    make(account, "order_update", category="UTILITY", status="PENDING", language="de")
    make(
        account,
        "cart_reminder",
        status="REJECTED",
        rejected_reason="INVALID_FORMAT",
        rejection_detail="Parameters placed next to each other",
    )
    make(account, "old_promo", status="DELETED")
    page = marketer.get(url("templates", account.project)).content.decode()
    assert "3 templates" in page
    assert "summer_sale" in page and "order_update" in page and "cart_reminder" in page
    assert "old_promo" not in page and "1 deleted at Meta not shown" in page
    assert "bg-green-lt" in page and "Approved" in page
    assert "Pending review" in page and "bg-yellow-lt" in page
    assert "Invalid format: Parameters placed next to each other" in page
    assert "High" in page
    assert 'action="' + url("templates_sync", account.project) + '"' in page
    assert url("template_create", account.project) in page


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ("status=REJECTED", {"cart_reminder"}, {"summer_sale", "order_update"}),
        ("status=DELETED", {"old_promo"}, {"summer_sale"}),
        ("category=UTILITY", {"order_update"}, {"summer_sale", "cart_reminder"}),
        ("language=de", {"order_update"}, {"summer_sale"}),
        ("q=summer", {"summer_sale"}, {"order_update", "cart_reminder"}),
        ("q=order+update", {"order_update"}, {"summer_sale"}),
        ("status=APPROVED&category=MARKETING", {"summer_sale"}, {"order_update", "cart_reminder"}),
    ],
)
def test_list_filters(marketer, account, query, shown, hidden):
    make(account, "summer_sale")
    make(account, "order_update", category="UTILITY", language="de")
    make(account, "cart_reminder", status="REJECTED")
    make(account, "old_promo", status="DELETED")
    page = marketer.get(url("templates", account.project) + "?" + query).content.decode()
    for name in shown:
        assert f'data-template="{name}"' in page
    for name in hidden:
        assert f'data-template="{name}"' not in page


def test_unknown_filter_values_are_reported_not_ignored(marketer, account):
    make(account, "summer_sale")
    page = marketer.get(url("templates", account.project) + "?status=LOST&language=xx").content.decode()
    assert "Unknown status “LOST”." in page
    assert "No template is in the language “xx”." in page
    assert 'data-template="summer_sale"' in page


def test_htmx_filter_request_gets_only_the_results(marketer, account):
    make(account, "summer_sale")
    response = marketer.get(
        url("templates", account.project) + "?q=summer&status=&category=&language=",
        headers={"HX-Request": "true", "HX-Target": "template-results"},
    )
    body = response.content.decode()
    assert response["HX-Push-Url"] == url("templates", account.project) + "?q=summer"
    assert body.lstrip().startswith('<div id="template-results">')
    assert "<html" not in body and 'data-template="summer_sale"' in body


def test_list_query_count_does_not_grow_with_templates(marketer, account):
    make(account, "first")

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert marketer.get(url("templates", account.project)).status_code == 200
        return len(ctx.captured_queries)

    few = count()
    for i in range(15):
        make(account, f"t_{i}", language="de" if i % 2 else "en_US")
    assert count() == few
    assert few <= 10


def test_list_without_a_connection_sends_admins_to_settings(as_role, account):
    project = ProjectFactory()
    client = as_role(Role.ADMIN)
    client.force_login(MembershipFactory(project=project, role=Role.ADMIN).user)
    page = client.get(url("templates", project)).content.decode()
    assert "No WhatsApp number is connected" in page
    assert url("connection", project) in page


def test_list_without_a_connection_tells_others_who_can_connect(client, db):
    project = ProjectFactory(name="Beta Books")
    client.force_login(MembershipFactory(project=project, role=Role.MARKETER).user)
    page = client.get(url("templates", project)).content.decode()
    assert "needs the Admin role" in page and "Beta Books" in page
    assert url("connection", project) not in page
    # Creating is impossible too, and says why.
    assert "No WhatsApp number is connected" in client.get(url("template_create", project)).content.decode()


def test_viewer_sees_list_and_detail_without_write_actions(as_role, account):
    template = make(account, "summer_sale")
    viewer = as_role(Role.VIEWER)
    page = viewer.get(url("templates", account.project)).content.decode()
    assert "summer_sale" in page
    assert "Sync now" not in page and url("template_create", account.project) not in page
    detail = viewer.get(url("template_detail", account.project, template.public_id)).content.decode()
    assert "Hello from summer_sale." in detail
    assert url("template_create", account.project) not in detail


def test_templates_of_another_project_stay_invisible(marketer, account):
    other_account = WhatsAppAccount.objects.create(
        project=ProjectFactory(), waba_id="9", phone_number_id="99", access_token="t", app_secret="s"
    )
    foreign = make(other_account, "their_secret_promo")
    assert "their_secret_promo" not in marketer.get(url("templates", account.project)).content.decode()
    response = marketer.get(url("template_detail", account.project, foreign.public_id))
    assert response.status_code == 404


# --- detail -------------------------------------------------------------------------------------------


def test_detail_previews_with_sample_values(marketer, account):
    template = make(
        account,
        "summer_sale",
        components=[
            {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1hZ2U="]}},
            {
                "type": "BODY",
                "text": "Hi {{1}}, use *{{2}}* for 20% off.",
                "example": {"body_text": [["Mark", "SUMMER20"]]},
            },
            {"type": "FOOTER", "text": "Tap Stop to opt out"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {
                        "type": "URL",
                        "text": "Shop",
                        "url": "https://x.test/{{1}}",
                        "example": ["https://x.test/s"],
                    },
                    {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+4930123456"},
                    {"type": "COPY_CODE", "example": "SUMMER20"},
                    {"type": "QUICK_REPLY", "text": "Stop promotions"},
                ],
            },
        ],
    )
    page = marketer.get(url("template_detail", account.project, template.public_id)).content.decode()
    assert 'Hi <span class="wa-param" title="{{1}}">Mark</span>, use <strong><span class="wa-param"' in page
    assert ">SUMMER20</span></strong> for 20% off." in page
    assert "Image" in page and "4::aW1hZ2U=" in page
    assert "Tap Stop to opt out" in page
    for label in ("Shop", "Call us", "Copy offer code", "Stop promotions"):
        assert f'<span class="wa-button-label">{label}</span>' in page
    # The parameters a send fills in, with Meta's samples.
    assert "Button 1 (link)" in page and "Meta's sample" in page
    assert "&quot;type&quot;: &quot;HEADER&quot;" in page  # raw components, collapsed in <details>


def test_detail_preview_escapes_text(marketer, account):
    template = make(
        account,
        "xss",
        components=[{"type": "BODY", "text": "<b>Hi</b> {{1}}", "example": {"body_text": [["<img src=x>"]]}}],
    )
    page = marketer.get(url("template_detail", account.project, template.public_id)).content.decode()
    assert "&lt;b&gt;Hi&lt;/b&gt;" in page and "&lt;img src=x&gt;" in page
    assert "<img src=x>" not in page


def test_detail_of_named_template(marketer, account):
    template = make(
        account,
        "order_shipped",
        parameter_format="NAMED",
        components=[
            {
                "type": "BODY",
                "text": "Hallo {{first_name}}, Bestellung {{order_id}} ist unterwegs.",
                "example": {
                    "body_text_named_params": [
                        {"param_name": "first_name", "example": "Jana"},
                        {"param_name": "order_id", "example": "A-1042"},
                    ]
                },
            }
        ],
    )
    page = marketer.get(url("template_detail", account.project, template.public_id)).content.decode()
    assert 'title="{{first_name}}">Jana</span>' in page and 'title="{{order_id}}">A-1042</span>' in page
    assert "{{order_id}}" in page and "Named" in page


def test_detail_of_authentication_template_shows_the_code(marketer, account):
    template = make(
        account,
        "login_code",
        category="AUTHENTICATION",
        components=[
            {
                "type": "BODY",
                "text": "*{{1}}* is your verification code.",
                "add_security_recommendation": False,
            },
            {"type": "FOOTER", "code_expiration_minutes": 10},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "text": "Copy code", "url": "https://x/otp{{1}}"}],
            },
        ],
    )
    page = marketer.get(url("template_detail", account.project, template.public_id)).content.decode()
    assert (
        '<strong><span class="wa-param" title="{{1}}">123456</span></strong> is your verification code.'
        in page
    )
    assert "This code expires in 10 minutes." in page
    assert '<span class="wa-button-label">Copy code</span>' in page


def test_rejection_from_the_webhook_is_shown_on_the_detail_page(marketer, account):
    template = make(account, "cart_reminder", status="PENDING", meta_id="1689556908129835")
    value = template_status("cart_reminder", "en_US", "REJECTED", reason="INVALID_FORMAT")["entry"][0]
    handle_template_status(account, value["changes"][0]["value"])
    page = marketer.get(url("template_detail", account.project, template.public_id)).content.decode()
    assert "Meta rejected this template: Invalid format" in page
    assert "Parameters placed next to each other Separate them" in page
    listing = marketer.get(url("templates", account.project) + "?status=REJECTED").content.decode()
    assert 'data-template="cart_reminder"' in listing and "Invalid format" in listing


def test_a_pending_template_page_polls_its_status_until_it_is_final(marketer, account):
    template = make(account, "cart_reminder", status="PENDING", meta_id="1689556908129835")
    page_url = url("template_detail", account.project, template.public_id)
    page = marketer.get(page_url).content.decode()
    assert f'hx-get="{page_url}" hx-trigger="every 3s"' in page
    poll = {"HX-Request": "true", "HX-Target": "template-status"}
    still = marketer.get(page_url, headers=poll)
    assert still.status_code == 200 and "hx-trigger" in still.content.decode()
    assert "<html" not in still.content.decode()  # only the status region

    value = template_status("cart_reminder", "en_US", "APPROVED")["entry"][0]
    handle_template_status(account, value["changes"][0]["value"])
    final = marketer.get(page_url, headers=poll)
    text = final.content.decode()
    assert final.status_code == 286  # htmx stops polling
    assert "hx-trigger" not in text and "Meta is reviewing" not in text
    # The badges in the heading and the details swap along (out of band).
    assert text.count('hx-swap-oob="true"') == 2 and text.count(">Approved</span>") == 2
    assert "hx-trigger" not in marketer.get(page_url).content.decode()


def test_detail_takes_no_posts(marketer, account):
    template = make(account, "summer_sale")
    assert marketer.post(url("template_detail", account.project, template.public_id)).status_code == 405


# --- create -------------------------------------------------------------------------------------------


def post_create(client, account, data: dict, buttons: list[dict] | None = None):
    payload = {
        "name": "",
        "language": "en_US",
        "category": "MARKETING",
        "parameter_format": "POSITIONAL",
        "header_format": "",
        **data,
    }
    rows = buttons or []
    for key in ("type", "text", "url", "example", "phone_number"):
        payload[f"button_{key}"] = [row.get(key, "") for row in rows]
    return client.post(url("template_create", account.project), payload)


def test_create_marketing_template_sends_metas_payload_and_keeps_the_answer(marketer, account, graph):
    graph.answer = lambda body: (200, CREATED)
    response = post_create(
        marketer,
        account,
        {
            "name": "spring_sale",
            "header_format": "TEXT",
            "header_text": "Spring deals for {{1}}",
            "header_example": "you",
            "body": "Hi {{1}}, enjoy *{{2}} off* until {{3}}.",
            "example:1": "Mark",
            "example:2": "20%",
            "example:3": "Sunday",
            "footer": "Reply STOP to opt out",
        },
        buttons=[
            {
                "type": "URL",
                "text": "Shop now",
                "url": "https://shop.example/spring/{{1}}",
                "example": "sale",
            },
            {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+49 30 1234567"},
            {"type": "COPY_CODE", "example": "SPRING20", "text": "ignored"},
            {"type": "QUICK_REPLY", "text": "Stop promotions", "url": "ignored"},
        ],
    )
    [(method, sent_to, body, headers)] = graph.calls
    assert method == "POST"
    assert sent_to == f"{account.graph_base}/{account.waba_id}/message_templates"
    assert headers["Authorization"] == "Bearer EAAG-test-token"
    assert body == {
        "name": "spring_sale",
        "language": "en_US",
        "category": "MARKETING",
        "parameter_format": "POSITIONAL",
        "components": [
            {
                "type": "HEADER",
                "format": "TEXT",
                "text": "Spring deals for {{1}}",
                "example": {"header_text": ["you"]},
            },
            {
                "type": "BODY",
                "text": "Hi {{1}}, enjoy *{{2}} off* until {{3}}.",
                "example": {"body_text": [["Mark", "20%", "Sunday"]]},
            },
            {"type": "FOOTER", "text": "Reply STOP to opt out"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {
                        "type": "URL",
                        "text": "Shop now",
                        "url": "https://shop.example/spring/{{1}}",
                        "example": ["https://shop.example/spring/sale"],
                    },
                    {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+49301234567"},
                    {"type": "COPY_CODE", "example": "SPRING20"},
                    {"type": "QUICK_REPLY", "text": "Stop promotions"},
                ],
            },
        ],
    }
    template = MessageTemplate.objects.get(account=account, name="spring_sale", language="en_US")
    assert response.status_code == 302
    assert response["Location"] == url("template_detail", account.project, template.public_id)
    assert (template.meta_id, template.status, template.category) == (
        "1689556908129832",
        "PENDING",
        "MARKETING",
    )
    assert template.components == body["components"] and template.project == account.project
    assert AuditEntry.objects.filter(
        project=account.project, action="whatsapp.template_submitted", object_id=str(template.public_id)
    ).exists()
    page = marketer.get(response["Location"]).content.decode()
    assert "spring_sale was sent to Meta for review: pending review." in page
    assert 'title="{{3}}">Sunday</span>' in page


def test_create_named_template(marketer, account, graph):
    graph.answer = lambda body: (200, {"id": "77", "status": "PENDING", "category": "UTILITY"})
    post_create(
        marketer,
        account,
        {
            "name": "order_shipped",
            "language": "de",
            "category": "UTILITY",
            "parameter_format": "NAMED",
            "header_format": "TEXT",
            "header_text": "Bestellung {{order_id}}",
            "header_example": "A-1042",
            "body": "Hallo {{first_name}}, deine Bestellung kommt am {{delivery_date}} an.",
            "example:first_name": "Jana",
            "example:delivery_date": "Freitag",
            "example:stale_param": "not in the body any more",
        },
        buttons=[{"type": "URL", "text": "Sendung verfolgen", "url": "https://shop.example/track"}],
    )
    [(_, _, body, _)] = graph.calls
    assert body == {
        "name": "order_shipped",
        "language": "de",
        "category": "UTILITY",
        "parameter_format": "NAMED",
        "components": [
            {
                "type": "HEADER",
                "format": "TEXT",
                "text": "Bestellung {{order_id}}",
                "example": {"header_text_named_params": [{"param_name": "order_id", "example": "A-1042"}]},
            },
            {
                "type": "BODY",
                "text": "Hallo {{first_name}}, deine Bestellung kommt am {{delivery_date}} an.",
                "example": {
                    "body_text_named_params": [
                        {"param_name": "first_name", "example": "Jana"},
                        {"param_name": "delivery_date", "example": "Freitag"},
                    ]
                },
            },
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "URL", "text": "Sendung verfolgen", "url": "https://shop.example/track"}
                ],
            },
        ],
    }
    template = MessageTemplate.objects.get(name="order_shipped")
    assert template.parameter_format == "NAMED" and template.category == "UTILITY"


def test_create_authentication_template_with_otp_button(marketer, account, graph):
    graph.answer = lambda body: (200, {"id": "88", "status": "APPROVED", "category": "AUTHENTICATION"})
    post_create(
        marketer,
        account,
        {
            "name": "login_code",
            "category": "AUTHENTICATION",
            "add_security_recommendation": "on",
            "code_expiration_minutes": "10",
            "otp_type": "COPY_CODE",
            "otp_button_text": "Copy code",
            # Inputs of other sections a browser without JavaScript still sends, left empty.
            "body": "",
            "footer": "",
        },
    )
    [(_, _, body, _)] = graph.calls
    assert body == {
        "name": "login_code",
        "language": "en_US",
        "category": "AUTHENTICATION",
        "components": [
            {"type": "BODY", "add_security_recommendation": True},
            {"type": "FOOTER", "code_expiration_minutes": 10},
            {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}]},
        ],
    }
    template = MessageTemplate.objects.get(name="login_code")
    assert template.status == "APPROVED"
    # Stored with Meta's preset text, so a send can fill in the code before the next sync.
    assert template.components[0]["text"].startswith("*{{1}}* is your verification code.")
    page = marketer.get(url("template_detail", account.project, template.public_id)).content.decode()
    assert "123456</span></strong> is your verification code. For your security" in page


def test_meta_refusing_shows_its_error_and_saves_nothing(marketer, account, graph):
    graph.answer = error_answer(100, message="Invalid parameter")
    response = post_create(
        marketer,
        account,
        {"name": "spring_sale", "body": "Hi {{1}}, our sale starts today.", "example:1": "Mark"},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert len(graph.calls) == 1
    assert "Meta refused the template" in page
    assert "Meta rejected a parameter of the request" in page  # GraphError.explanation
    assert "details of 100" in page and "TRACE123" in page
    assert not MessageTemplate.objects.filter(name="spring_sale").exists()
    # Nothing typed is lost.
    assert 'value="spring_sale"' in page and "Hi {{1}}, our sale starts today." in page
    assert 'name="example:1" value="Mark"' in page


def test_meta_unreachable_is_said_plainly(marketer, account, graph):
    import requests

    graph.raise_exc = requests.ConnectionError("down")
    page = post_create(
        marketer,
        account,
        {"name": "spring_sale", "body": "Hi {{1}}, our sale starts today.", "example:1": "M"},
    ).content.decode()
    assert "Meta could not be reached" in page
    assert not MessageTemplate.objects.exists()


def test_lint_errors_block_submission_and_sit_next_to_their_fields(marketer, account, graph):
    response = post_create(
        marketer,
        account,
        {"name": "Spring Sale", "body": "{{1}} {{2}} today", "example:1": "Mark"},
        buttons=[{"type": "URL", "text": "Shop", "url": "shop.example"}],
    )
    page = response.content.decode()
    assert graph.calls == []
    assert not MessageTemplate.objects.exists()
    assert "problems to fix before Meta sees it" in page
    assert 'data-problem="name">Use lowercase letters' in page
    assert 'data-problem="body">The body may not start with a parameter' in page
    assert 'data-problem="example:2">Give a sample value for {{2}}.' in page
    assert 'data-problem="button-0-url">The address starts with https://' in page
    assert 'name="example:2"' in page  # the sample input exists even without JavaScript


def test_warnings_do_not_block(marketer, account, graph):
    graph.answer = lambda body: (200, {"id": "5", "status": "PENDING", "category": "MARKETING"})
    response = post_create(
        marketer,
        account,
        {
            "name": "notice",
            "category": "UTILITY",
            "body": "Your coupon for the sale is ready, {{1}}!",
            "example:1": "M",
        },
    )
    assert response.status_code == 302
    template = MessageTemplate.objects.get(name="notice")
    # Meta approved it as marketing: the page says it was submitted as utility.
    assert template.category == "MARKETING" and template.previous_category == "UTILITY"


def test_an_existing_name_and_language_is_refused_before_meta(marketer, account, graph):
    make(account, "spring_sale")
    page = post_create(
        marketer,
        account,
        {"name": "spring_sale", "body": "Hi {{1}}, our sale starts today.", "example:1": "M"},
    ).content.decode()
    assert graph.calls == []
    assert "already has a template spring_sale in en_US" in page


def test_live_preview_lints_and_previews_without_calling_meta(marketer, account, graph):
    response = marketer.get(
        url("template_create", account.project),
        {"name": "promo", "category": "MARKETING", "body": "Hi {{1}}, see {{3}} today.", "example:1": "Mark"},
        headers={"HX-Request": "true", "HX-Target": "template-live"},
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="template-live"')
    # The fields that still have problems, for the page to drop the notes of fixed ones.
    assert 'data-problem-fields="[&quot;body&quot;, &quot;language&quot;]" data-error-count="2"' in body
    assert 'title="{{1}}">Mark</span>' in body
    assert "{{2}} is missing" in body
    assert graph.calls == [] and not MessageTemplate.objects.exists()


def test_add_and_remove_button_rows_without_javascript(marketer, account, graph):
    added = post_create(
        marketer,
        account,
        {"name": "promo", "add_button": "1"},
        buttons=[{"type": "URL", "text": "Shop", "url": "https://x.test/"}],
    ).content.decode()
    assert graph.calls == []
    # The typed row, a new one, and the <template> JavaScript clones.
    assert added.count("data-button-row>") == 3
    removed = post_create(
        marketer,
        account,
        {"name": "promo", "remove_button": "0"},
        buttons=[
            {"type": "URL", "text": "Shop", "url": "https://x.test/"},
            {"type": "QUICK_REPLY", "text": "No"},
        ],
    ).content.decode()
    assert graph.calls == []
    assert 'value="No"' in removed and 'value="Shop"' not in removed


def test_choosing_among_several_numbers(marketer, account, graph):
    second = WhatsAppAccount.objects.create(
        project=account.project, waba_id="555", phone_number_id="5551", access_token="t2", app_secret="s"
    )
    graph.answer = lambda body: (200, CREATED)
    post_create(
        marketer,
        account,
        {
            "account": str(second.public_id),
            "name": "spring_sale",
            "body": "Hi {{1}}, our sale starts today.",
            "example:1": "M",
        },
    )
    [(_, sent_to, _, _)] = graph.calls
    assert sent_to.endswith("/555/message_templates")
    assert MessageTemplate.objects.get(name="spring_sale").account == second


def test_viewer_may_not_open_the_form(as_role, account):
    viewer = as_role(Role.VIEWER)
    assert viewer.get(url("template_create", account.project)).status_code == 403
    assert viewer.post(url("template_create", account.project), {"name": "x"}).status_code == 403


# --- copying ------------------------------------------------------------------------------------------


def test_a_rejected_template_is_copied_into_the_form_with_metas_reason_checked(marketer, account, graph):
    template = make(
        account,
        "cart_reminder",
        status="REJECTED",
        rejected_reason="INVALID_FORMAT",
        components=[
            {"type": "BODY", "text": "Hi {{1}} {{2}} is waiting.", "example": {"body_text": [["A", "B"]]}}
        ],
    )
    detail = marketer.get(url("template_detail", account.project, template.public_id)).content.decode()
    copy_url = f"{url('template_create', account.project)}?from={template.public_id}"
    assert copy_url in detail and "Fix and submit as a new template" in detail
    page = marketer.get(copy_url).content.decode()
    assert "A copy of" in page and "which Meta rejected (INVALID_FORMAT)" in page
    assert 'value="cart_reminder_v2"' in page and 'name="example:2" value="B"' in page
    assert 'data-problem="body">{{1}} and {{2}} stand next to each other' in page
    assert graph.calls == []


def test_copy_round_trips_to_the_same_payload(marketer, account, graph):
    graph.answer = lambda body: (200, {"id": "1", "status": "PENDING", "category": "MARKETING"})
    post_create(
        marketer,
        account,
        {
            "name": "spring_sale",
            "header_format": "IMAGE",
            "header_media": "4::aW1hZ2U=",
            "body": "Hi {{1}}, enjoy {{2}} off this week.",
            "example:1": "Mark",
            "example:2": "20%",
            "footer": "Reply STOP to opt out",
        },
        buttons=[
            {"type": "URL", "text": "Shop", "url": "https://x.test/s/{{1}}", "example": "sale"},
            {"type": "COPY_CODE", "example": "SAVE20"},
        ],
    )
    original = MessageTemplate.objects.get(name="spring_sale")
    form = TemplateForm(copy_data(original), accounts=[account])
    assert form.is_valid()
    draft = form.draft()
    assert lint(draft) == []
    assert build_payload(draft)["components"] == graph.calls[0][2]["components"]


def test_copy_of_another_projects_template_is_404(marketer, account):
    other = WhatsAppAccount.objects.create(
        project=ProjectFactory(), waba_id="9", phone_number_id="99", access_token="t", app_secret="s"
    )
    foreign = make(other, "theirs")
    assert (
        marketer.get(f"{url('template_create', account.project)}?from={foreign.public_id}").status_code == 404
    )
    assert marketer.get(f"{url('template_create', account.project)}?from=not-a-uuid").status_code == 404


@pytest.mark.parametrize(
    "components",
    [
        {"type": "BODY"},
        ["BODY"],
        [{"type": "HEADER", "format": "IMAGE", "example": ["not", "a", "dict"]}],
        [{"type": "BODY", "text": "Hi {{1}}", "example": {"body_text": "Mark"}}],
        [
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "url": "https://x/{{1}}", "example": "https://x/a"}, "x"],
            }
        ],
        [{"type": "BUTTONS", "buttons": {"type": "QUICK_REPLY"}}, {"type": "FLOW", "flow_id": "1"}],
    ],
)
def test_unexpected_component_shapes_never_break_the_pages(marketer, account, components):
    template = make(account, "odd", components=components)
    assert marketer.get(url("template_detail", account.project, template.public_id)).status_code == 200
    assert marketer.get(url("templates", account.project)).status_code == 200
    copy = f"{url('template_create', account.project)}?from={template.public_id}"
    assert marketer.get(copy).status_code == 200
