"""The push pages in German: templates, settings, the simulator's device page, form errors,
choice labels, dates, and the devices and opened APIs' human messages (codes unchanged)."""

from __future__ import annotations

import datetime
import uuid

import pytest
from django.urls import reverse
from django.utils import translation

from campaigns import channel_sending
from controlpanel.models import Role
from controlpanel.services import Actor, create_api_key
from push import services
from push.forms import parse_data
from push.models import PushMode, PushTemplate
from push.simulator import opens
from tests.factories import SubscriberFactory
from whatsapp.simulator.testing import httpx_transport

from .conftest import PushTemplateFactory

pytestmark = pytest.mark.django_db
DE = {"HTTP_ACCEPT_LANGUAGE": "de"}


@pytest.fixture(autouse=True)
def _no_kick(monkeypatch):
    monkeypatch.setattr(channel_sending, "kick", lambda: None)


def url(project, name, *args):
    return reverse(f"push:{name}", args=[project.slug, *args])


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


def test_the_template_list_is_german_with_german_dates(marketer_client, project):
    template = PushTemplateFactory(project=project)
    PushTemplate.objects.filter(pk=template.pk).update(
        updated_at=datetime.datetime(2026, 3, 4, 15, 6, tzinfo=datetime.UTC)
    )
    page = marketer_client.get(url(project, "templates"), **DE).text
    assert "Push-Vorlagen" in page and "Neue Push-Vorlage" in page and "transaktional" in page
    assert "Sendet mit: Push-Simulator (nichts verlässt den Rechner)" in page
    assert "04.03.2026" in page and "2026-03-04" not in page
    assert "New push template" not in page and "Sends with" not in page


def test_the_editor_and_its_errors_are_german(marketer_client, project):
    page = marketer_client.get(url(project, "new"), **DE).text
    assert "Neue Push-Vorlage" in page and "Bild-URL" in page and "Speichern" in page
    response = marketer_client.post(
        url(project, "new"),
        {"name": "x", "title": "", "body": "", "image_url": "http://a", "data_text": "k"},
        **DE,
    )
    assert "Schreiben Sie einen Titel oder einen Text." in response.text
    assert "Die Bild-URL muss mit https:// beginnen." in response.text
    assert "Zeile 1 hat kein „=“: Schreiben Sie key=value." in response.text
    assert "Write a title or a body." not in response.text


def test_a_saved_template_message_is_german(marketer_client, project):
    response = marketer_client.post(
        url(project, "new"),
        {"name": "order-ready", "title": "Hi", "body": "Ready", "image_url": "", "link": "", "data_text": ""},
        follow=True,
        **DE,
    )
    assert "Push-Vorlage „order-ready“ gespeichert." in response.text


def test_the_settings_page_is_german(client, owner, project):
    client.force_login(owner)
    page = client.get(url(project, "settings"), **DE).text
    assert "Push-Einstellungen" in page and "Test-Push senden" in page
    assert "Dienstkonto-Schlüssel (JSON-Datei)" in page
    assert "Send a test push" not in page
    refused = client.post(url(project, "settings"), {"mode": PushMode.FCM}, **DE)
    assert "Der Firebase-Modus braucht den Dienstkonto-Schlüssel" in refused.text


def test_labels_and_service_words_are_german():
    with translation.override("de"):
        assert str(PushMode.SIMULATOR.label) == "Push-Simulator (nichts verlässt den Rechner)"
        assert str(PushTemplate._meta.verbose_name) == "Push-Vorlage"
        assert services.data_key_problem("from") == (
            "„from“ ist von Firebase oder von uns reserviert; wählen Sie einen anderen Datenschlüssel."
        )
        with pytest.raises(
            ValueError, match=r"Die Daten haben 4\.100 Bytes; Firebase nimmt höchstens 4\.096\."
        ):
            parse_data("k=" + "x" * 4_099)
    assert services.data_key_problem("") == "A data key may not be empty."


def test_the_simulator_page_is_german(client, owner, project, settings, monkeypatch):
    settings.SIMULATOR_ENABLED = True
    settings.ROOT_URLCONF = "push.simulator.full_urls"
    monkeypatch.setattr(opens, "transport", httpx_transport())
    client.force_login(owner)
    page_url = reverse("push_simulator:devices") + f"?project={project.slug}"
    page = client.get(page_url, **DE).text
    assert (
        "Simulierte Geräte" in page and "Gerät hinzufügen" in page and "Noch keine simulierten Geräte" in page
    )
    assert "Simulated devices" not in page
    unknown = client.post(page_url, {"subscriber": "nobody@example.com", "platform": "ios"}, **DE)
    assert unknown.status_code == 400
    assert "Kein Abonnent mit dieser Telefonnummer, E-Mail oder externen ID" in unknown.text


def test_the_apis_human_messages_are_german_and_codes_unchanged(client, project):
    _, raw = create_api_key(project=project, name="app", actor=Actor(label="test"))
    auth = {"Authorization": f"Bearer {raw}"}
    missing = uuid.uuid4()
    response = client.post(
        "/api/v1/push/opened", {"message": str(missing)}, content_type="application/json", headers=auth, **DE
    )
    assert response.status_code == 404
    assert response.json()["code"] == "message_not_found"
    assert response.json()["message"] == f"Keine Push-Nachricht {missing} in diesem Projekt."

    SubscriberFactory(project=project)
    devices = client.post(
        "/api/v1/devices",
        {"subscriber": {"external_id": "nobody"}, "token": "tok-1", "platform": "android"},
        content_type="application/json",
        headers=auth,
        **DE,
    )
    assert devices.status_code == 404 and devices.json()["code"] == "subscriber_not_found"
    assert devices.json()["message"] == "Kein Abonnent mit external_id nobody in diesem Projekt."

    english = client.post(
        "/api/v1/push/opened", {"message": str(missing)}, content_type="application/json", headers=auth
    )
    assert english.json()["message"] == f"No push {missing} in this project."
