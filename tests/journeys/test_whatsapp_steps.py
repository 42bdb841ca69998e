"""WhatsApp steps: one outbox row per run and step, refusals visible, buttons branch, window kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Message, MessageKind, SendingPolicy
from journeys.steps import CheckContext, Go, Wait
from journeys.steps import get as step_type
from journeys.steps.whatsapp import CAPPED
from subscribers.models import ConsentState, Subscriber
from tests.factories import SubscriberFactory
from tests.journeys.helpers import make_account, make_journey, make_run, make_template, visit

pytestmark = pytest.mark.django_db

MENU = {
    "id": "menu",
    "type": "whatsapp_template",
    "template": {"name": "support_menu", "language": "de"},
    "bindings": {"body.1": "{{ subscriber.name }}", "body.2": "{{ event.code | upcase }}"},
    "buttons": {"Support": "support", "Angebote": None},
    "button_timeout": "PT2H",
    "next": None,
}
SUPPORT = {"id": "support", "type": "exit"}
ENTRY_EVENT = {"id": 7, "name": "CodeRequested", "attributes": {"code": "sushi20"}}


@pytest.fixture
def account(project):
    return make_account(project)


@pytest.fixture
def template(account):
    return make_template(account)


@pytest.fixture
def sub(project):
    return SubscriberFactory(project=project, name="Anna", whatsapp_consent=ConsentState.OPTED_IN)


def test_template_is_rendered_and_queued_once_per_run_and_step(project, template, sub):
    now = timezone.now()
    journey = make_journey(project, [{**MENU, "buttons": None}])
    run = make_run(journey, sub, now=now, context={"event": ENTRY_EVENT})
    v = visit(run, "menu", now=now)
    assert step_type("whatsapp_template").run(v) == Go("next")
    message = Message.objects.get()
    assert message.idempotency_key == f"journey:{run.public_id}:menu"
    assert message.kind == MessageKind.TEMPLATE and message.marketing
    assert message.components[0]["parameters"] == [
        {"type": "text", "text": "Anna"},
        {"type": "text", "text": "SUSHI20"},
    ]
    assert message.body == "Hallo Anna, dein Code: SUSHI20"
    assert v.record.message_id == message.pk
    assert v.record.detail["outcome"] == "sent" and v.stats == {("menu", "sent"): 1}

    # Called again (a retry after a crash): the visit row says it was sent; nothing new.
    again = visit(run, "menu", now=now)
    assert step_type("whatsapp_template").run(again) == Go("next")
    # Even a visit row that lost its detail cannot send twice: the idempotency key finds the row.
    again.record.detail = {}
    again.record.save()
    third = visit(run, "menu", now=now)
    step_type("whatsapp_template").run(third)
    assert Message.objects.count() == 1 and third.record.message_id == message.pk
    assert third.stats == {} and third.record.detail["outcome"] == "sent"  # not counted twice


def test_a_refusal_is_skipped_with_its_reason_and_the_run_goes_on(project, template):
    now = timezone.now()
    opted_out = SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_OUT)
    journey = make_journey(project, [MENU, SUPPORT])
    v = visit(make_run(journey, opted_out, now=now, context={"event": ENTRY_EVENT}), "menu", now=now)
    assert step_type("whatsapp_template").run(v) == Go("next")
    assert not Message.objects.exists()
    assert v.record.detail["outcome"] == "skipped"
    assert "opt" in v.record.detail["reason"]
    assert v.stats == {("menu", "skipped"): 1}


def test_an_empty_binding_skips_with_the_campaigns_words(project, template, sub):
    now = timezone.now()
    journey = make_journey(
        project, [{**MENU, "bindings": {"body.1": "{{ tags.nickname }}", "body.2": "x"}}, SUPPORT]
    )
    v = visit(make_run(journey, sub, now=now), "menu", now=now)
    step_type("whatsapp_template").run(v)
    assert not Message.objects.exists()
    assert "is empty for this subscriber" in v.record.detail["reason"]


def test_marketing_respects_the_frequency_cap(project, template, sub):
    now = timezone.now()
    SendingPolicy.objects.create(project=project, cap_messages=1, cap_days=7)
    Message.objects.create(
        project=project, subscriber=sub, marketing=True, status="delivered", sent_at=now - timedelta(days=1)
    )
    journey = make_journey(project, [MENU, SUPPORT])
    v = visit(make_run(journey, sub, now=now, context={"event": ENTRY_EVENT}), "menu", now=now)
    assert step_type("whatsapp_template").run(v) == Go("next")
    assert Message.objects.count() == 1
    assert v.record.detail == {"outcome": "skipped", "reason": CAPPED, **_rendered()}


def _rendered():
    return {"template": "support_menu", "language": "de", "body": "Hallo Anna, dein Code: SUSHI20"}


def test_buttons_wait_and_branch_only_on_a_reply_to_this_message(project, template, sub):
    now = timezone.now()
    journey = make_journey(project, [MENU, SUPPORT])
    run = make_run(journey, sub, now=now, context={"event": ENTRY_EVENT})
    outcome = step_type("whatsapp_template").run(visit(run, "menu", now=now))
    assert outcome == Wait(
        now + timedelta(hours=2), ("WhatsAppReceived", "WhatsAppButtonClicked", "WhatsAppFailed")
    )
    Message.objects.update(wamid="wamid.MENU")

    def woken(attributes, at, name="WhatsAppReceived"):
        event = {"id": 99, "name": name, "attributes": attributes, "occurred_at": at.isoformat()}
        return step_type("whatsapp_template").run(visit(run, "menu", now=at, event=event))

    later = now + timedelta(minutes=5)
    # A button of another message, and plain text: keep waiting, same deadline.
    assert woken({"button_text": "Support", "context_message_id": "wamid.OLD"}, later) == outcome
    assert woken({"text": "hallo"}, later) == outcome
    assert woken({"button_text": "SUPPORT", "context_message_id": "wamid.MENU"}, later) == Go(
        "button:Support"
    )
    assert woken(
        {"button_payload": "angebote", "message_id": "wamid.MENU"}, later, "WhatsAppButtonClicked"
    ) == Go("button:Angebote")
    timer = step_type("whatsapp_template").run(visit(run, "menu", now=now + timedelta(hours=2), timer=True))
    assert timer == Go("next")
    assert Message.objects.count() == 1


def test_buttons_stop_waiting_when_the_message_itself_failed(project, template, sub):
    """A message that never arrived gets no reply: the run takes the no-button path at once,
    not a day later; another message's failure changes nothing."""
    now = timezone.now()
    journey = make_journey(project, [MENU, SUPPORT])
    run = make_run(journey, sub, now=now, context={"event": ENTRY_EVENT})
    outcome = step_type("whatsapp_template").run(visit(run, "menu", now=now))
    assert isinstance(outcome, Wait) and "WhatsAppFailed" in outcome.events
    message = Message.objects.get()

    def failed(attributes):
        event = {"id": 99, "name": "WhatsAppFailed", "attributes": attributes, "occurred_at": now.isoformat()}
        return step_type("whatsapp_template").run(
            visit(run, "menu", now=now + timedelta(minutes=1), event=event)
        )

    assert failed({"message_id": "wamid.OTHER", "error_code": 131026}) == outcome
    assert failed({"message": "00000000-0000-0000-0000-000000000000"}) == outcome
    # Refused at POST (no wamid): named by our public id.
    assert failed({"message": str(message.public_id), "error_code": 131026}) == Go("next")
    Message.objects.update(wamid="wamid.MENU")
    # Failed later, reported by a status webhook: named by its wamid.
    assert failed({"message_id": "wamid.MENU", "error_code": 131026}) == Go("next")


