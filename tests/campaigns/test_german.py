"""The campaign pages, the composer, conversations, history, sending settings and the message API in
German: texts from the catalog, German numbers, money and dates, English machine values."""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import translation

from campaigns import counters, sendpolicy
from campaigns.models import AudienceKind, Campaign, CampaignStatus, Message, MessageStatus
from controlpanel.models import Role
from subscribers.models import ConsentState, Segment
from subscribers.segments.text import parse_rule
from tests.factories import SubscriberFactory
from tests.subscribers.test_api_subscribers import ApiClient, key_for
from whatsapp.models import WhatsAppAccount

from . import test_composer_pages as composer
from .conftest import make_template, params

DE = {"HTTP_ACCEPT_LANGUAGE": "de"}


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


@pytest.fixture
def account(project):
    return WhatsAppAccount.objects.create(
        project=project,
        waba_id="102290129340398",
        phone_number_id="106540352242922",
        display_phone_number="15550783881",
        access_token="EAAG-secret-token",
        app_secret="app-secret",
        throughput_mps=80,
        messaging_tier="TIER_1K",
    )


@pytest.fixture
def draft(project, account):
    make_template(account, name="autumn_promo", category="MARKETING", components=composer.PROMO_COMPONENTS)
    segment = Segment.objects.create(
        project=project, name="Germans", rule=parse_rule('F("language", eq, "de")')
    )
    for i in range(3):
        SubscriberFactory(
            project=project, name=f"P{i}", phone=f"+491511230000{i}", language="de",
            whatsapp_consent=ConsentState.OPTED_IN,
        )  # fmt: skip
    return Campaign.objects.create(
        project=project, name="Herbst", account=account, template_name="autumn_promo",
        languages=["en_US"], fallback_language="en_US",
        bindings={"body": {"1": '{{ subscriber.name | default: "Kunde" }}', "2": "AUTUMN20"}},
        audience_kind=AudienceKind.SEGMENT, segment=segment, throttle_mps=2,
    )  # fmt: skip


def test_choice_labels_and_model_names_are_german():
    with translation.override("de"):
        assert str(CampaignStatus.RUNNING.label) == "Wird gesendet"
        assert str(CampaignStatus.DRAFT.label) == "Entwurf"
        assert str(MessageStatus.READ.label) == "Gelesen"
        assert str(MessageStatus.SKIPPED.label) == "Übersprungen"
        assert str(Campaign._meta.verbose_name_plural) == "Kampagnen"
        assert str(Message._meta.get_field("subscriber").verbose_name) == "Abonnent"
    assert str(CampaignStatus.RUNNING.label) == "Sending"


def test_campaign_list_in_german(owner_client, project):
    Campaign.objects.create(
        project=project, name="Herbst", status="running", estimated_cost=Decimal("1234.56"), currency="EUR"
    )
    html = text(owner_client.get(reverse("campaigns:list", args=[project.slug]), **DE))
    assert "Kampagnen" in html and "Neue Kampagne" in html and "Wird gesendet" in html
    assert "ca. 1.234,56 €" in html
    assert "New campaign" not in html and ">Recipients<" not in html


def test_campaign_page_in_german_with_german_money_and_dates(owner_client, project):
    campaign = Campaign.objects.create(
        project=project, name="Herbst", status="running", template_name="autumn_promo",
        estimated_cost=Decimal("1234.5"), currency="EUR",
        launched_at=datetime(2026, 3, 14, 9, 5, tzinfo=ZoneInfo(project.time_zone)),
    )  # fmt: skip
    for status in ("read", "delivered", "queued"):
        Message.objects.create(project=project, subscriber=SubscriberFactory(project=project),
                               campaign=campaign, status=status)  # fmt: skip
    Message.objects.create(project=project, subscriber=SubscriberFactory(project=project), campaign=campaign,
                           status="skipped", reason=sendpolicy.OPTED_OUT)  # fmt: skip
    counters.recount([campaign.pk])
    html = text(owner_client.get(reverse("campaigns:detail", args=[project.slug, campaign.public_id]), **DE))
    assert "Fortschritt" in html and "Zustell-Trichter" in html and "Pausieren" in html
    assert "1.234,50 €" in html
    assert "14.03.2026 09:05" in html
    # The stored English skip reason is shown in German.
    assert "Der Abonnent hat sich von WhatsApp-Nachrichten abgemeldet." in html
    assert Message.objects.get(status="skipped").reason == sendpolicy.OPTED_OUT
    # The progress bar's geometry stays machine-readable: no German decimal comma in attributes.
    assert not re.search(r'(?:x|width)="\d+,\d', html)
    assert "Progress" not in html and "Delivery funnel" not in html


