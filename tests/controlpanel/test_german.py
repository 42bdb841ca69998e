"""The panel's own pages, messages, emails and API errors in German (Accept-Language: de or the
user's pick), with English unchanged and machine values (codes, action keys) untouched."""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from controlpanel import counting
from controlpanel.api import validation_message
from controlpanel.models import ApiKey, AuditEntry, Project, Role
from controlpanel.services import Actor, create_api_key
from controlpanel.templatetags.ui import action_label

DE = {"HTTP_ACCEPT_LANGUAGE": "de"}


@pytest.fixture
def german_owner(owner):
    owner.language = "de"
    owner.save(update_fields=["language"])
    return owner


def page(client, name, project, **extra) -> str:
    response = client.get(reverse(name, args=[project.slug]), **extra)
    assert response.status_code == 200
    return response.content.decode()


def test_navigation_and_dashboard_in_german(owner_client, project):
    html = page(owner_client, "controlpanel:dashboard", project, **DE)
    assert '<html lang="de">' in html
    for german in ("Übersicht", "Abonnenten", "Kampagnen", "Einstellungen", "Abmelden", "Erste Schritte"):
        assert german in html, german
    assert "Team einladen" in html  # the checklist step controlpanel contributes
    for english in (">Log out<", "Getting started", "Invite your team", ">Settings<"):
        assert english not in html, english


def test_english_stays_english(owner_client, project):
    html = page(owner_client, "controlpanel:dashboard", project, HTTP_ACCEPT_LANGUAGE="en")
    assert "Getting started" in html and "Log out" in html and "Abmelden" not in html


def test_the_users_pick_beats_the_browser(client, german_owner, project):
    client.force_login(german_owner)
    html = page(client, "controlpanel:settings", project, HTTP_ACCEPT_LANGUAGE="en")
    assert "Allgemein" in html and "Mitglieder" in html and "Nur Admins" not in html
    assert "Kurzname" in html and "Projekt-ID" in html


def test_settings_form_labels_and_countries_in_german(owner_client, project):
    html = page(owner_client, "controlpanel:settings", project, **DE)
    assert "Zeitzone" in html and "Standardland" in html and "Speichern" in html
    select = re.search(r'<select name="default_country".*?</select>', html, re.S).group(0)
    assert '<option value="DE" selected>Deutschland (+49)</option>' in select
    assert "Österreich (+43)" in select and "Germany" not in select
    names = re.findall(r'<option value="[A-Z]{2}"[^>]*>([^<]+)</option>', select)
    # In German order: Österreich among the O's, not after Zypern.
    assert names.index("Österreich (+43)") < names.index("Polen (+48)")


def test_members_page_roles_and_dates_in_german(owner_client, project, viewer):
    html = page(owner_client, "controlpanel:members", project, **DE)
    assert "Jemanden einladen" in html and "Einladung senden" in html
    assert ">Betrachter</option>" in html and ">Inhaber<" in html
    assert "Invite someone" not in html and "Send invitation" not in html
    membership = viewer.memberships.get()
    # SHORT_DATE_FORMAT in German, of the day in the project's time zone, which the page renders in
    # (not UTC's: the test failed late in the evening, UTC).
    day = timezone.localtime(membership.created_at, zoneinfo.ZoneInfo(project.time_zone))
    assert day.strftime("%d.%m.%Y") in html


def test_role_labels_are_lazy():
    with translation.override("de"):
        assert str(Role.OWNER.label) == "Inhaber"
        assert str(Role.VIEWER.label) == "Betrachter"
        assert str(Project._meta.verbose_name) == "Projekt"
        assert str(ApiKey._meta.verbose_name_plural) == "API-Schlüssel"
    assert str(Role.OWNER.label) == "Owner"


def test_messages_after_a_post_are_german(owner_client, project):
    response = owner_client.post(
        reverse("controlpanel:api_keys", args=[project.slug]), {"name": "Shop"}, follow=True, **DE
    )
    html = response.content.decode()
    assert "Ihr neuer API-Schlüssel" in html and "Kopieren" in html
    key = ApiKey.objects.get(name="Shop")
    response = owner_client.post(
        reverse("controlpanel:api_key_revoke", args=[project.slug, key.public_id]), follow=True, **DE
    )
    assert "API-Schlüssel „Shop“ widerrufen." in response.content.decode()


def test_service_errors_are_german(owner_client, project, owner):
    membership = owner.memberships.get()
    response = owner_client.post(
        reverse("controlpanel:member_role", args=[project.slug, membership.public_id]),
        {"role": "viewer"},
        follow=True,
        **DE,
    )
    assert "Ein Projekt braucht mindestens einen Inhaber." in response.content.decode()


def test_form_errors_are_german(owner_client, project):
    response = owner_client.post(
        reverse("controlpanel:members", args=[project.slug]), {"email": "nope", "role": "x"}, **DE
    )
    html = response.content.decode()
    assert "Bitte gültige E-Mail-Adresse eingeben." in html  # Django's own catalog
    assert "Enter a valid email address." not in html


