from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from campaigns.models import Message, MessageStatus
from campaigns.sending import sweep_stuck
from campaigns.services import SendRefused, deliver, send_whatsapp
from controlpanel.services import Actor
from subscribers.models import ConsentState
from tests.factories import SubscriberFactory
from tests.fakegraph import error_answer, ok_answer
from whatsapp.models import AccountStatus, WhatsAppAccount

from .conftest import make_template, params

ACTOR = Actor(label="test")


def queue(account, subscriber, template, *values):
    return send_whatsapp(
        project=account.project,
        subscriber=subscriber,
        actor=ACTOR,
        template=template,
        components=params(*values),
    )


def test_template_is_sent_with_callback_data_and_stored_wamid(graph, account, subscriber, template):
    message = queue(account, subscriber, template, "Mark", "SKBUP2")
    assert message.status == MessageStatus.QUEUED
    assert message.body == "Hi Mark, your order SKBUP2 is on its way."
    assert deliver(message.pk) == MessageStatus.SENT
    method, url, body, headers = graph.calls[0]
    assert (method, url) == ("POST", "https://graph.facebook.com/v23.0/106540352242922/messages")
    assert body["to"] == "4915112345678" and body["template"]["name"] == "order_update"
    assert body["biz_opaque_callback_data"] == f"m:{message.public_id}"
    assert headers["Authorization"] == "Bearer EAAG-secret-token"
    message.refresh_from_db()
    assert message.wamid.startswith("wamid.FAKE") and message.sent_at is not None
    assert [h["status"] for h in message.history] == ["queued", "sent"]


def test_delivering_twice_sends_once(graph, account, subscriber, template):
    message = queue(account, subscriber, template, "Mark", "1")
    deliver(message.pk)
    assert deliver(message.pk) == "not-queued"
    assert len(graph.calls) == 1


@pytest.mark.parametrize(
    ("consent", "category", "status", "reason"),
    [
        (ConsentState.UNKNOWN, "MARKETING", "APPROVED", "Marketing needs WhatsApp opt-in"),
        (ConsentState.OPTED_OUT, "UTILITY", "APPROVED", "opted out"),
        (ConsentState.OPTED_IN, "UTILITY", "PAUSED", "is paused, not approved"),
        (ConsentState.OPTED_IN, "UTILITY", "PENDING", "is pending, not approved"),
    ],
)
def test_policy_refusals_write_nothing(graph, account, consent, category, status, reason):
    subscriber = SubscriberFactory(project=account.project, whatsapp_consent=consent)
    template = make_template(account, category=category, status=status)
    with pytest.raises(SendRefused, match=reason):
        queue(account, subscriber, template, "a", "b")
    assert not Message.objects.exists() and graph.calls == []


def test_parameter_mismatch_is_caught_before_meta(graph, account, subscriber, template):
    with pytest.raises(SendRefused, match="body needs 2 parameters, got 1"):
        queue(account, subscriber, template, "only one")
    assert graph.calls == []


def test_text_only_inside_the_service_window(graph, account, subscriber):
    with pytest.raises(SendRefused, match="within 24 hours"):
        send_whatsapp(project=account.project, subscriber=subscriber, actor=ACTOR, text="Hello")
    subscriber.last_inbound_at = timezone.now() - timedelta(hours=23)
    subscriber.save()
    message = send_whatsapp(project=account.project, subscriber=subscriber, actor=ACTOR, text="Hello")
    assert deliver(message.pk) == MessageStatus.SENT
    assert graph.calls[0][2]["text"] == {"body": "Hello", "preview_url": False}


def test_opt_out_after_queueing_skips_at_send_time(graph, account, subscriber, template):
    message = queue(account, subscriber, template, "a", "b")
    subscriber.whatsapp_consent = ConsentState.OPTED_OUT
    subscriber.save()
    assert deliver(message.pk) == MessageStatus.SKIPPED
    message.refresh_from_db()
    assert "opted out" in message.reason and graph.calls == []


def test_idempotency_key_returns_the_same_message(graph, account, subscriber, template):
    first = send_whatsapp(project=account.project, subscriber=subscriber, actor=ACTOR, template=template,
                          components=params("a", "b"), idempotency_key="otp-1")  # fmt: skip
    again = send_whatsapp(project=account.project, subscriber=subscriber, actor=ACTOR, template=template,
                          components=params("a", "b"), idempotency_key="otp-1")  # fmt: skip
    assert first.pk == again.pk and Message.objects.count() == 1


def test_permanent_error_fails_with_metas_explanation(graph, account, subscriber, template):
    graph.answer = error_answer(132000)
    message = queue(account, subscriber, template, "a", "b")
    assert deliver(message.pk) == MessageStatus.FAILED
    message.refresh_from_db()
    assert message.error_code == 132000 and message.error_details == "details of 132000"
    assert "number of template parameters" in message.reason


