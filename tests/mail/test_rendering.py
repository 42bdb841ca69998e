"""Rendering an email template: Liquid of campaigns.bindings, HTML escaped, checks per field."""

from __future__ import annotations

import pytest

from campaigns.services import SendRefused
from mail import services
from mail.models import EmailTemplate
from subscribers.errors import InvalidInput
from tests.factories import EmailTemplateFactory

CONTEXT = {
    "subscriber": {"name": "<b>Ann</b> & co", "email": "ann@example.com"},
    "tags": {"first_name": "Ann", "city": "Köln"},
    "values": {"order_id": "A-1"},
    "event": {"total": 12},
    "unsubscribe_url": "https://x.example/u/1/",
}


def _template(**parts) -> EmailTemplate:
    fields = {"subject": "Hi", "preheader": "", "html": "", "text": "body", "marketing": False}
    return EmailTemplate(name="t", **{**fields, **parts})


def test_html_escapes_subscriber_data_and_keeps_the_templates_markup():
    rendered = services.render_email(
        _template(html='<p class="x">Hi {{ subscriber.name }}</p><a href="{{ unsubscribe_url }}">u</a>'),
        CONTEXT,
    )
    assert rendered["html"] == (
        '<p class="x">Hi &lt;b&gt;Ann&lt;/b&gt; &amp; co</p><a href="https://x.example/u/1/">u</a>'
    )


def test_plain_parts_are_not_escaped_and_header_lines_are_one_line():
    template = _template(
        subject="Order {{ values.order_id }}\nfor {{ subscriber.name }}",
        preheader="{{ tags.city }} total {{ event.total }}",
        text="Dear {{ subscriber.name }}",
    )
    rendered = services.render_email(template, CONTEXT)
    assert rendered["subject"] == "Order A-1 for <b>Ann</b> & co"
    assert rendered["preheader"] == "Köln total 12"
    assert rendered["text"] == "Dear <b>Ann</b> & co"


def test_an_empty_subject_refuses_with_the_reason():
    with pytest.raises(SendRefused, match="subject is empty"):
        services.render_email(_template(subject="{{ tags.nickname }}"), CONTEXT)


def test_a_part_that_fails_to_render_names_the_part():
    with pytest.raises(SendRefused, match="The text could not be rendered"):
        services.render_email(
            _template(text="{{ values.n | divided_by: 0 }}"), {**CONTEXT, "values": {"n": 1}}
        )


def test_bindings_sandbox_applies_loops_are_bounded():
    template = _template(text="{% for i in (1..100000) %}x{% endfor %}")
    with pytest.raises(SendRefused):
        services.render_email(template, CONTEXT)


def test_template_errors_are_per_field():
    errors = services.template_errors(
        subject="{{ subscriber.nam }}",
        preheader="{% if %}",
        html="{{ customer.name }}",
        text="{{ x | nosuchfilter }}",
        marketing=False,
    )
    assert set(errors) == {"subject", "preheader", "html", "text"}
    assert "subscriber.nam" in errors["subject"]
    assert errors["preheader"].startswith("The preheader is not valid Liquid")
    assert "“customer”" in errors["html"]
    assert "nosuchfilter" in errors["text"]


def test_a_marketing_template_needs_the_unsubscribe_link_and_a_body():
    assert (
        "unsubscribe"
        in services.template_errors(subject="s", preheader="", html="<p>hi</p>", text="", marketing=True)[
            "html"
        ]
    )
    assert (
        "to the text"
        in services.template_errors(subject="s", preheader="", html="", text="Hi", marketing=True)["text"]
    )
    assert services.template_errors(subject="s", preheader="", html="", text="", marketing=False) == {
        "html": "Write the HTML, the text, or both."
    }
    assert (
        services.template_errors(
            subject="s", preheader="", html='<a href="{{ unsubscribe_url }}">x</a>', text="", marketing=True
        )
        == {}
    )


def test_save_template_refuses_a_taken_name_and_bad_liquid(project):
    EmailTemplateFactory(project=project, name="welcome")
    fields = {"name": "welcome", "subject": "s", "preheader": "", "html": "", "text": "t", "marketing": False}
    with pytest.raises(InvalidInput) as taken:
        services.save_template(project=project, template=None, fields=fields)
    assert taken.value.field == "name"
    with pytest.raises(InvalidInput) as bad:
        services.save_template(project=project, template=None, fields={**fields, "name": "n", "text": "{{ x"})
    assert bad.value.field == "text"
    assert EmailTemplate.objects.for_project(project).count() == 1