def test_dry_run_renders_and_sends_nothing(project, template, sub):
    now = timezone.now()
    journey = make_journey(project, [MENU, SUPPORT])
    run = make_run(journey, sub, now=now, context={"event": ENTRY_EVENT}, dry_run=True)
    v = visit(run, "menu", now=now, dry_run=True)
    assert isinstance(step_type("whatsapp_template").run(v), Wait)
    assert not Message.objects.exists() and v.stats == {}
    assert v.record.detail["outcome"] == "would_send"
    assert v.record.detail["body"] == "Hallo Anna, dein Code: SUSHI20"
    # A dry run's button is fired by hand: there is no real message to reply to.
    event = {"id": 0, "name": "WhatsAppReceived", "attributes": {"button_text": "Support"}}
    assert step_type("whatsapp_template").run(visit(run, "menu", now=now, event=event, dry_run=True)) == Go(
        "button:Support"
    )


def test_template_check_names_template_bindings_and_buttons(project, account):
    make_template(account, status="PENDING")
    kind = step_type("whatsapp_template")
    strict = CheckContext(project=project, definition={}, strict=True)
    problems = {(p.field, p.message) for p in kind.check({**MENU, "buttons": {"Nope": None}}, strict)}
    assert ("template", "Template support_menu (de) is pending review.") in problems  # the label
    assert any(f == "buttons.Nope" and "Support, Angebote" in m for f, m in problems)
    missing = {**MENU, "template": {"name": "nope", "language": "de"}}
    assert [p.message for p in kind.check(missing, strict)] == ["There is no template nope (de)."]
    assert kind.check(missing, CheckContext(project=project, definition={}, strict=False)) == []
    bad = kind.check({**MENU, "bindings": {"body.1": "{{ customer.name }}"}}, CheckContext(None, {}))
    assert bad and "customer" in bad[0].message
    unbound = kind.check({**MENU, "bindings": {"body.1": "x"}}, strict)
    assert any("body {{2}}" in p.message for p in unbound)
    draft = CheckContext(project=project, definition={}, strict=False)
    assert kind.check({**MENU, "bindings": {"body.1": "x"}}, draft) == []
    assert kind.outlets(MENU) == {"next": None, "button:Support": "support", "button:Angebote": None}