def make_due(message):
    Message.objects.filter(pk=message.pk).update(send_after=timezone.now() - timedelta(seconds=1))


def test_transient_error_requeues_with_backoff_and_is_sent_when_due(graph, account, subscriber, template):
    graph.answer = error_answer(131000, status=500)
    message = queue(account, subscriber, template, "a", "b")
    assert deliver(message.pk) == MessageStatus.QUEUED
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED and message.attempts == 1
    assert message.send_after > timezone.now() and message.error_code == 131000
    assert deliver(message.pk) == "not-queued"  # not before its backoff
    graph.answer = ok_answer
    make_due(message)
    assert deliver(message.pk) == MessageStatus.SENT
    assert len(graph.calls) == 2


def test_account_error_stops_the_account_and_keeps_the_message(graph, account, subscriber, template):
    graph.answer = error_answer(190, status=401, message="Access token expired")
    message = queue(account, subscriber, template, "a", "b")
    assert deliver(message.pk) == MessageStatus.QUEUED
    account.refresh_from_db()
    assert account.status == AccountStatus.SUSPENDED and "token expired" in account.status_reason
    with pytest.raises(SendRefused, match="Sending is stopped"):
        queue(account, subscriber, template, "a", "b")


def test_network_error_after_post_is_unknown_never_resent(graph, account, subscriber, template):
    graph.raise_exc = requests.ReadTimeout("read timed out")
    message = queue(account, subscriber, template, "a", "b")
    assert deliver(message.pk) == MessageStatus.UNKNOWN
    assert deliver(message.pk) == "not-queued"
    assert len(graph.calls) == 1


def test_connection_refused_is_retried(graph, account, subscriber, template):
    graph.raise_exc = requests.ConnectionError("refused")
    message = queue(account, subscriber, template, "a", "b")
    assert deliver(message.pk) == MessageStatus.QUEUED
    assert Message.objects.get().status == MessageStatus.QUEUED


def test_sweeper_turns_stuck_sending_into_unknown(account, subscriber, template, graph):
    message = queue(account, subscriber, template, "a", "b")
    Message.objects.filter(pk=message.pk).update(
        status="sending", sending_at=timezone.now() - timedelta(hours=1)
    )
    assert sweep_stuck() == 1
    assert Message.objects.get().status == MessageStatus.UNKNOWN


def test_no_account_means_a_clear_refusal(db, subscriber):
    WhatsAppAccount.objects.all().delete()
    with pytest.raises(SendRefused, match="No WhatsApp account"):
        send_whatsapp(project=subscriber.project, subscriber=subscriber, actor=ACTOR, text="x")


def test_text_to_an_opted_out_subscriber_only_after_they_wrote_again(graph, account, subscriber):
    now = timezone.now()
    subscriber.whatsapp_consent, subscriber.whatsapp_consent_at = (
        ConsentState.OPTED_OUT,
        now - timedelta(hours=1),
    )
    subscriber.last_inbound_at = now - timedelta(hours=2)  # their STOP
    subscriber.save()
    with pytest.raises(SendRefused, match="opted out"):
        send_whatsapp(project=account.project, subscriber=subscriber, actor=ACTOR, text="Sorry to see you go")
    subscriber.last_inbound_at = now - timedelta(minutes=5)  # then they wrote "HILFE"
    subscriber.save()
    assert send_whatsapp(project=account.project, subscriber=subscriber, actor=ACTOR, text="How can we help?")


def test_resuming_an_account_kicks_the_dispatcher_and_the_waiting_message_goes(
    graph, account, subscriber, template, monkeypatch, django_capture_on_commit_callbacks
):
    from campaigns import actors
    from campaigns.sending import dispatch
    from whatsapp.services import resume_sending

    graph.answer = error_answer(190, status=401, message="Access token expired")
    message = queue(account, subscriber, template, "a", "b")
    deliver(message.pk)
    assert dispatch() == 0  # a stopped account's rows wait
    kicked, sent = [], []
    monkeypatch.setattr(actors.dispatch_messages, "send", lambda: kicked.append(1))
    monkeypatch.setattr(actors.send_messages, "send", lambda ids, lease: sent.append((ids, lease)))
    account.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        resume_sending(account=account, actor=ACTOR)
    assert kicked == [1]
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch() == 1
    [(ids, lease)] = sent
    assert ids == [message.pk]
    graph.answer = ok_answer
    from campaigns.sending import send_batch

    assert send_batch(ids, lease) == {"sent": 1}
