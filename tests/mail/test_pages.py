"""Email panel pages: roles, forms with per-field errors, preview, test sends, mailbox, settings."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns import channel_sending
from campaigns.models import Channel, Message
from controlpanel.models import AuditEntry, Role
from mail.models import EmailBackend, EmailSettings, EmailTemplate, MailboxMessage
from subscribers.models import ConsentState
from tests.factories import EmailTemplateFactory, ProjectFactory, SubscriberFactory


@pytest.fixture(autouse=True)
def _no_kick(monkeypatch):
    monkeypatch.setattr(channel_sending, "kick", lambda: None)


def _url(name, project, *args):
    return reverse(f"mail:{name}", args=[project.slug, *args])


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


def _pages(project, template, mail):
    return [
        _url("templates", project),
        _url("template_new", project),
        _url("template_edit", project, template.public_id),
        _url("template_preview", project, template.public_id),
        _url("mailbox", project),
        _url("mailbox_detail", project, mail.public_id),
        _url("settings", project),
    ]


def test_outsiders_get_404_on_every_page(client, project, outsider):
    template = EmailTemplateFactory(project=project)
    mail = MailboxMessage.objects.create(project=project, from_email="a@x", to="b@x", subject="s")
    client.force_login(outsider)
    for url in _pages(project, template, mail):
        assert client.get(url).status_code == 404, url
    assert client.post(_url("template_delete", project, template.public_id)).status_code == 404
    assert EmailTemplate.objects.filter(pk=template.pk).exists()


def test_viewers_read_but_do_not_write(client, project, viewer):
    template = EmailTemplateFactory(project=project)
    client.force_login(viewer)
    assert client.get(_url("templates", project)).status_code == 200
    assert client.get(_url("template_preview", project, template.public_id)).status_code == 200
    assert client.get(_url("mailbox", project)).status_code == 200
    assert client.post(_url("template_new", project), {"name": "x"}).status_code == 403
    assert client.post(_url("template_delete", project, template.public_id)).status_code == 403
    assert (
        client.post(_url("template_test", project, template.public_id), {"to": "address"}).status_code == 403
    )
    assert EmailTemplate.objects.count() == 1


def test_settings_are_for_admins(client, project, member_of):
    client.force_login(member_of(Role.MARKETER))
    assert client.get(_url("settings", project)).status_code == 403
    assert client.post(_url("settings_test", project), {"to": "a@example.com"}).status_code == 403


def test_an_objects_of_another_project_is_404(marketer_client, project):
    other = EmailTemplateFactory()
    assert marketer_client.get(_url("template_preview", project, other.public_id)).status_code == 404
    assert marketer_client.post(_url("template_delete", project, other.public_id)).status_code == 404
    assert EmailTemplate.objects.filter(pk=other.pk).exists()


def test_list_page_query_count_does_not_grow(marketer_client, project, django_assert_max_num_queries):
    EmailTemplateFactory.create_batch(3, project=project)
    with django_assert_max_num_queries(8) as few:
        marketer_client.get(_url("templates", project))
    EmailTemplateFactory.create_batch(10, project=project)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = marketer_client.get(_url("templates", project))
    assert response.content.decode().count('data-testid="email-template-row"') == 13


def test_create_with_bad_liquid_shows_errors_per_field(marketer_client, project):
    response = marketer_client.post(
        _url("template_new", project),
        {
            "name": "welcome",
            "subject": "{{ subscriber.nam }}",
            "html": "<p>{% if %}</p>",
            "text": "",
            "marketing": "on",
        },
    )
    assert response.status_code == 422
    form = response.context["form"]
    assert "subscriber.nam" in form.errors["subject"][0]
    assert "not valid Liquid" in form.errors["html"][0]
    assert not EmailTemplate.objects.exists()


def test_create_then_edit(marketer_client, project):
    data = {
        "name": "welcome",
        "subject": "Hi {{ subscriber.name }}",
        "preheader": "",
        "html": '<p>Hi</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>',
        "text": "",
        "marketing": "on",
    }
    response = marketer_client.post(_url("template_new", project), data)
    template = EmailTemplate.objects.for_project(project).get()
    assert response.status_code == 302
    assert response.url == _url("template_preview", project, template.public_id)
    response = marketer_client.post(
        _url("template_edit", project, template.public_id), {**data, "subject": "New"}
    )
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.subject == "New" and template.marketing is True


def test_preview_renders_real_recipients_in_a_sandboxed_frame(marketer_client, project):
    SubscriberFactory(project=project, email="old@example.com", name="Old")
    for name in ("Ann", "Bob <b>", "Cy"):
        SubscriberFactory(project=project, email=f"{name[:3].strip().lower()}@example.com", name=name)
    SubscriberFactory(project=project, email="", name="No address")
    template = EmailTemplateFactory(
        project=project, subject="Hi {{ subscriber.name }}", html="<p>{{ subscriber.name }}</p>"
    )
    response = marketer_client.get(_url("template_preview", project, template.public_id))
    html = response.content.decode()
    subjects = [p["email"]["subject"] for p in response.context["previews"]]
    assert subjects == ["Hi Cy", "Hi Bob <b>", "Hi Ann"]
    # Escaped twice: once by Liquid's autoescape, once into the srcdoc attribute.
    # No scripts, no same origin; links open in a new tab (the panel refuses to be framed).
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox" referrerpolicy="no-referrer"' in html
    base = "&lt;!DOCTYPE html&gt;&lt;base target=&quot;_blank&quot;&gt;"
    assert f'srcdoc="{base}&lt;p&gt;Bob &amp;lt;b&amp;gt;&lt;/p&gt;"' in html
    csp = response.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" in csp.split("style-src")[1].split(";")[0]
    assert "script-src 'self' 'nonce-" in csp


def test_preview_shows_why_a_recipient_would_not_get_it(marketer_client, project):
    SubscriberFactory(project=project, email="a@example.com")
    template = EmailTemplateFactory(project=project, subject="{{ tags.nickname }}")
    response = marketer_client.get(_url("template_preview", project, template.public_id))
    assert "subject is empty" in response.context["previews"][0]["error"]


def test_test_send_to_a_subscriber_goes_through_the_outbox(marketer_client, project):
    subscriber = SubscriberFactory(
        project=project, email="Ann@Example.com", email_consent=ConsentState.OPTED_IN
    )
    template = EmailTemplateFactory(project=project)
    response = marketer_client.post(
        _url("template_test", project, template.public_id),
        {"to": "subscriber", "subscriber": "ann@example.com"},
    )
    assert response.status_code == 302
    message = Message.objects.get()
    assert (message.subscriber_id, message.channel) == (subscriber.pk, Channel.EMAIL)


def test_test_send_to_a_subscriber_shows_the_refusal(marketer_client, project):
    SubscriberFactory(project=project, email="ann@example.com", email_consent=ConsentState.OPTED_OUT)
    template = EmailTemplateFactory(project=project)
    url = _url("template_test", project, template.public_id)
    response = marketer_client.post(url, {"to": "subscriber", "subscriber": "ann@example.com"})
    assert response.status_code == 422
    assert "opted out of email" in response.context["test_form"].errors["subscriber"][0]
    response = marketer_client.post(url, {"to": "subscriber", "subscriber": "nobody@example.com"})
    assert response.status_code == 422 and "No subscriber" in response.content.decode()
    response = marketer_client.post(url, {"to": "address", "address": "not an address"})
    assert response.status_code == 422
    assert not Message.objects.exists()


def test_test_send_to_a_typed_address_lands_in_the_mailbox_as_a_test(marketer_client, project):
    SubscriberFactory(project=project, email="ann@example.com", name="Ann")
    template = EmailTemplateFactory(project=project)
    response = marketer_client.post(
        _url("template_test", project, template.public_id), {"to": "address", "address": "me@example.com"}
    )
    assert response.status_code == 302
    mail = MailboxMessage.objects.for_project(project).get()
    assert (mail.to, mail.test, mail.subject, mail.message_id) == (
        "me@example.com",
        True,
        "[Test] Hello Ann",
        None,
    )
    assert not Message.objects.exists()


def test_test_send_to_a_typed_address_shows_the_servers_error(marketer_client, project):
    EmailSettings.objects.create(
        project=project, backend=EmailBackend.SMTP, smtp_host="127.0.0.1", smtp_port=1
    )
    template = EmailTemplateFactory(project=project)
    response = marketer_client.post(
        _url("template_test", project, template.public_id), {"to": "address", "address": "me@example.com"}
    )
    assert response.status_code == 422
    assert "Could not connect" in response.context["test_form"].errors["address"][0]


def test_delete(marketer_client, project):
    template = EmailTemplateFactory(project=project)
    assert marketer_client.post(_url("template_delete", project, template.public_id)).status_code == 302
    assert not EmailTemplate.objects.exists()


def test_mailbox_is_newest_first_paged_and_shows_one_email(
    marketer_client, project, django_assert_max_num_queries
):
    MailboxMessage.objects.create(project=project, from_email="a@x", to="b@x", subject="Mail 0")
    with django_assert_max_num_queries(10) as few:
        marketer_client.get(_url("mailbox", project))
    for i in range(1, 52):
        MailboxMessage.objects.create(project=project, from_email="a@x", to="b@x", subject=f"Mail {i}")
    MailboxMessage.objects.create(project=ProjectFactory(), from_email="a@x", to="b@x", subject="Elsewhere")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = marketer_client.get(_url("mailbox", project))
    rows = list(response.context["page"].object_list)
    assert [r.subject for r in rows[:2]] == ["Mail 51", "Mail 50"] and len(rows) == 50
    second = marketer_client.get(_url("mailbox", project) + "?page=2").context["page"]
    assert [r.subject for r in second] == ["Mail 1", "Mail 0"]
    mail = MailboxMessage.objects.create(
        project=project,
        from_email="a@x",
        to="b@x",
        subject="S",
        html="<p>x</p>",
        text="x",
        headers={"X-A": "1"},
    )
    html = marketer_client.get(_url("mailbox_detail", project, mail.public_id)).content.decode()
    assert 'target=&quot;_blank&quot;&gt;&lt;p&gt;x&lt;/p&gt;"' in html and "X-A" in html


# --- settings ----------------------------------------------------------------------------------

SMTP = {
    "backend": "smtp",
    "from_email": "news@shop.example",
    "from_name": "Shop",
    "reply_to": "",
    "smtp_host": "smtp.shop.example",
    "smtp_port": "587",
    "smtp_security": "starttls",
    "smtp_username": "user",
    "smtp_password": "s3cret-pw",
    "provider_settings": "",
}


def test_settings_save_encrypted_secrets_never_shown_and_audited(owner_client, project):
    response = owner_client.post(_url("settings", project), SMTP)
    assert response.status_code == 302
    stored = EmailSettings.objects.get(project=project)
    assert stored.smtp_password == "s3cret-pw"
    page = owner_client.get(_url("settings", project)).content.decode()
    assert "s3cret-pw" not in page
    entry = AuditEntry.objects.get(action="email_settings.created")
    assert "smtp_password (secret)" in entry.changes["fields"] and "s3cret-pw" not in str(entry.changes)
    # Blank keeps the stored password.
    assert (
        owner_client.post(
            _url("settings", project), {**SMTP, "smtp_password": "", "from_name": "S2"}
        ).status_code
        == 302
    )
    stored.refresh_from_db()
    assert stored.smtp_password == "s3cret-pw" and stored.from_name == "S2"


def test_a_new_smtp_host_needs_the_password_again(owner_client, project):
    owner_client.post(_url("settings", project), SMTP)
    response = owner_client.post(
        _url("settings", project), {**SMTP, "smtp_host": "evil.example", "smtp_password": ""}
    )
    assert response.status_code == 422
    assert "password again" in response.context["form"].errors["smtp_password"][0]
    assert EmailSettings.objects.get(project=project).smtp_host == "smtp.shop.example"


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"backend": "mailgun", "provider_settings": "{oops"}, "provider_settings", "not valid JSON"),
        (
            {"backend": "mailgun", "provider_settings": '{"sender_domain": "x"}'},
            "provider_settings",
            "needs api_key",
        ),
        ({"backend": "postmark", "provider_settings": '["x"]'}, "provider_settings", "JSON object"),
        ({"backend": "smtp", "smtp_host": ""}, "smtp_host", "host name"),
        ({"smtp_port": "70000"}, "smtp_port", "65535"),
        ({"backend": "nonsense"}, "backend", "valid choice"),
        ({"from_email": "not-an-address"}, "from_email", "valid email"),
    ],
)
def test_bad_settings_are_form_errors(owner_client, project, data, field, words):
    response = owner_client.post(_url("settings", project), {**SMTP, **data})
    assert response.status_code == 422
    assert words in " ".join(response.context["form"].errors[field])
    assert not EmailSettings.objects.exists()


def test_provider_settings_are_never_shown(owner_client, project):
    data = {**SMTP, "backend": "postmark", "provider_settings": '{"server_token": "pm-secret-token"}'}
    assert owner_client.post(_url("settings", project), data).status_code == 302
    page = owner_client.get(_url("settings", project)).content.decode()
    assert "pm-secret-token" not in page
    assert EmailSettings.objects.get().provider_settings == '{"server_token": "pm-secret-token"}'


def test_send_test_email_shows_the_outcome_in_words(owner_client, project):
    response = owner_client.post(_url("settings_test", project), {"to": "me@example.com"}, follow=True)
    assert "Test email sent to me@example.com" in response.content.decode()
    assert MailboxMessage.objects.get().test is True
    EmailSettings.objects.create(
        project=project, backend=EmailBackend.SMTP, smtp_host="127.0.0.1", smtp_port=1
    )
    response = owner_client.post(_url("settings_test", project), {"to": "me@example.com"}, follow=True)
    assert response.status_code == 200
    assert "The test email was not sent: Could not connect" in response.content.decode()
    assert AuditEntry.objects.filter(action="email_settings.tested").count() == 2
    response = owner_client.post(_url("settings_test", project), {"to": "nope"})
    assert response.status_code == 422


def test_the_html_and_text_bodies_are_code_boxes(marketer_client, project):
    page = marketer_client.get(_url("template_new", project)).content.decode()
    assert page.count('class="form-control font-monospace"') == 2


def test_empty_pages_explain_themselves(marketer_client, project):
    assert "No email templates yet" in marketer_client.get(_url("templates", project)).content.decode()
    assert "The mailbox is empty" in marketer_client.get(_url("mailbox", project)).content.decode()
    template = EmailTemplateFactory(project=project)
    page = marketer_client.get(_url("template_preview", project, template.public_id)).content.decode()
    assert "No subscriber has an email address yet" in page


def test_the_project_settings_tabs_link_the_email_settings(owner_client, project):
    page = owner_client.get(reverse("controlpanel:settings", args=[project.slug])).content.decode()
    assert f'href="{_url("settings", project)}"' in page


def test_reading_an_email_in_the_mailbox_is_no_open(marketer_client, project):
    """The mailbox shows the email as sent, minus its open pixel: a marketer reading it in the panel
    is not the recipient opening it (the links still go through their tracking redirects)."""
    from mail import tracking
    from tests.mail.test_tracking import email_message

    message = email_message(project)
    html = tracking.instrument('<p><a href="https://shop.example/sale">Sale</a></p>', message)
    assert tracking.open_url(message) in html
    mail = MailboxMessage.objects.create(
        project=project, message=message, from_email="a@x", to="b@x", subject="S", html=html
    )
    page = marketer_client.get(_url("mailbox_detail", project, mail.public_id)).content.decode()
    assert "/email/o/" not in page and "/email/c/" in page
