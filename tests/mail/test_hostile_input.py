"""Hostile and careless input against issue 11's email surfaces: tracking URLs, the unsubscribe
page, provider webhooks, templates and settings. Every bad input is a 4xx or a harmless answer,
never a 500, a redirect elsewhere, another project's data, or a secret shown again."""

from __future__ import annotations

import base64
import json

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse

from campaigns import channel_sending
from campaigns.models import Channel, Message, MessageKind
from controlpanel.models import AuditEntry, Role
from controlpanel.services import Actor
from mail import configuration, tracking, transport
from mail.models import EmailSettings, EmailTemplate, MailboxMessage
from subscribers.models import ConsentState
from tests.factories import EmailTemplateFactory, ProjectFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_kick(monkeypatch):
    monkeypatch.setattr(channel_sending, "kick", lambda: None)


def email_row(project, **fields) -> Message:
    subscriber = fields.pop("subscriber", None) or SubscriberFactory(
        project=project, email="ana@example.com", email_consent=ConsentState.OPTED_IN
    )
    return Message.objects.create(
        project=project,
        subscriber=subscriber,
        channel=Channel.EMAIL,
        kind=MessageKind.TEMPLATE,
        marketing=True,
        content={"subject": "Hi", "html": "<p>x</p>"},
        **fields,
    )


def _url(name, project, *args):
    return reverse(f"mail:{name}", args=[project.slug, *args])


# --- tracking tokens ---------------------------------------------------------------------------


def test_a_click_token_with_an_edited_target_is_a_404_not_a_redirect(client, project):
    message = email_row(project)
    token = tracking.make_token(tracking.CLICK, message, "https://shop.example/a")
    value = token.rpartition(":")[0]
    forged = signing.Signer(salt="other").sign_object(
        [tracking._short_id(message.public_id), "https://evil.example"]
    )
    for bad in (
        forged,
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        token.replace(value[:5], "AAAAA"),
        "",
        "x" * 10_000,
        "%00",
        "%ED%A0%80",  # a lone surrogate, UTF-8 encoded
    ):
        response = client.get(f"/email/c/{bad}/")
        assert response.status_code == 404, bad
    message.refresh_from_db()
    assert message.clicked_at is None


def test_an_open_token_is_no_click_or_unsubscribe_token(client, project):
    message = email_row(project)
    open_token = tracking.make_token(tracking.OPEN, message)
    assert client.get(f"/email/c/{open_token}/").status_code == 404
    assert client.post(f"/email/u/{open_token}/", {"List-Unsubscribe": "One-Click"}).status_code == 404
    message.subscriber.refresh_from_db()
    assert message.subscriber.email_consent == ConsentState.OPTED_IN


def test_a_signed_non_http_click_target_is_refused(client, project, settings):
    # A token signed by us with a javascript: target (no code path makes one; a leaked key would)
    # still never becomes a Location header.
    message = email_row(project)
    token = tracking.make_token(tracking.CLICK, message, "javascript:alert(1)")
    assert client.get(f"/email/c/{token}/").status_code == 404


def test_a_forged_open_pixel_is_still_a_gif_and_records_nothing(client, project):
    message = email_row(project)
    for bad in ("nope", "a" * 5000, tracking.make_token(tracking.CLICK, message, "https://x.example")):
        response = client.get(f"/email/o/{bad}.gif")
        assert response.status_code == 200
        assert response["Content-Type"] == "image/gif"
    message.refresh_from_db()
    assert message.opened_at is None


def test_a_token_for_a_push_message_names_nothing(client, project):
    message = email_row(project)
    Message.objects.filter(pk=message.pk).update(channel=Channel.PUSH)
    token = tracking.make_token(tracking.UNSUBSCRIBE, message)
    assert client.post(f"/email/u/{token}/", {"List-Unsubscribe": "One-Click"}).status_code == 404


