"""The subscriber pages, forms, timeline, segment builder and API messages in German."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from controlpanel.services import SYSTEM, Actor, create_api_key
from subscribers import services
from subscribers.models import ConsentSource, ConsentState, Event, Segment, TagType
from subscribers.segments.tree import OP_LABELS
from subscribers.tags import BUILTIN_TAGS
from subscribers.timeline import entries

pytestmark = pytest.mark.django_db

DE = {"HTTP_ACCEPT_LANGUAGE": "de"}


def add(project, phone, **raw):
    data = services.clean_subscriber_data(project, {"phone": phone, **raw})
    subscriber, _created = services.upsert_subscriber(project=project, data=data, actor=SYSTEM)
    return subscriber


def test_the_list_in_german(owner_client, project):
    add(project, "+4915112340001", name="Anna")
    body = owner_client.get(reverse("subscribers:list", args=[project.slug]), **DE).content.decode()
    assert "Abonnenten" in body
    assert "Abonnent hinzufügen" in body
    assert "1 Abonnent" in body
    assert "Neueste zuerst" in body
    assert 'placeholder="Telefon, Name, E-Mail oder externe ID"' in body
    assert "Add subscriber" not in body
    assert "Newest first" not in body


def test_the_count_is_grouped_as_in_german(owner_client, project, monkeypatch):
    from subscribers import views

    monkeypatch.setattr(views, "PAGE_SIZE", 1)
    for i in range(2):
        add(project, f"+491511234000{i}")
    monkeypatch.setattr(views, "bounded_count", lambda qs, limit=None: (12345, False))
    url = reverse("subscribers:list", args=[project.slug])
    assert "12.345 Abonnenten" in owner_client.get(url, **DE).content.decode()
    assert "12,345 subscribers" in owner_client.get(url).content.decode()


def test_the_detail_page_in_german_with_german_dates_and_tag_labels(owner_client, project):
    subscriber = add(project, "+4915112340001", name="Anna", tags={"price": Decimal("12.5")})
    subscriber.created_at = timezone.now().replace(year=2026, month=3, day=1, hour=12)
    subscriber.save()
    page = owner_client.get(reverse("subscribers:detail", args=[project.slug, subscriber.public_id]), **DE)
    body = page.content.decode()
    assert "Nachricht senden" in body
    assert "Zeitleiste" in body
    assert "Sprache" in body  # the built-in tag Language, by its German label
    assert 'data-tag="Language"' in body  # the key stays English
    assert "01.03.2026" in body
    assert "Send message" not in body
    assert "Timeline" not in body


def test_a_decimal_tag_in_an_input_stays_machine_readable(owner_client, project):
    subscriber = add(project, "+4915112340001", tags={"price": Decimal("12.5")})
    definition = project.tag_definitions.get(name="price")
    assert definition.type == TagType.DECIMAL
    url = reverse("subscribers:tag_row", args=[project.slug, subscriber.public_id, definition.public_id])
    body = owner_client.get(url + "?mode=edit", HTTP_HX_REQUEST="true", **DE).content.decode()
    assert 'value="12.5"' in body
    assert "Speichern" in body


def test_a_form_error_in_german(owner_client, project):
    response = owner_client.post(
        reverse("subscribers:add", args=[project.slug]),
        {"phone": "+4915112340001", "opt_in": "on", "opt_in_evidence": ""},
        **DE,
    )
    body = response.content.decode()
    assert "Ein Opt-in braucht einen Nachweis" in body
    assert "Nachweis des Opt-ins" in body


def test_a_service_error_in_the_form_in_german(owner_client, project):
    response = owner_client.post(
        reverse("subscribers:add", args=[project.slug]), {"phone": "+4915112340001", "email": "nope"}, **DE
    )
    assert "ist keine E-Mail-Adresse" in response.content.decode()


def test_choice_labels_in_german():
    with translation.override("de"):
        assert str(ConsentState.OPTED_IN.label) == "Angemeldet"
        assert str(ConsentState.OPTED_OUT.label) == "Abgemeldet"
        assert str(ConsentSource.IMPORT.label) == "CSV-Import"
        assert str(TagType.DATETIME.label) == "Datum und Uhrzeit"
        assert BUILTIN_TAGS["language"].label == "Sprache"
        assert BUILTIN_TAGS["language"].name == "Language"
        assert str(OP_LABELS["contains"]) == "enthält"
    assert str(ConsentState.OPTED_IN.label) == "Opted in"


def test_the_timeline_in_german(project):
    subscriber = add(project, "+4915112340001")
    event = Event(
        project=project,
        subscriber=subscriber,
        name="Unsubscribed",
        occurred_at=timezone.now(),
        attributes={"channel": "email", "source": "import"},
    )
    with translation.override("de"):
        (entry,) = entries([event])
    assert entry.title == "Von E-Mail abgemeldet"
    assert entry.detail == "über einen CSV-Import"


def test_the_segment_builder_in_german(owner_client, project):
    body = owner_client.get(reverse("subscribers:segment_new", args=[project.slug]), **DE).content.decode()
    assert "Neues Segment" in body
    assert "Zielgruppe" in body
    schema = json.loads(body.split('id="segment-schema" type="application/json">')[1].split("</script>")[0])
    fields = {f["name"]: f["label"] for f in schema["fields"]}
    assert fields["language"] == "Sprache"
    assert "gleich" in [label for _op, label in schema["fields"][0]["ops"]]
    # The JavaScript catalog has the builder's words (AND/OR/NOT as UND/ODER/NICHT).
    catalog = owner_client.get("/jsi18n/", **DE).content.decode()
    assert "UND" in catalog and "ODER" in catalog and "NICHT" in catalog


def test_the_segment_list_in_german(owner_client, project):
    Segment.objects.create(project=project, name="Berlin", rule={"type": "all"}, cached_count=1234)
    body = owner_client.get(reverse("subscribers:segments", args=[project.slug]), **DE).content.decode()
    assert "Neu zählen" in body
    assert "1.234" in body


def test_the_events_page_in_german(owner_client, project):
    subscriber = add(project, "+4915112340001")
    Event.objects.create(
        project=project,
        subscriber=subscriber,
        name="OrderPlaced",
        occurred_at=timezone.now() - timedelta(days=1),
        attributes={},
    )
    body = owner_client.get(reverse("subscribers:events", args=[project.slug]), **DE).content.decode()
    assert "Alle Ereignisse" in body
    assert "Statistik" in body
    assert "All events" not in body


def test_the_import_page_in_german(owner_client, project):
    body = owner_client.get(reverse("subscribers:import_upload", args=[project.slug]), **DE).content.decode()
    assert "Abonnenten aus einer CSV-Datei importieren" in body
    assert "Einwilligungsprotokoll als CSV herunterladen" in body
    assert "Upload and preview" not in body


def test_an_api_message_in_german_with_its_code_unchanged(client, project):
    key = create_api_key(project=project, name="backend", actor=Actor(label="test"))[1]
    response = client.post(
        "/api/v1/subscribers",
        data=json.dumps({"phone": "+4915112340001", "email": "nope"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
        **DE,
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid"
    assert "ist keine E-Mail-Adresse" in body["message"]


def test_an_api_message_stays_english_without_german(client, project):
    key = create_api_key(project=project, name="backend", actor=Actor(label="test"))[1]
    response = client.post(
        "/api/v1/subscribers",
        data=json.dumps({"phone": "+4915112340001", "email": "nope"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert "is not an email address" in response.json()["message"]


def test_the_csv_export_stays_english_and_iso(owner_client, project):
    add(project, "+4915112340001", name="Anna")
    response = owner_client.get(reverse("subscribers:export", args=[project.slug]), **DE)
    content = b"".join(response.streaming_content).decode("utf-8-sig")
    header = content.splitlines()[0]
    assert "phone" in header
    assert "Telefon" not in header
