"""Regressions found in review: each failed before its fix."""

from __future__ import annotations

from controlpanel.services import SYSTEM
from subscribers.models import ConsentState, Event, Subscriber
from subscribers.services import erase_subscriber
from tests.factories import SubscriberFactory
from whatsapp import privacy
from whatsapp.models import PhoneNumberEvent, WebhookDelivery

from . import payloads as p
from .test_webhook import deliver, url


def test_a_second_notice_does_not_break_the_delivery_carrying_it(client, account):
    deliver(
        client,
        account,
        p.envelope({"event": "FLAGGED", "current_limit": "TIER_1K"}, field="phone_number_quality_update"),
    )
    second = p.text("hello")
    second["entry"][0]["changes"][0]["value"]["errors"] = [{"code": 131000, "title": "Something"}]
    deliver(client, account, second)
    assert WebhookDelivery.objects.filter(processed_at__isnull=True).count() == 0
    assert PhoneNumberEvent.objects.count() == 2
    assert Event.objects.filter(name="WhatsAppReceived").exists()


def test_non_ascii_verify_token_is_refused_not_a_crash(client, account):
    response = client.get(
        url(account), {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "é"}
    )
    assert response.status_code == 403


def test_erasing_someone_with_a_short_external_id_leaves_other_bodies_alone(client, account, monkeypatch):
    deliver(client, account, p.text("hello", wa_id="4915112999999"))
    before = WebhookDelivery.objects.get().body
    victim = SubscriberFactory(project=account.project, external_id="1", phone="+4915112000001")
    erase_subscriber(subscriber=victim, actor=SYSTEM)
    privacy.scrub_deliveries(account.project_id, ("+4915112000001", "1"))
    assert WebhookDelivery.objects.get().body == before


def test_a_late_start_does_not_override_a_newer_stop(client, account):
    stop, start = p.text("STOP"), p.text("START")
    stop["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = "1749420000"
    start["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = "1749410000"  # sent earlier
    deliver(client, account, stop)
    deliver(client, account, start)  # arrives late
    assert Subscriber.objects.get().whatsapp_consent == ConsentState.OPTED_OUT


def test_a_webhook_for_another_number_is_not_this_projects(client, account):
    payload = p.text("STOP")
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999999999999"
    deliver(client, account, payload)
    assert not Subscriber.objects.filter(project=account.project).exists()
    assert PhoneNumberEvent.objects.filter(summary__startswith="Ignored a webhook").exists()
    assert WebhookDelivery.objects.get().processed_at is not None
