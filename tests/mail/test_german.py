"""The email pages in German: panel pages, form errors, choice labels, dates, and the public
unsubscribe pages, which follow the visitor's browser language."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from controlpanel.models import Role
from mail import services, tracking
from mail.backends import ConnectionProblem, provider_options
from mail.models import EmailBackend, EmailTemplate, MailboxMessage, SmtpSecurity
from tests.factories import EmailTemplateFactory
from tests.mail.test_tracking import email_message, path_of

pytestmark = pytest.mark.django_db
DE = {"HTTP_ACCEPT_LANGUAGE": "de"}


def _url(name, project, *args):
    return reverse(f"mail:{name}", args=[project.slug, *args])


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


def test_template_list_and_preview_are_german(marketer_client, project):
    template = EmailTemplateFactory(project=project, marketing=True)
    EmailTemplate.objects.filter(pk=template.pk).update(
        updated_at=datetime.datetime(2026, 3, 4, 15, 6, tzinfo=datetime.UTC)
    )

    page = marketer_client.get(_url("templates", project), **DE).text
    assert "E-Mail-Vorlagen" in page and "Neue Vorlage" in page and "Bearbeiten" in page
    assert "Geändert" in page and "Vorschau" in page
    assert "New template" not in page and "Changed" not in page
    assert "04.03.2026" in page and "2026-03-04" not in page  # the German short date format

    preview = marketer_client.get(_url("template_preview", project, template.public_id), **DE).text
    assert "Testversand" in preview and "Test senden" in preview and "Art" in preview
    assert "Send test" not in preview and "Transactional" not in preview


def test_an_empty_list_and_the_new_template_form_are_german(marketer_client, project):
    empty = marketer_client.get(_url("templates", project), **DE).text
    assert "Noch keine E-Mail-Vorlagen" in empty and "No email templates yet" not in empty
    form = marketer_client.get(_url("template_new", project), **DE).text
    assert "Neue E-Mail-Vorlage" in form and "Speichern und Vorschau" in form
    assert "HTML-Inhalt" in form and "Save and preview" not in form


def test_form_errors_are_german(marketer_client, project):
    response = marketer_client.post(
        _url("template_new", project),
        {"name": "Welcome", "subject": "Hi", "html": "<p>Hi</p>", "marketing": "on"},
        **DE,
    )
    assert response.status_code == 422
    assert "Eine Marketing-E-Mail braucht einen Abmeldelink" in response.text
    assert "needs an unsubscribe link" not in response.text


def test_a_saved_message_is_german(marketer_client, project):
    response = marketer_client.post(
        _url("template_new", project),
        {"name": "Receipt", "subject": "Your receipt", "text": "Thanks"},
        follow=True,
        **DE,
    )
    assert "Vorlage „Receipt“ gespeichert." in response.text


def test_the_mailbox_shows_german_dates_and_words(marketer_client, project):
    mail = MailboxMessage.objects.create(
        project=project, from_email="shop@example.com", to="ada@example.com", subject="Hello", test=True
    )
    MailboxMessage.objects.filter(pk=mail.pk).update(
        created_at=datetime.datetime(2026, 3, 4, 15, 6, 7, tzinfo=datetime.UTC)
    )
    with timezone.override("UTC"):
        page = marketer_client.get(_url("mailbox", project), **DE).text
    assert "Postfach" in page and "an ada@example.com · von shop@example.com" in page
    detail = marketer_client.get(_url("mailbox_detail", project, mail.public_id), **DE).text
    assert "Von" in detail and "Header" in detail and "Headers" not in detail


def test_settings_page_and_test_send_answer_are_german(client, owner, project, settings):
    client.force_login(owner)
    page = client.get(_url("settings", project), **DE).text
    assert "Wie dieses Projekt E-Mails sendet" in page and "Test-E-Mail senden" in page
    assert "Postfach im Panel (nichts wird gesendet)" in page  # the backend choice's label
    assert "How this project sends email" not in page

    response = client.post(_url("settings_test", project), {"to": "me@example.com"}, follow=True, **DE)
    assert "Test-E-Mail an me@example.com gesendet." in response.text


def test_a_settings_error_is_german(client, owner, project):
    client.force_login(owner)
    response = client.post(
        _url("settings", project),
        {"backend": EmailBackend.SMTP, "smtp_port": "587", "smtp_security": SmtpSecurity.STARTTLS},
        **DE,
    )
    assert response.status_code == 422
    assert "Geben Sie den Hostnamen des SMTP-Servers ein." in response.text


def test_choice_labels_and_service_messages_are_german():
    with translation.override("de"):
        assert str(EmailBackend.MAILBOX.label) == "Postfach im Panel (nichts wird gesendet)"
        assert str(SmtpSecurity.NONE.label) == "Keine (nur für ein lokales Relay)"
        assert str(EmailTemplate._meta.verbose_name_plural) == "E-Mail-Vorlagen"
        errors = services.template_errors(subject="", preheader="", html="", text="", marketing=False)
        assert errors == {
            "subject": "Schreiben Sie einen Betreff.",
            "html": "Schreiben Sie das HTML, den Text oder beides.",
        }
        too_long = services.template_errors(
            subject="x" * 1_500, preheader="", html="<p>x</p>", text="", marketing=False
        )
        assert too_long["subject"] == "Der Betreff hat 1.500 Zeichen; höchstens 998."
        with pytest.raises(ConnectionProblem, match="sind kein gültiges JSON"):
            provider_options(EmailBackend.MAILGUN, "{")
    # In English (a worker writing a failure reason) the words stay as they were.
    assert services.template_errors(subject="", preheader="", html="x", text="", marketing=False) == {
        "subject": "Write a subject."
    }


def test_the_unsubscribe_pages_follow_the_browser_language(project):
    recipient = Client(enforce_csrf_checks=True)
    message = email_message(project)
    url = path_of(tracking.unsubscribe_url(message))

    page = recipient.get(url, **DE).text
    assert f"Von {project.name} abmelden?" in page and ">Abmelden</button>" in page
    assert "will stop sending" not in page
    assert '<html lang="de"' in page

    english = recipient.get(url, HTTP_ACCEPT_LANGUAGE="en").text
    assert f"Unsubscribe from {project.name}?" in english

    done = recipient.post(url, {"List-Unsubscribe": "One-Click"}, **DE).text
    assert "Sie sind abgemeldet" in done

    invalid = recipient.get("/email/u/not-a-token/", **DE)
    assert invalid.status_code == 404 and "Dieser Link ist ungültig" in invalid.text
