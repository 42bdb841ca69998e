"""Conversations: replying inside the window, templates outside it, who may send, nothing lost on errors."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.conversations import thread
from campaigns.models import Message, MessageKind, MessageStatus
from campaigns.services import deliver
from controlpanel.models import Role
from subscribers.models import ConsentState
from tests.factories import SubscriberFactory
from whatsapp.models import WhatsAppAccount

from .conftest import make_template
from .test_conversations import receive, text, thread_url

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true", "HX-Target": "conversation-composer"}


@pytest.fixture
def account(project):
    return WhatsAppAccount.objects.create(
        project=project,
        waba_id="102290129340398",
        phone_number_id="106540352242922",
        display_phone_number="15550783881",
        access_token="EAAG-secret-token",
        app_secret="app-secret",
    )


@pytest.fixture
def marketer(member_of):
    return member_of(Role.MARKETER)


@pytest.fixture
def marketer_client(client, marketer):
    client.force_login(marketer)
    return client


@pytest.fixture
def anna(project):
    return SubscriberFactory(project=project, name="Anna", phone="+4915112345678")


def reply_url(subscriber) -> str:
    return reverse("campaigns:conversation_reply", args=[subscriber.project.slug, subscriber.public_id])


def template_url(subscriber) -> str:
    return reverse("campaigns:conversation_template", args=[subscriber.project.slug, subscriber.public_id])


def test_reply_inside_the_window_queues_a_text_and_shows_it_with_a_tick(
    marketer_client, marketer, account, anna, graph
):
    receive(account, anna, text("Where is my parcel?"), timezone.now() - timedelta(minutes=5))
    anchor = thread(project=anna.project, subscriber=anna).oldest_cursor

    response = marketer_client.post(
        reply_url(anna), {"text": "It arrives tomorrow.", "anchor": anchor}, headers=HTMX
    )

    message = Message.objects.get(subscriber=anna)
    assert (message.kind, message.body, message.status) == (
        MessageKind.TEXT,
        "It arrives tomorrow.",
        "queued",
    )
    assert message.history[0]["note"] == f"by {marketer.email}"
    html = response.content.decode()
    # A fresh, empty composer, and the thread (out of band) with the new message and its clock.
    assert html.lstrip().startswith('<div id="conversation-composer"')
    assert '<textarea id="reply-text" name="text"' in html and "It arrives tomorrow.</textarea>" not in html
    assert re.search(r'<section id="conversation-thread"[^>]* hx-swap-oob="true"', html)
    assert "It arrives tomorrow." in html and 'data-status="queued"' in html

    assert deliver(message.pk) == MessageStatus.SENT
    assert graph.calls[0][2]["text"]["body"] == "It arrives tomorrow."
    page = marketer_client.get(thread_url(anna)).content.decode()
    assert 'data-testid="ticks" data-status="sent"' in page


def test_reply_without_javascript_redirects_back_to_the_thread(marketer_client, account, anna):
    receive(account, anna, text("Hi"), timezone.now() - timedelta(minutes=5))

    response = marketer_client.post(reply_url(anna), {"text": "Hello Anna"})

    assert response.status_code == 302 and response["Location"] == thread_url(anna)
    assert Message.objects.filter(subscriber=anna, body="Hello Anna").exists()


def test_reply_outside_the_window_is_refused_and_keeps_the_text(marketer_client, account, anna):
    receive(account, anna, text("Hi"), timezone.now() - timedelta(hours=25))

    response = marketer_client.post(reply_url(anna), {"text": "Sorry for the late answer"}, headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert "may only be sent within 24 hours" in html and 'data-testid="send-error"' in html
    assert ">Sorry for the late answer</textarea>" in html
    assert not Message.objects.exists()
    # Without JavaScript: the whole page, 422, same reason, same text.
    page = marketer_client.post(reply_url(anna), {"text": "Sorry for the late answer"})
    assert page.status_code == 422
    assert "may only be sent within 24 hours" in page.content.decode()
    assert ">Sorry for the late answer</textarea>" in page.content.decode()


def test_empty_reply_is_refused(marketer_client, account, anna):
    receive(account, anna, text("Hi"), timezone.now() - timedelta(minutes=1))
    response = marketer_client.post(reply_url(anna), {"text": "   "}, headers=HTMX)
    assert "The message is empty." in response.content.decode() and not Message.objects.exists()


def test_closed_window_offers_approved_templates_only(marketer_client, account, anna):
    make_template(account, name="order_update")
    make_template(account, name="spring_sale", status="PENDING")

    html = marketer_client.get(thread_url(anna)).content.decode()

    assert 'data-testid="window-closed-note"' in html and 'data-testid="reply-form"' not in html
    assert "order_update · en_US" in html and "spring_sale" not in html


def test_choosing_a_template_shows_its_parameters_and_a_preview(marketer_client, account, anna):
    template = make_template(account)

    response = marketer_client.get(
        thread_url(anna, compose="template", template=template.public_id), headers=HTMX
    )

    html = response.content.decode()
    assert 'name="body.1"' in html and 'name="body.2"' in html and 'name="button:0.1"' in html
    assert "Button “Track”: URL {{1}}" in html
    assert "Hi {{1}}, your order {{2}} is on its way." in html  # the preview, no examples given


def test_template_send_outside_the_window(marketer_client, account, anna, graph):
    template = make_template(account)
    data = {"template": template.public_id, "body.1": "Anna", "body.2": "SKB-7", "button:0.1": "8812"}

    response = marketer_client.post(template_url(anna), data, headers=HTMX)

    message = Message.objects.get(subscriber=anna)
    assert (message.kind, message.template_name, message.status) == ("template", "order_update", "queued")
    assert message.body == "Hi Anna, your order SKB-7 is on its way."
    assert 'data-testid="template-name"' in response.content.decode()
    assert deliver(message.pk) == MessageStatus.SENT
    sent_template = graph.calls[0][2]["template"]
    assert sent_template["name"] == "order_update"
    assert sent_template["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": "Anna"}, {"type": "text", "text": "SKB-7"}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "8812"}]},
    ]


def test_named_template_with_image_header(marketer_client, account, anna, graph):
    template = make_template(
        account,
        name="welcome",
        parameter_format="NAMED",
        components=[
            {"type": "HEADER", "format": "IMAGE"},
            {"type": "BODY", "text": "Welcome {{first_name}}!"},
        ],
    )
    data = {"template": template.public_id, "header.image": "https://x.test/a.jpg", "body.first_name": "Anna"}

    marketer_client.post(template_url(anna), data, headers=HTMX)

    message = Message.objects.get(subscriber=anna)
    assert message.body == "Welcome Anna!"
    assert message.components == [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x.test/a.jpg"}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Anna", "parameter_name": "first_name"}]},
    ]


def test_missing_or_bad_parameters_keep_what_was_typed(marketer_client, account, anna):
    template = make_template(account)
    data = {"template": template.public_id, "body.1": "Anna", "body.2": "", "button:0.1": "a b"}

    response = marketer_client.post(template_url(anna), data, headers=HTMX)

    html = response.content.decode()
    assert not Message.objects.exists()
    assert "Some parameters are missing or wrong." in html
    assert 'name="body.1" value="Anna"' in html and 'name="button:0.1" value="a b"' in html
    assert "Fill this in." in html and "No spaces." in html


def test_policy_refusal_of_a_template_is_shown(marketer_client, account, project):
    opted_out = SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_OUT)
    template = make_template(account)
    data = {"template": template.public_id, "body.1": "A", "body.2": "B", "button:0.1": "1"}

    html = marketer_client.post(template_url(opted_out), data, headers=HTMX).content.decode()

    assert "opted out of WhatsApp messages" in html and 'name="body.1" value="A"' in html
    assert not Message.objects.exists()


def test_unknown_or_unapproved_template_is_refused(marketer_client, account, anna):
    paused = make_template(account, status="PAUSED")
    html = marketer_client.post(
        template_url(anna), {"template": paused.public_id}, headers=HTMX
    ).content.decode()
    assert "Choose an approved template." in html and not Message.objects.exists()


def test_viewer_reads_the_thread_but_cannot_send(client, viewer, account, anna):
    client.force_login(viewer)
    receive(account, anna, text("Hi"), timezone.now() - timedelta(minutes=1))

    html = client.get(thread_url(anna)).content.decode()
    assert "Hi" in html and 'data-testid="read-only"' in html and 'data-testid="reply-form"' not in html

    assert client.post(reply_url(anna), {"text": "Hello"}).status_code == 403
    assert client.post(template_url(anna), {"template": "x"}).status_code == 403
    assert not Message.objects.exists()


def test_outsider_cannot_read_or_send(client, outsider, account, anna):
    client.force_login(outsider)
    assert client.get(thread_url(anna)).status_code == 404
    assert client.post(reply_url(anna), {"text": "Hello"}).status_code == 404


def test_without_a_connected_number_the_composer_says_so(marketer_client, anna):
    html = marketer_client.get(thread_url(anna)).content.decode()
    assert (
        "No WhatsApp number is connected" in html
        and reverse("whatsapp:connection", args=[anna.project.slug]) in html
    )


def test_authentication_template_sends_the_code_twice(marketer_client, account, anna, graph):
    template = make_template(
        account,
        name="login_code",
        category="AUTHENTICATION",
        components=[
            {"type": "BODY", "text": "{{1}} is your verification code."},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "text": "Copy code", "url": "https://x.test/otp/{{1}}"}],
            },
        ],
    )
    form = marketer_client.get(
        thread_url(anna, compose="template", template=template.public_id)
    ).content.decode()
    assert "Verification code" in form and "Code for the copy button" in form

    marketer_client.post(
        template_url(anna), {"template": template.public_id, "body.1": "J$FpnY"}, headers=HTMX
    )

    message = Message.objects.get(subscriber=anna)
    assert message.body == "J$FpnY is your verification code."
    assert message.components[1] == {
        "type": "button",
        "sub_type": "url",
        "index": "0",
        "parameters": [{"type": "text", "text": "J$FpnY"}],
    }
