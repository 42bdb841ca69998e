"""The journeys pages, forms, labels and API messages in German (issue 12)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from django.utils import translation

from controlpanel.models import Role
from controlpanel.services import Actor, create_api_key
from journeys import counters, services
from journeys import keyword_campaigns as kc
from journeys.models import EntryKind, Journey, JourneyStatus, JourneyVersion, RunState
from journeys.panel_forms import KeywordCampaignForm
from journeys.stats import EXIT_LABELS
from journeys.steps import get as step_type

pytestmark = pytest.mark.django_db

DE = {"HTTP_ACCEPT_LANGUAGE": "de"}
SYSTEM = Actor(label="test")
PROMO = {
    "name": "PROMO keyword",
    "entry": {
        "type": "event",
        "event": "WhatsAppReceived",
        "conditions": [{"attribute": "text", "op": "keyword", "value": "promo"}],
    },
    "settings": {"reentry": "after_exit"},
    "steps": [{"id": "reply", "type": "whatsapp_text", "text": "Danke!", "next": None}],
}


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


def _journey(project, status=JourneyStatus.DRAFT) -> Journey:
    journey = Journey.objects.create(
        project=project,
        name="PROMO keyword",
        definition=PROMO,
        status=status,
        entry_kinds=["event"],
        keywords=["promo"],
    )
    if status != JourneyStatus.DRAFT:
        JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=PROMO)
        journey.version = 1
        journey.save()
    return journey


def _page(client, url: str) -> str:
    response = client.get(url, **DE)
    assert response.status_code == 200
    return response.content.decode()


def test_the_list_in_german(project, marketer_client):
    empty = _page(marketer_client, reverse("journeys:list", args=[project.slug]))
    assert "Noch keine Journeys" in empty and "Neue Journey" in empty and "Schlüsselwort-Kampagne" in empty
    assert "No journeys yet" not in empty
    _journey(project, JourneyStatus.ACTIVE)
    page = _page(marketer_client, reverse("journeys:list", args=[project.slug]))
    assert "Jetzt in der Journey" in page and "Pausieren" in page and "Klonen" in page and ">Aktiv<" in page
    assert "„PROMO keyword“ pausieren?" in page
    assert "In journey now" not in page and ">Pause<" not in page and ">Clone<" not in page
    assert "Schlüsselwort PROMO" in page and "Version 1" in page


def test_the_builder_in_german(project, marketer_client):
    journey = _journey(project)
    page = _page(marketer_client, reverse("journeys:builder", args=[project.slug, journey.public_id]))
    assert (
        "Speichern" in page and "Aktivieren" in page and "Schritt hinzufügen" in page and "Einstieg" in page
    )
    assert ">Save<" not in page and "Add a step" not in page
    # The palette's step names come with the page's data, in German.
    assert "WhatsApp-Text senden" in page and "Auf Ereignis warten" in page
    assert '<html lang="de">' in page and "/jsi18n/" in page


def test_builder_validation_messages_in_german_codes_unchanged(project, marketer_client):
    journey = _journey(project)
    url = reverse("journeys:builder_save", args=[project.slug, journey.public_id])
    bad = {**PROMO, "steps": [{"id": "reply", "type": "whatsapp_text", "text": "", "texts": {"x y": "?"}}]}
    response = marketer_client.post(url, {"definition": bad}, content_type="application/json", **DE)
    assert response.status_code == 422
    body = response.json()
    assert body["message"] == "Nicht gespeichert: Beheben Sie die rot markierten Probleme."
    problems = {(p["step"], p["field"]): p["message"] for p in body["problems"]}
    assert problems[("reply", "text")] == "Schreiben Sie die Nachricht."
    assert "ist kein Sprachcode" in problems[("reply", "texts.x y")]


def test_the_keyword_form_in_german_with_a_german_error(project, marketer_client):
    url = reverse("journeys:keyword_new", args=[project.slug])
    page = _page(marketer_client, url)
    assert "Neue Schlüsselwort-Kampagne" in page and "Sofortantwort" in page and "Antwort auf Deutsch" in page
    assert "Als Entwurf speichern" in page and "Oder mit einem Beispiel beginnen" in page
    assert "PROMO: Code sofort, Angebot eine Stunde später" in page
    assert "Save as draft" not in page and "Instant reply" not in page
    response = marketer_client.post(
        url, {"name": "X", "keywords": "!!!", "match": "exact", "reply": "Hi"}, **DE
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nicht gespeichert" in html
    assert "enthält keine Buchstaben oder Ziffern" in html


def test_form_labels_and_choices_in_german():
    with translation.override("de"):
        assert str(KeywordCampaignForm.base_fields["reply"].label) == "Sofortantwort"
        assert str(KeywordCampaignForm.base_fields["match"].choices[0][1]) == "Ist genau"
        assert str(KeywordCampaignForm.base_fields["delay_unit"].choices[1][1]) == "Stunden"
    assert str(KeywordCampaignForm.base_fields["reply"].label) == "Instant reply"


def test_model_labels_in_german():
    with translation.override("de"):
        assert str(JourneyStatus.DRAFT.label) == "Entwurf"
        assert str(JourneyStatus.PAUSED.label) == "Pausiert"
        assert str(RunState.WAITING.label) == "Wartet"
        assert str(EntryKind.EVENT.label) == "Ereignis"
        assert str(Journey._meta.verbose_name_plural) == "Journeys"
        assert str(Journey._meta.get_field("status").verbose_name) == "Status"
        assert str(EXIT_LABELS["goal"]) == "Ziel erreicht"
        assert str(step_type("wait").label) == "Warten"
        assert str(step_type("whatsapp_template").label) == "WhatsApp-Vorlage senden"
    assert str(JourneyStatus.DRAFT.label) == "Draft"


def test_example_cards_in_german(project):
    with translation.override("de"):
        promo, hilfe = kc.examples(project)
    assert promo.title == "PROMO: Code sofort, Angebot eine Stunde später"
    assert hilfe.note.startswith("Benötigt eine freigegebene Vorlage")


def test_the_statistics_page_in_german_with_german_numbers(project, marketer_client):
    journey = _journey(project, JourneyStatus.ACTIVE)
    counters.bump(
        project.pk, journey.pk, {("", "entered"): 1234, ("", "converted"): 617, ("reply", "entered"): 1234}
    )
    page = _page(marketer_client, reverse("journeys:stats", args=[project.slug, journey.public_id]))
    assert "Einstiege" in page and "Trichter pro Schritt" in page and "Conversion-Rate" in page
    assert "Funnel per step" not in page and "Unique subscribers" not in page
    assert "1.234" in page  # entries, German thousands separator
    assert "50,0 %" in page  # the conversion rate, German decimal comma


def test_the_dry_run_page_in_german_with_a_german_date(project, marketer_client, settings):
    journey = _journey(project)
    page = _page(marketer_client, reverse("journeys:dryrun", args=[project.slug, journey.public_id]))
    assert "Testlauf starten" in page and "Test-Abonnent" in page and "Pfad" in page
    assert "Start a dry run" not in page
    with translation.override("de"):
        from django.template import Context, Template

        when = datetime(2026, 12, 24, 9, 30, tzinfo=UTC)
        shown = Template('{{ when|date:"SHORT_DATETIME_FORMAT" }}').render(Context({"when": when}))
    assert shown.startswith("24.12.2026")


def test_the_api_answers_in_german_with_the_same_codes(client, project):
    key = create_api_key(project=project, name="backend", actor=SYSTEM)[1]
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}", **DE}
    missing = client.get("/api/v1/journeys/00000000-0000-0000-0000-000000000000", **headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "journey_not_found"
    assert "in diesem Projekt" in missing.json()["message"]
    bad = {**PROMO, "steps": [{"id": "reply", "type": "whatsapp_text", "text": ""}]}
    answer = client.post("/api/v1/journeys", data=json.dumps(bad), content_type="application/json", **headers)
    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == "invalid_journey"
    assert body["message"].startswith("Die Journey hat 1 Problem")
    assert body["problems"][0]["message"] == "Schreiben Sie die Nachricht."
    english = client.post(
        "/api/v1/journeys",
        data=json.dumps(bad),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert english.json()["message"].startswith("The journey has 1 problem")


def test_lifecycle_messages_in_german(project, marketer_client):
    journey = _journey(project, JourneyStatus.ACTIVE)
    url = reverse("journeys:pause", args=[project.slug, journey.public_id])
    page = marketer_client.post(url, follow=True, **DE).content.decode()
    assert "„PROMO keyword“ pausiert" in page
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.PAUSED
    refused = marketer_client.post(url, follow=True, **DE).content.decode()
    assert "Nur eine aktive Journey kann pausiert werden." in refused
    services.stop(journey=journey, actor=SYSTEM)


def test_the_builders_texts_are_in_the_german_javascript_catalog(client):
    catalog = client.get("/jsi18n/", **DE).content.decode()
    assert "Nachricht auf Deutsch" in catalog and "Bedingung entfernen" in catalog