def test_a_replayed_open_records_one_open(client, project):
    message = email_row(project)
    url = f"/email/o/{tracking.make_token(tracking.OPEN, message)}.gif"
    for _ in range(3):
        client.get(url)
    assert message.subscriber.events.filter(name="EmailOpened").count() == 1


# --- the unsubscribe page ----------------------------------------------------------------------


def test_the_confirmation_form_needs_its_csrf_token(project):
    message = email_row(project)
    token = tracking.make_token(tracking.UNSUBSCRIBE, message)
    csrf_client = Client(enforce_csrf_checks=True)
    # A cross-site form posting the button (not RFC 8058's exact body) is refused.
    assert csrf_client.post(f"/email/u/{token}/", {"confirm": "1"}).status_code == 403
    message.subscriber.refresh_from_db()
    assert message.subscriber.email_consent == ConsentState.OPTED_IN
    # The page's own form carries the token and works.
    page = csrf_client.get(f"/email/u/{token}/")
    assert page.status_code == 200
    csrf = page.cookies["csrftoken"].value
    assert csrf_client.post(f"/email/u/{token}/", {"csrfmiddlewaretoken": csrf}).status_code == 200
    message.subscriber.refresh_from_db()
    assert message.subscriber.email_consent == ConsentState.OPTED_OUT


def test_get_of_the_unsubscribe_page_changes_nothing(client, project):
    message = email_row(project)
    token = tracking.make_token(tracking.UNSUBSCRIBE, message)
    assert client.get(f"/email/u/{token}/").status_code == 200
    message.subscriber.refresh_from_db()
    assert message.subscriber.email_consent == ConsentState.OPTED_IN


def test_the_unsubscribe_page_shows_no_full_address(client, project):
    message = email_row(project)
    page = client.get(f"/email/u/{tracking.make_token(tracking.UNSUBSCRIBE, message)}/")
    assert b"ana@example.com" not in page.content


# --- provider webhooks ---------------------------------------------------------------------------


def _webhook(project, esp="postmark"):
    return f"/webhooks/email/{project.public_id}/{esp}/tracking/"


def _auth(secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


@pytest.fixture
def hooked(project):
    email_settings = configuration.save_settings(project=project, fields={}, actor=Actor(label="t"))
    from mail.webhooks import ensure_webhook_secret

    return project, ensure_webhook_secret(email_settings)


POSTMARK_BOUNCE = {
    "RecordType": "Bounce",
    "Type": "HardBounce",
    "MessageID": "pm-1",
    "Email": "ana@example.com",
    "BouncedAt": "2026-01-01T10:00:00Z",
    "Description": "gone",
}


def test_webhook_without_or_with_a_wrong_secret_changes_nothing(client, hooked):
    project, secret = hooked
    message = email_row(project, provider_message_id="pm-1")
    body = json.dumps(POSTMARK_BOUNCE)
    assert client.post(_webhook(project), body, content_type="application/json").status_code == 401
    wrong = _auth(secret + "x")
    assert (
        client.post(_webhook(project), body, content_type="application/json", headers=wrong).status_code
        == 401
    )
    # Another project's secret opens nothing here.
    _, other_secret = hooked_for(ProjectFactory())
    assert (
        client.post(
            _webhook(project), body, content_type="application/json", headers=_auth(other_secret)
        ).status_code
        == 401
    )
    message.subscriber.refresh_from_db()
    assert message.subscriber.email_undeliverable_at is None


def hooked_for(project):
    from mail.webhooks import ensure_webhook_secret

    return project, ensure_webhook_secret(
        configuration.save_settings(project=project, fields={}, actor=Actor(label="t"))
    )


def test_webhook_of_one_project_does_not_touch_another_projects_message(client, hooked):
    project, secret = hooked
    victim = email_row(ProjectFactory(), provider_message_id="pm-1")
    response = client.post(
        _webhook(project), json.dumps(POSTMARK_BOUNCE), content_type="application/json", headers=_auth(secret)
    )
    assert response.status_code == 200
    victim.subscriber.refresh_from_db()
    assert victim.subscriber.email_undeliverable_at is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"null",
        b"123456789012345678901234567890",
        b'{"RecordType": 5}',
        b'{"RecordType": "Bounce", "MessageID": {"a": 1}}',
        b'{"RecordType": "Bounce", "MessageID": "pm-1", "BouncedAt": "not a date"}',
        b'{"RecordType": "Bounce", "MessageID": "pm-1", "Description": "\\u0000\\ud800"}',
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe",
    ],
)
def test_webhook_garbage_is_a_4xx_or_ignored_never_a_500(hooked, body):
    project, secret = hooked
    email_row(project, provider_message_id="pm-1")
    client = Client(raise_request_exception=False)
    response = client.post(_webhook(project), body, content_type="application/json", headers=_auth(secret))
    assert response.status_code in (200, 400), response.content