def test_preflight_in_german(marketer_client, project, draft):
    html = text(
        marketer_client.get(reverse("campaigns:preflight", args=[project.slug, draft.public_id]), **DE)
    )
    assert "Vor dem Start" in html and "Test senden" in html and ">Starten<" in html
    assert re.search(r'data-testid="pf-cost">[\d,.]+ \$<', html)  # 0,07 $ in German
    assert 'data-testid="pf-tier">1.000 pro Tag<' in html
    assert "etwa 2 Sekunden" in html
    assert "„Herbst“ an 3 Empfänger für etwa" in html  # the launch confirmation
    assert "Before launch" not in html and "Send test" not in html


def test_composer_form_error_in_german(marketer_client, project, account):
    make_template(account, name="autumn_promo", category="MARKETING", components=composer.PROMO_COMPONENTS)
    response = marketer_client.post(
        reverse("campaigns:new", args=[project.slug]),
        {**composer.form(None, name="", audience_kind="everyone"), "action": "save"},
        **DE,
    )
    assert response.status_code == 400
    html = text(response)
    assert "Geben Sie der Kampagne einen Namen." in html
    assert "Zielgruppe" in html and "Alle mit Opt-in" in html and "Entwurf speichern" in html
    assert "Give the campaign a name" not in html


def test_sending_settings_in_german_and_errors(owner_client, project):
    url = reverse("campaigns:settings_sending", args=[project.slug])
    html = text(owner_client.get(url, **DE))
    assert "Frequenzlimit und Ruhezeiten" in html and "Preisliste" in html and "Alle anderen Länder" in html
    assert 'data-testid="rates-effective">1. Juli 2025<' in html
    # Prices in inputs stay machine-readable (a dot), whatever the language.
    assert not re.search(r'name="price-[^"]+" value="\d+,\d', html)
    response = owner_client.post(url, {"form": "policy", "cap_messages": "2", "cap_days": "7",
                                       "quiet_start": "21:00"}, **DE)  # fmt: skip
    assert "Ruhezeiten brauchen einen Beginn und ein Ende (oder keines von beiden)." in text(response)


def test_conversations_and_history_in_german(owner_client, project, account):
    html = text(owner_client.get(reverse("campaigns:conversations", args=[project.slug]), **DE))
    assert "Unterhaltungen" in html and "Noch keine Unterhaltungen." in html
    assert "Search name or phone" not in html
    html = text(owner_client.get(reverse("campaigns:messages", args=[project.slug]), **DE))
    assert "Nachrichten" in html and "Nicht aus einer Kampagne" in html and "Suchen" in html
    assert "Not from a campaign" not in html


def test_the_message_api_answers_in_german_with_the_same_code(client, account):
    make_template(account)
    api = ApiClient(client, key_for(account.project))
    response = api.client.post(
        "/api/v1/messages",
        json.dumps({"phone": "+4915199990000", "template": {"name": "order_update", "language": "en_US",
                                                           "components": params("Ada", "8812")}}),
        content_type="application/json",
        **api.headers,
        **DE,
    )  # fmt: skip
    assert response.status_code == 404
    assert response.json()["code"] == "subscriber_not_found"
    assert response.json()["message"].startswith("Kein Abonnent mit der Telefonnummer +4915199990000")
