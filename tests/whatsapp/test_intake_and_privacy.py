from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.test import Client

from controlpanel.services import Actor
from subscribers.models import Subscriber
from subscribers.services import erase_subscriber
from whatsapp import intake, privacy, signature
from whatsapp.models import WebhookDelivery
from whatsapp.processing import process_pending

from . import payloads as p
from .conftest import APP_SECRET


@pytest.mark.django_db(transaction=True)
def test_group_commit_stores_every_concurrent_request_in_shared_transactions(account, settings, monkeypatch):
    settings.WEBHOOK_GROUP_COMMIT = True
    settings.WEBHOOK_COMMIT_WAIT_MS = 50
    batches = []
    real_insert = intake._insert
    monkeypatch.setattr(intake, "_insert", lambda rows: (batches.append(len(rows)), real_insert(rows)))
    statuses = []

    def send(i: int) -> None:
        raw = p.body(p.status(f"wamid.C{i}", "delivered", 1750263773 + i))
        response = Client().post(
            f"/webhooks/whatsapp/{account.public_id}/",
            raw,
            content_type="application/json",
            HTTP_X_HUB_SIGNATURE_256=signature.sign(raw, APP_SECRET),
        )
        statuses.append(response.status_code)
        connections.close_all()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    intake.stop_group_commit()
    assert statuses == [200] * 40
    # Every acknowledged body is durably there, and fewer transactions than requests were used.
    assert WebhookDelivery.objects.filter(account=account).count() == 40
    assert sum(batches) == 40 and len(batches) < 40


def test_erasing_a_subscriber_scrubs_raw_webhook_bodies(
    client, account, django_capture_on_commit_callbacks, monkeypatch
):
    for payload in (p.text("my secret address is Elm St 5"), p.status("wamid.OUT9", "read", 1750263999)):
        raw = p.body(payload)
        client.post(
            f"/webhooks/whatsapp/{account.public_id}/",
            raw,
            content_type="application/json",
            HTTP_X_HUB_SIGNATURE_256=signature.sign(raw, APP_SECRET),
        )
    other = p.text("unrelated", wa_id="4915112345678", name="Other Person", user_id="DE.1")
    raw = p.body(other)
    client.post(f"/webhooks/whatsapp/{account.public_id}/", raw, content_type="application/json",
                HTTP_X_HUB_SIGNATURE_256=signature.sign(raw, APP_SECRET))  # fmt: skip
    process_pending(account.pk)
    subscriber = Subscriber.objects.get(phone="+16505551234")
    Subscriber.objects.filter(pk=subscriber.pk).update(external_id="1")  # must not match other "1"s
    subscriber.refresh_from_db()
    queued = []
    monkeypatch.setattr(privacy.scrub_webhook_bodies, "send", lambda *args: queued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        erase_subscriber(subscriber=subscriber, actor=Actor(label="test"))
    assert len(queued) == 1  # the scan runs in a worker, not in the erasing request
    privacy.scrub_webhook_bodies.fn(*queued[0])
    bodies = " ".join(WebhookDelivery.objects.values_list("body", flat=True))
    for trace in ("16505551234", "US.13491208655302741918", "Sheena Nelson", "Elm St"):
        assert trace not in bodies
    assert "4915112345678" in bodies and "Other Person" in bodies
    other_body = WebhookDelivery.objects.get(body__contains="Other Person").body
    assert "[erased]" not in other_body  # exact identity matches only, never substrings


def test_processing_kicks_are_coalesced_per_window(monkeypatch):
    from whatsapp import webhooks

    sent = []
    monkeypatch.setattr(webhooks.process_webhooks, "send_with_options", lambda **kw: sent.append(kw))
    clock = [1000.0]
    monkeypatch.setattr(webhooks.time, "monotonic", lambda: clock[0])
    webhooks._kicks.clear()
    for _ in range(50):  # a burst inside one window: one delayed kick
        webhooks.kick(7)
    clock[0] += webhooks.KICK_WINDOW + 0.001
    webhooks.kick(7)
    webhooks.kick(8)  # another account has its own window
    assert [kw["args"] for kw in sent] == [(7,), (7,), (8,)]
    assert all(kw["delay"] > webhooks.KICK_WINDOW * 1000 for kw in sent)