def test_webhook_for_an_unknown_esp_or_project_is_a_404_or_401(client, hooked):
    project, secret = hooked
    assert (
        client.post(
            f"/webhooks/email/{project.public_id}/smtp/tracking/", "{}", content_type="application/json"
        ).status_code
        == 404
    )
    assert (
        client.post(
            _webhook(ProjectFactory()), "{}", content_type="application/json", headers=_auth(secret)
        ).status_code
        == 401
    )


# --- settings: header injection, secrets, roles ---------------------------------------------------


SETTINGS = {
    "backend": "smtp",
    "from_email": "shop@example.com",
    "from_name": "Shop",
    "reply_to": "",
    "smtp_host": "smtp.example.com",
    "smtp_port": "587",
    "smtp_security": "starttls",
    "smtp_username": "user",
    "smtp_password": "s3cret-PASSWORD",
    "provider_settings": "",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("from_name", "Shop\r\nBcc: victim@example.com"),
        ("from_name", "Shop\nX-Evil: 1"),
        ("from_email", "shop@example.com\r\nBcc: victim@example.com"),
        ("reply_to", "a@example.com\nBcc: victim@example.com"),
        ("smtp_host", "smtp.example.com\r\nRCPT TO:<x@y>"),
        ("smtp_username", "user\r\nRCPT TO:<x@y>"),
        ("from_name", "Shop\x00"),
    ],
)
def test_settings_refuse_line_breaks_and_nul_in_header_and_server_fields(owner_client, project, field, value):
    response = owner_client.post(_url("settings", project), {**SETTINGS, field: value})
    assert response.status_code == 422
    assert not EmailSettings.objects.filter(project=project).exists()


def test_the_settings_page_never_shows_a_secret_again(owner_client, project):
    provider = json.dumps({"api_key": "key-PROVIDER-SECRET"})
    response = owner_client.post(_url("settings", project), SETTINGS)
    assert response.status_code == 302
    page = owner_client.get(_url("settings", project)).content.decode()
    assert "s3cret-PASSWORD" not in page
    # A rejected form does not echo the password or the provider keys either.
    bad = owner_client.post(
        _url("settings", project),
        {
            **SETTINGS,
            "backend": "mailgun",
            "provider_settings": provider + "}",
            "smtp_password": "other-SECRET",
        },
    )
    assert bad.status_code == 422
    assert "key-PROVIDER-SECRET" not in bad.content.decode()
    assert "other-SECRET" not in bad.content.decode()
    audit = json.dumps(list(AuditEntry.objects.filter(project=project).values("changes")), default=str)
    assert "s3cret-PASSWORD" not in audit


def test_marketers_and_viewers_cannot_open_or_change_email_settings(client, project, member_of):
    for role in (Role.MARKETER, Role.VIEWER):
        client.force_login(member_of(role))
        assert client.get(_url("settings", project)).status_code == 403
        assert client.post(_url("settings", project), SETTINGS).status_code == 403
        assert client.post(_url("settings_test", project), {"to": "a@example.com"}).status_code == 403
    assert not EmailSettings.objects.filter(project=project).exists()


