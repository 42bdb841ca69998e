"""The webhook endpoint: verification, signatures, durable deduplicated storage, processing."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from subscribers.models import ConsentChange, ConsentState, Event, Subscriber
from whatsapp import signature
from whatsapp.models import MessageTemplate, PhoneNumberEvent, WebhookDelivery
from whatsapp.processing import process_pending
from whatsapp.signals import status_received

from . import payloads as p
from .conftest import APP_SECRET


def url(account) -> str:
    return f"/webhooks/whatsapp/{account.public_id}/"


def post(client, account, payload: dict, *, secret: str = APP_SECRET, header: str | None = None):
    raw = p.body(payload)
    sig = signature.sign(raw, secret) if header is None else header
    extra = {"HTTP_X_HUB_SIGNATURE_256": sig} if sig else {}
    return client.post(url(account), raw, content_type="application/json", **extra)


def deliver(client, account, payload: dict) -> None:
    """POST like Meta, then run the processing a worker would run."""
    assert post(client, account, payload).status_code == 200
    process_pending(account.pk)


def test_verification_handshake(client, account):
    ok = client.get(
        url(account),
        {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": account.verify_token},
    )
    assert ok.status_code == 200 and ok.content == b"1158201444"
    bad = client.get(
        url(account), {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "wrong"}
    )
    assert bad.status_code == 403


def test_unknown_connection_is_404(client, db):
    assert (
        client.post(
            "/webhooks/whatsapp/7b3c0f2e-0d5c-4d6e-9a53-3f1c2b9e8a11/", b"{}", content_type="application/json"
        ).status_code
        == 404
    )


@pytest.mark.parametrize(("header", "status"), [("", 401), ("sha256=" + "0" * 64, 403), ("garbage", 403)])
def test_missing_or_wrong_signature_stores_nothing(client, account, header, status):
    response = post(client, account, p.text("hi"), header=header)
    assert response.status_code == status
    assert not WebhookDelivery.objects.exists()


def test_other_secret_is_refused(client, account):
    assert post(client, account, p.text("hi"), secret="other").status_code == 403


def test_body_reencoded_after_signing_is_refused(client, account):
    raw = p.body(p.text("Grüße"))
    sig = signature.sign(raw, APP_SECRET)
    reencoded = raw.decode().replace("\\u00fc", "ü").encode()
    response = client.post(
        url(account), reencoded, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=sig
    )
    assert response.status_code == 403


def test_valid_post_is_stored_once_and_acknowledged(client, account):
    payload = p.text("Hello")
    assert post(client, account, payload).status_code == 200
    assert post(client, account, payload).status_code == 200  # Meta's retry of the same body
    assert WebhookDelivery.objects.count() == 1
    assert WebhookDelivery.objects.get().processed_at is None  # processing is a worker's job


def test_webhook_request_does_not_process_inline(client, account):
    with CaptureQueriesContext(connection) as queries:
        post(client, account, p.text("Hello"))
    # Lookup of the connection and one insert; no subscriber or event work on the request path.
    assert not any("subscribers_" in q["sql"] for q in queries.captured_queries)


@pytest.mark.parametrize("kind", sorted(p.INBOUND_TYPES))
def test_every_inbound_type_becomes_a_whatsapp_received_event(client, account, kind):
    deliver(client, account, p.inbound(p.INBOUND_TYPES[kind]))
    subscriber = Subscriber.objects.get(project=account.project)
    assert subscriber.phone == "+16505551234"
    assert subscriber.wa_id == "16505551234"
    assert subscriber.bsuid == "US.13491208655302741918"
    assert subscriber.name == "Sheena Nelson"
    assert subscriber.last_inbound_at is not None
    event = Event.objects.get(project=account.project, name="WhatsAppReceived")
    expected_type = p.INBOUND_TYPES[kind]["type"]
    assert event.attributes["type"] == expected_type
    assert event.attributes["message_id"].startswith("wamid.")
    assert WebhookDelivery.objects.get().processed_at is not None


def test_inbound_attributes_per_type(client, account):
    deliver(client, account, p.inbound(p.INBOUND_TYPES["button"]))
    deliver(client, account, p.inbound(p.INBOUND_TYPES["interactive_list"]))
    deliver(client, account, p.inbound(p.INBOUND_TYPES["referral"]))
    deliver(client, account, p.text("  hilfe!  "))
    events = {
        e.attributes["type"] + e.attributes.get("button_payload", ""): e.attributes
        for e in Event.objects.filter(name="WhatsAppReceived")
    }
    button = events["buttonSTOP_PROMOS"]
    assert (button["button_text"], button["context_message_id"]) == ("Stop promotions", "wamid.TEMPLATE1")
    assert events["interactivepriority_express"]["button_text"] == "Priority Mail Express"
    texts = [
        e.attributes for e in Event.objects.filter(name="WhatsAppReceived") if e.attributes["type"] == "text"
    ]
    assert any("ctwa_clid" in a.get("referral", "") for a in texts)
    assert any(a["normalized_text"] == "HILFE" for a in texts)


def test_stop_keyword_opts_out_and_start_opts_back_in(client, account):
    deliver(client, account, p.text("START"))
    subscriber = Subscriber.objects.get()
    assert subscriber.whatsapp_consent == ConsentState.OPTED_IN
    deliver(client, account, p.text("stopp"))
    subscriber.refresh_from_db()
    assert subscriber.whatsapp_consent == ConsentState.OPTED_OUT
    ledger = list(ConsentChange.objects.order_by("created_at", "id").values_list("state", "source"))
    assert ledger == [("opted_in", "keyword"), ("opted_out", "keyword")]
    assert "stopp" in ConsentChange.objects.get(state="opted_out").evidence


def test_stop_button_opts_out(client, account):
    deliver(client, account, p.text("START"))
    deliver(client, account, p.inbound(p.INBOUND_TYPES["button"]))
    assert Subscriber.objects.get().whatsapp_consent == ConsentState.OPTED_OUT
    assert "Stop promotions" in ConsentChange.objects.filter(state="opted_out").get().evidence


def test_project_keywords_are_configurable(client, account):
    account.opt_out_keywords = ["HALT"]
    account.save()
    deliver(client, account, p.text("START"))
    deliver(client, account, p.text("stop"))
    assert Subscriber.objects.get().whatsapp_consent == ConsentState.OPTED_IN
    deliver(client, account, p.text("halt"))
    assert Subscriber.objects.get().whatsapp_consent == ConsentState.OPTED_OUT


def test_user_preferences_stop_and_resume(client, account):
    deliver(client, account, p.user_preference("16505551234", "stop"))
    subscriber = Subscriber.objects.get()
    assert subscriber.whatsapp_consent == ConsentState.OPTED_OUT
    deliver(client, account, p.user_preference("16505551234", "resume", ts=1731709999))
    subscriber.refresh_from_db()
    assert subscriber.whatsapp_consent == ConsentState.OPTED_IN
    assert set(ConsentChange.objects.values_list("source", flat=True)) == {"meta_preference"}


def test_bsuid_only_user_is_kept_without_phone(client, account):
    payload = p.inbound({"type": "text", "text": {"body": "hi"}}, wa_id="")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message.pop("from")
    message["from_user_id"] = "US.99"
    payload["entry"][0]["changes"][0]["value"]["contacts"] = [{"profile": {"name": "U"}, "user_id": "US.99"}]
    deliver(client, account, payload)
    subscriber = Subscriber.objects.get()
    assert (subscriber.phone, subscriber.bsuid) == (None, "US.99")


def test_known_phone_gets_its_bsuid_and_keeps_its_name(client, account):
    Subscriber.objects.create(project=account.project, phone="+16505551234", name="Shop name")
    deliver(client, account, p.text("hi"))
    subscriber = Subscriber.objects.get()
    assert (subscriber.bsuid, subscriber.name) == ("US.13491208655302741918", "Shop name")


def test_statuses_are_announced_with_errors_and_pricing(client, account, django_capture_on_commit_callbacks):
    seen = []
    status_received.connect(lambda sender, update, **kw: seen.append(update), weak=False, dispatch_uid="t1")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            deliver(client, account, p.status("wamid.OUT1", "delivered", 1750263773, callback="m:abc"))
            failed = p.status(
                "wamid.OUT2", "failed", 1689380458, errors=[{"code": 131049, "title": "not delivered"}]
            )
            deliver(client, account, failed)
    finally:
        status_received.disconnect(dispatch_uid="t1")
    assert [(u.wamid, u.status) for u in seen] == [("wamid.OUT1", "delivered"), ("wamid.OUT2", "failed")]
    assert seen[0].callback_data == "m:abc" and seen[0].pricing["category"] == "marketing"
    assert seen[1].errors[0]["code"] == 131049


def test_template_status_updates(client, account):
    MessageTemplate.objects.create(
        project=account.project,
        account=account,
        name="abandoned_cart",
        language="en",
        category="MARKETING",
        status="PENDING",
    )
    deliver(client, account, p.template_status("abandoned_cart", "en", "REJECTED", reason="INVALID_FORMAT"))
    template = MessageTemplate.objects.get()
    assert (template.status, template.rejected_reason) == ("REJECTED", "INVALID_FORMAT")
    assert "Separate them" in template.rejection_detail


def test_unknown_fields_are_kept_and_never_fatal(client, account):
    payload = p.text("hi")
    payload["entry"][0]["changes"][0]["value"]["brand_new_thing"] = {"x": 1}
    payload["entry"][0]["changes"].append({"field": "some_future_field", "value": {"y": 2}})
    deliver(client, account, payload)
    assert WebhookDelivery.objects.get().error == ""
    assert "brand_new_thing" in WebhookDelivery.objects.get().body
    assert PhoneNumberEvent.objects.filter(field="some_future_field").exists()


def test_replaying_the_whole_inbox_twice_gives_the_same_state(client, account):
    inbox = [
        p.text("START"),
        p.inbound(p.INBOUND_TYPES["image"]),
        p.text("STOP"),
        p.user_preference("16505551234", "resume"),
        p.status("wamid.OUT1", "read", 1750263999),
        p.template_status("x", "en", "APPROVED"),
        p.inbound(p.INBOUND_TYPES["unsupported"]),
    ]
    for payload in inbox:
        deliver(client, account, payload)

    def state():
        return (
            list(Subscriber.objects.values_list("phone", "whatsapp_consent", "last_inbound_at")),
            list(Event.objects.order_by("id").values_list("name", "dedup_key", "attributes")),
            list(ConsentChange.objects.order_by("id").values_list("state", "source")),
            list(PhoneNumberEvent.objects.order_by("id").values_list("field", "summary")),
        )

    first = state()
    WebhookDelivery.objects.update(processed_at=None)  # replay every stored delivery
    process_pending(account.pk)
    assert state() == first
    for payload in inbox:  # and Meta re-sending every body again
        deliver(client, account, payload)
    assert state() == first
    assert WebhookDelivery.objects.count() == len(inbox)


def test_out_of_order_inbound_does_not_move_the_window_back(client, account):
    newer = p.text("second")
    newer["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = "1749420000"
    deliver(client, account, newer)
    deliver(client, account, p.text("first"))  # timestamp 1749416383, arrives late
    assert Subscriber.objects.get().last_inbound_at.timestamp() == 1749420000


def test_malformed_json_is_stored_marked_and_not_retried(client, account):
    raw = b"{not json"
    response = client.post(
        url(account),
        raw,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=signature.sign(raw, APP_SECRET),
    )
    assert response.status_code == 200
    process_pending(account.pk)
    delivery = WebhookDelivery.objects.get()
    assert delivery.processed_at is not None and "not JSON" in delivery.error
