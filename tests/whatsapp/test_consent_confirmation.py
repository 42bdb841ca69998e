from __future__ import annotations

import time

from campaigns.models import Message, MessageKind
from subscribers.models import ConsentState, Subscriber
from whatsapp import automatic_texts
from whatsapp.models import AutomaticText, WebhookDelivery
from whatsapp.processing import process_pending

from . import payloads as p
from .test_webhook import deliver


def now_text(body: str) -> dict:
    """A text sent just now: the confirmation goes out inside the window the message opened."""
    payload = p.text(body)
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(int(time.time()))
    return payload


def test_stop_and_start_keywords_are_confirmed_once(client, account):
    deliver(client, account, now_text("START"))
    deliver(client, account, now_text("STOP"))
    confirmations = list(Message.objects.order_by("id").values_list("kind", "body"))
    assert confirmations == [
        (MessageKind.TEXT, automatic_texts.DEFAULTS["en"][automatic_texts.OPT_IN]),
        (MessageKind.TEXT, automatic_texts.DEFAULTS["en"][automatic_texts.OPT_OUT]),
    ]
    assert Subscriber.objects.get().whatsapp_consent == ConsentState.OPTED_OUT
    WebhookDelivery.objects.update(processed_at=None)  # a replay confirms nothing again
    process_pending(account.pk)
    assert Message.objects.count() == 2


def test_no_confirmation_when_nothing_changed_or_switched_off(client, account):
    AutomaticText.objects.create(
        project=account.project, kind=automatic_texts.OPT_OUT, language="en", text=""
    )
    deliver(client, account, now_text("STOP"))  # switched off
    deliver(client, account, now_text("STOP"))  # already opted out: no change, nothing to confirm
    deliver(client, account, now_text("Hello"))
    assert not Message.objects.exists()