def test_a_local_smtp_relay_may_be_configured(owner_client, project):
    # A self-hosted server's own MTA on 127.0.0.1:25 is the usual relay; only admins set it.
    response = owner_client.post(
        _url("settings", project),
        {**SETTINGS, "smtp_host": "127.0.0.1", "smtp_port": "25", "smtp_security": "none"},
    )
    assert response.status_code == 302
    assert EmailSettings.objects.get(project=project).smtp_host == "127.0.0.1"


@pytest.mark.parametrize("port", ["0", "70000", "99999999999999999999", "-1", "1e3"])
def test_settings_refuse_impossible_ports(owner_client, project, port):
    response = owner_client.post(_url("settings", project), {**SETTINGS, "smtp_port": port})
    assert response.status_code == 422


# --- templates and the mailbox: another project's ids, stored markup, Liquid bombs ------------------


def test_another_projects_template_and_mail_are_404_in_my_project(owner_client, project):
    other = ProjectFactory()
    template = EmailTemplateFactory(project=other)
    mail = MailboxMessage.objects.create(project=other, from_email="a@x", to="b@x", subject="s")
    for url in (
        _url("template_edit", project, template.public_id),
        _url("template_preview", project, template.public_id),
        _url("mailbox_detail", project, mail.public_id),
    ):
        assert owner_client.get(url).status_code == 404, url
    assert owner_client.post(_url("template_delete", project, template.public_id)).status_code == 404
    assert (
        owner_client.post(
            _url("template_test", project, template.public_id), {"to": "address", "address": "a@example.com"}
        ).status_code
        == 404
    )
    assert EmailTemplate.objects.filter(pk=template.pk).exists()


def test_a_test_send_to_another_projects_subscriber_is_a_form_error(owner_client, project):
    template = EmailTemplateFactory(project=project, marketing=False)
    SubscriberFactory(project=ProjectFactory(), email="them@example.com", email_consent=ConsentState.OPTED_IN)
    response = owner_client.post(
        _url("template_test", project, template.public_id),
        {"to": "subscriber", "subscriber": "them@example.com"},
    )
    assert response.status_code == 422
    assert not Message.objects.filter(channel=Channel.EMAIL).exists()


SCRIPT = '<script>alert("x")</script>'


def test_stored_markup_is_escaped_outside_the_sandboxed_frame(owner_client, project):
    template = EmailTemplateFactory(
        project=project, name=SCRIPT, subject=SCRIPT, html=f"<p>{SCRIPT}</p>", marketing=False
    )
    MailboxMessage.objects.create(project=project, from_email=SCRIPT, to=SCRIPT, subject=SCRIPT, html=SCRIPT)
    mail = MailboxMessage.objects.get(project=project)
    pages = [
        _url("templates", project),
        _url("template_edit", project, template.public_id),
        _url("template_preview", project, template.public_id),
        _url("mailbox", project),
        _url("mailbox_detail", project, mail.public_id),
    ]
    for url in pages:
        page = owner_client.get(url).content.decode()
        # The HTML body is shown only in a sandboxed iframe's srcdoc (escaped as an attribute).
        assert SCRIPT not in page, url


# Liquid that runs for ever or doubles a string until memory runs out (shared with the push tests).
LIQUID_LOOP = "{% for i in (1..100000000) %}x{% endfor %}"
LIQUID_DOUBLING = (
    "{% assign a = 'xxxxxxxxxx' %}{% for i in (1..30) %}{% assign a = a | append: a %}{% endfor %}{{ a }}"
)