def test_invitation_email_in_the_inviters_language(owner_client, project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        owner_client.post(
            reverse("controlpanel:members", args=[project.slug]),
            {"email": "neu@example.com", "role": "marketer"},
            **DE,
        )
    message = mail.outbox[-1]
    assert message.subject == f"Einladung zu {project.name}"
    assert "lädt Sie als Marketer in das Projekt" in message.body
    assert "der Link ist 7 Tage gültig" in message.body


def test_password_reset_email_in_the_requesters_language(client, owner):
    client.post(reverse("password_reset"), {"email": owner.email}, **DE)
    message = mail.outbox[-1]
    assert message.subject == "Passwort für das WhatsApp Control Panel zurücksetzen"
    assert "hoffentlich Sie" in message.body


def test_login_page_and_lockout_in_german(client, owner, settings):
    html = client.get(reverse("login"), **DE).content.decode()
    assert "Bei Ihrem Konto anmelden" in html and "Passwort vergessen?" in html
    assert ">E-Mail</label>" in html
    assert ">Email</label>" in client.get(reverse("login")).content.decode()
    for _attempt in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": owner.email, "password": "wrong"}, **DE)
    response = client.post(reverse("login"), {"username": owner.email, "password": "x"}, **DE)
    assert response.status_code == 429
    assert "Zu viele fehlgeschlagene Anmeldungen" in response.content.decode()


def test_403_and_404_pages_in_german(client, viewer, project):
    client.force_login(viewer)
    response = client.get(reverse("controlpanel:api_keys", args=[project.slug]), **DE)
    assert response.status_code == 403
    assert "Dafür ist die Rolle Admin nötig." in response.content.decode()
    response = client.get("/p/no-such-project/", **DE)
    assert response.status_code == 404 and "Seite nicht gefunden" in response.content.decode()


def test_audit_log_in_german_with_german_dates(owner_client, project, owner):
    AuditEntry.objects.create(
        project=project,
        actor_label=owner.email,
        action="member.role_changed",
        created_at=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
    )
    html = page(owner_client, "controlpanel:audit", project, **DE)
    assert "Rolle eines Mitglieds geändert" in html
    assert 'title="member.role_changed"' in html  # the key itself stays
    assert "04.03.2026" in html and "2026-03-04" not in html


def test_action_labels():
    assert action_label("member.role_changed") == "Member role changed"
    assert action_label("something.new_here") == "Something new here"
    with translation.override("de"):
        assert action_label("campaign.launch") == "Kampagne gestartet"


def test_counts_are_grouped_in_the_readers_language():
    with translation.override("de"):
        assert str(counting.Count(1234567)) == "1.234.567"
        assert str(counting.Count(999_870, estimated=True)) == "etwa 1.000.000"
    assert str(counting.Count(1234567)) == "1,234,567"


@pytest.fixture
def api_client(project):
    _, raw = create_api_key(project=project, name="backend", actor=Actor(label="test"))
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}", HTTP_ACCEPT_LANGUAGE="de")


def test_api_messages_in_german_codes_unchanged(api_client, db):
    body = api_client.get("/api/v1/nope").json()
    assert body == {"code": "not_found", "message": "Kein API-Endpunkt unter /api/v1/nope."}
    body = Client(HTTP_ACCEPT_LANGUAGE="de").get("/api/v1/project").json()
    assert body["code"] == "unauthorized" and body["message"].startswith("Ein gültiger API-Schlüssel")
    response = api_client.post("/api/v1/project")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response.json()["message"].startswith("Dieser Endpunkt beantwortet")


def test_api_messages_in_english_without_a_language(project):
    _, raw = create_api_key(project=project, name="backend", actor=Actor(label="test"))
    body = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/nope").json()
    assert body["message"] == "No API endpoint at /api/v1/nope."


def test_validation_messages():
    missing = {"type": "missing", "msg": "Field required", "loc": ("body", "phone")}
    too_long = {
        "type": "string_too_long",
        "msg": "String should have at most 5 characters",
        "ctx": {"max_length": 5},
    }
    odd = {"type": "something_else", "msg": "Pydantic says so"}
    assert validation_message(missing) == "Field required"
    with translation.override("de"):
        assert validation_message(missing) == "Pflichtfeld"
        assert validation_message(too_long) == "Text darf höchstens 5 Zeichen haben"
        assert validation_message(odd) == "Pydantic says so"
        choice = {"type": "enum", "msg": "Input should be 'a' or 'b'", "ctx": {"expected": "'a' or 'b'"}}
        assert validation_message(choice) == "Eingabe muss 'a' oder 'b' sein"


def test_signup_form_error_in_german():
    from controlpanel.forms import SignupForm

    with translation.override("de"):
        form = SignupForm(
            {"name": "A", "password1": "Long-phrase-1", "password2": "Other-phrase-2"}, email="a@b.c"
        )
        assert not form.is_valid()
        assert form.errors["password2"] == ["Die beiden Passwörter stimmen nicht überein."]


def test_the_500_page_without_context_in_german():
    from django.template import loader

    with translation.override("de"):
        html = loader.get_template("500.html").render()
    assert '<html lang="de">' in html and "Bei uns ist ein Fehler aufgetreten" in html