# --- whatsapp_text ---------------------------------------------------------------------------

REPLY = {
    "id": "reply",
    "type": "whatsapp_text",
    "text": "Danke {{ subscriber.name }}! Code: {{ event.code }}",
}


def test_text_goes_inside_the_window(project, account, sub):
    now = timezone.now()
    Subscriber.objects.filter(pk=sub.pk).update(last_inbound_at=now - timedelta(hours=23))
    journey = make_journey(project, [REPLY])
    v = visit(make_run(journey, sub, now=now, context={"event": ENTRY_EVENT}), "reply", now=now)
    assert step_type("whatsapp_text").run(v) == Go("next")
    message = Message.objects.get()
    assert message.kind == MessageKind.TEXT and message.body == "Danke Anna! Code: sushi20"
    assert v.stats == {("reply", "sent"): 1}


def test_text_outside_the_window_takes_its_branch_without_sending(project, account, sub):
    now = timezone.now()
    Subscriber.objects.filter(pk=sub.pk).update(last_inbound_at=now - timedelta(hours=25))
    journey = make_journey(
        project, [{**REPLY, "outside_window": "fallback"}, {"id": "fallback", "type": "exit"}]
    )
    v = visit(make_run(journey, sub, now=now), "reply", now=now)
    assert step_type("whatsapp_text").run(v) == Go("outside_window")
    assert not Message.objects.exists() and v.record.detail == {"outcome": "outside_window"}


def test_keyword_reply_goes_although_the_subscriber_was_loaded_before_the_inbound_commit(
    project, account, sub
):
    now = timezone.now()
    journey = make_journey(project, [REPLY])
    received = {"id": 8, "name": "WhatsAppReceived", "attributes": {"text": "PROMO", "code": "x"}}
    v = visit(make_run(journey, sub, now=now, context={"event": received}), "reply", now=now)
    assert v.subscriber.last_inbound_at is None  # as loaded
    Subscriber.objects.filter(pk=sub.pk).update(
        last_inbound_at=now - timedelta(seconds=1)
    )  # the inbound commit
    assert step_type("whatsapp_text").run(v) == Go("next")
    assert Message.objects.get().body == "Danke Anna! Code: x"


def test_text_dry_run_counts_its_entry_message_as_the_inbound_one(project, account, sub):
    clock = timezone.now() + timedelta(days=30)
    journey = make_journey(project, [REPLY])
    received = {
        "id": 0,
        "name": "WhatsAppReceived",
        "attributes": {"text": "promo", "code": "A1"},
        "occurred_at": clock.isoformat(),
    }
    run = make_run(journey, sub, now=clock, context={"event": received}, dry_run=True)
    v = visit(run, "reply", now=clock, dry_run=True)
    assert step_type("whatsapp_text").run(v) == Go("next")
    assert v.record.detail == {"outcome": "would_send", "body": "Danke Anna! Code: A1"}
    assert not Message.objects.exists()


def test_text_check():
    kind = step_type("whatsapp_text")
    ctx = CheckContext(None, {})
    assert kind.check(REPLY, ctx) == []
    assert kind.check({**REPLY, "text": ""}, ctx)[0].message == "Write the message."
    assert "order" in kind.check({**REPLY, "text": "{{ order.id }}"}, ctx)[0].message
    assert "Liquid" in kind.check({**REPLY, "text": "{% if %}"}, ctx)[0].message
    assert kind.check({**REPLY, "text": "x" * 4097}, ctx)[0].field == "text"