@pytest.mark.parametrize(
    "html",
    [
        LIQUID_LOOP,
        LIQUID_DOUBLING,
        "{% for a in (1..1000) %}{% for b in (1..1000) %}{% for c in (1..1000) %}x{% endfor %}"
        "{% endfor %}{% endfor %}",
        "{% include 'x' %}",
        "{{ 'a' | " + "upcase | " * 5000 + "upcase }}",
    ],
)
def test_liquid_that_loops_or_explodes_is_refused_or_bounded(owner_client, project, html):
    response = owner_client.post(
        _url("template_new", project),
        {"name": "bomb", "subject": "Hi", "preheader": "", "html": html, "text": "", "marketing": ""},
    )
    if response.status_code == 302:
        template = EmailTemplate.objects.get(project=project, name="bomb")
        # Saved: then the preview (and a send) is bounded, never a 500 or a hang.
        preview = owner_client.get(_url("template_preview", project, template.public_id))
        assert preview.status_code in (200, 422)
        assert len(preview.content) < 2_000_000
    else:
        assert response.status_code == 422
        assert not EmailTemplate.objects.filter(project=project).exists()


def test_a_subscribers_line_break_never_splits_the_subject_header(project):
    from mail import services

    subscriber = SubscriberFactory(
        project=project,
        name="Ana\r\nBcc: victim@example.com",
        email="ana@example.com",
        email_consent=ConsentState.OPTED_IN,
    )
    template = EmailTemplateFactory(project=project, subject="Hi {{ subscriber.name }}", marketing=False)
    message = services.send_email(
        project=project, subscriber=subscriber, template=template, actor=Actor(label="t")
    )
    assert "\n" not in message.content["subject"] and "\r" not in message.content["subject"]
    email = transport.compose(
        transport.settings_for(project), to="ana@example.com", content=message.content, message=message
    )
    assert "Bcc" not in {k for k, _ in email.message().items()}


# --- the subscriber API's email fields -------------------------------------------------------------


@pytest.fixture
def api_auth(project):
    from controlpanel.services import create_api_key

    _, raw = create_api_key(project=project, name="crm", actor=Actor(label="t"))
    return {"Authorization": f"Bearer {raw}"}


@pytest.mark.parametrize(
    "body",
    [
        {"email": "ana@example.com\r\nBcc: victim@example.com"},
        {"email": "Ana <ana@example.com>"},
        {"email": "ana@example.com, eve@example.com"},
        {"email": "a\x00@example.com"},
        {"email": 5},
        {"email": ["ana@example.com"]},
        {"email_consent": {"state": "opted_in"}},
        {"email_consent": {"state": "opted_in", "evidence": "   "}},
        {"email_consent": {"state": "yes", "evidence": "x"}},
        {"email_consent": "opted_in"},
        {"email_consent": {"state": "opted_in", "evidence": "x\x00"}},
        {"email_consent": {"state": "opted_in", "evidence": ["x"]}},
        {"email_consent": {"state": "opted_in", "evidence": "x", "source": "unsubscribe_link"}},
    ],
)
def test_bad_email_fields_in_the_subscriber_api_are_422_and_write_nothing(client, project, api_auth, body):
    from subscribers.models import Subscriber

    response = client.post(
        "/api/v1/subscribers",
        json.dumps({"phone": "+4915112345678", **body}),
        content_type="application/json",
        headers=api_auth,
    )
    assert response.status_code == 422, response.content[:300]
    assert not Subscriber.objects.filter(project=project).exists()


def test_email_consent_of_another_projects_subscriber_is_a_404(client, project, api_auth):
    stranger = SubscriberFactory(project=ProjectFactory(), email="s@example.com")
    before = stranger.email_consent
    for action in ("opt-in", "opt-out"):
        response = client.post(
            f"/api/v1/subscribers/{stranger.public_id}/{action}?channel=email",
            json.dumps({"evidence": "form"}),
            content_type="application/json",
            headers=api_auth,
        )
        assert response.status_code == 404
    stranger.refresh_from_db()
    assert stranger.email_consent == before


@pytest.mark.parametrize("channel", ["sms", "EMAIL", "email\x00", ""])
def test_an_unknown_consent_channel_is_a_422(client, project, api_auth, channel):
    subscriber = SubscriberFactory(project=project, email="s@example.com")
    response = client.post(
        f"/api/v1/subscribers/{subscriber.public_id}/opt-out",
        json.dumps({"evidence": "x", "channel": channel}),
        content_type="application/json",
        headers=api_auth,
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    "provider",
    [
        "[]",
        "5",
        '{"api_key": 5}',
        '{"api_key": ["k"]}',
        '{"api_key": "k", "evil_option": "x"}',
        '{"sender_domain": "mg.example.com"}',
        "[" * 9_000,
        '{"api_key": ' + "[" * 9_000,
        '{"api_key": "k\\u0000"}',
        '{"api_key": "\\ud800"}',
    ],
)
def test_bad_provider_settings_are_a_form_error(owner_client, project, provider):
    response = owner_client.post(
        _url("settings", project), {**SETTINGS, "backend": "mailgun", "provider_settings": provider}
    )
    assert response.status_code == 422
    assert not EmailSettings.objects.filter(project=project).exists()


def test_an_esp_refusal_shows_no_api_key_in_the_page_or_the_audit(owner_client, project, monkeypatch):
    import requests

    key = "key-0123456789SECRET"
    owner_client.post(
        _url("settings", project),
        {**SETTINGS, "backend": "mailgun", "provider_settings": json.dumps({"api_key": key})},
    )
    assert EmailSettings.objects.get(project=project).backend == "mailgun"

    def refused(self, method, url, **kwargs):
        # What an ESP answers a bad key with, echoing the credentials it got (worst case).
        response = requests.Response()
        response.status_code = 401
        response.url = url
        response._content = json.dumps({"message": f"Invalid key {kwargs.get('auth')}"}).encode()
        response.request = requests.Request(method, url).prepare()
        return response

    monkeypatch.setattr(requests.Session, "request", refused)
    page = owner_client.post(_url("settings_test", project), {"to": "me@example.com"}, follow=True)
    assert page.status_code == 200
    assert "not sent" in page.content.decode()
    audit = json.dumps(list(AuditEntry.objects.filter(project=project).values("changes")), default=str)
    assert key not in audit, audit
    assert key not in page.content.decode()


def test_an_oversized_webhook_body_is_refused_not_a_500(hooked, settings):
    project, secret = hooked
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({**POSTMARK_BOUNCE, "Description": "x" * 20_000})
    client = Client(raise_request_exception=False)
    response = client.post(_webhook(project), body, content_type="application/json", headers=_auth(secret))
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize("page", ["99999999999999999999999", "-1", "abc", "1e9", "\x00"])
def test_any_mailbox_page_number_shows_a_page(owner_client, project, page):
    MailboxMessage.objects.create(project=project, from_email="a@x", to="b@x", subject="s")
    assert owner_client.get(_url("mailbox", project), {"page": page}).status_code == 200


def test_panel_posts_need_the_csrf_token(project, owner):
    template = EmailTemplateFactory(project=project)
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(_url("template_delete", project, template.public_id)).status_code == 403
    assert client.post(_url("settings", project), SETTINGS).status_code == 403
    assert EmailTemplate.objects.filter(pk=template.pk).exists()
    assert not EmailSettings.objects.filter(project=project).exists()


@pytest.mark.parametrize("timestamp", [10**20, -(10**20), 1e308, "soon", None, 253402300800, 1.5])
def test_sendgrid_events_with_absurd_timestamps_are_a_4xx_or_applied(hooked, timestamp):
    project, secret = hooked
    email_row(project, provider_message_id="sg-1")
    event = {"event": "open", "sg_message_id": "sg-1", "email": "ana@example.com", "timestamp": timestamp}
    client = Client(raise_request_exception=False)
    response = client.post(
        _webhook(project, "sendgrid"),
        json.dumps([event]),
        content_type="application/json",
        headers=_auth(secret),
    )
    assert response.status_code in (200, 400), response.content[:300]
