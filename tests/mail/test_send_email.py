"""mail.services.send_email: refusals, the outbox row, idempotency, the kick after commit."""

from __future__ import annotations

import pytest
from django.utils import timezone

from campaigns import channel_sending
from campaigns.models import Channel, Message, MessageStatus
from campaigns.services import SendRefused
from controlpanel.services import SYSTEM
from mail import services, tracking
from subscribers.models import ConsentState
from tests.factories import EmailTemplateFactory, ProjectFactory, SubscriberFactory


@pytest.fixture
def kicks(monkeypatch):
    calls = []
    monkeypatch.setattr(channel_sending, "kick", lambda: calls.append(1))
    return calls


def _subscriber(project, **fields):
    defaults = {"email": "ann@example.com", "name": "Ann", "email_consent": ConsentState.OPTED_IN}
    return SubscriberFactory(project=project, **{**defaults, **fields})


def _send(project, subscriber, template, **kwargs):
    return services.send_email(
        project=project, subscriber=subscriber, template=template, actor=SYSTEM, **kwargs
    )


@pytest.mark.parametrize(
    ("fields", "marketing", "words"),
    [
        ({"email": ""}, False, "has no email address"),
        ({"email_undeliverable_at": timezone.now()}, False, "undeliverable"),
        ({"email_consent": ConsentState.OPTED_OUT}, False, "opted out of email"),
        ({"email_consent": ConsentState.UNKNOWN}, True, "needs email opt-in"),
    ],
)
def test_refusals_write_nothing(project, kicks, fields, marketing, words):
    subscriber = _subscriber(project, **fields)
    template = EmailTemplateFactory(project=project, marketing=marketing)
    with pytest.raises(SendRefused, match=words):
        _send(project, subscriber, template)
    assert not Message.objects.exists()
    assert kicks == []


def test_transactional_needs_no_opt_in(project, kicks, django_capture_on_commit_callbacks):
    subscriber = _subscriber(project, email_consent=ConsentState.UNKNOWN)
    template = EmailTemplateFactory(project=project, marketing=False, html="<p>Receipt</p>")
    with django_capture_on_commit_callbacks(execute=True):
        message = _send(project, subscriber, template)
    assert message.channel == Channel.EMAIL and message.marketing is False
    assert kicks == [1]


def test_the_row_carries_the_rendered_content(
    project, kicks, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(
        tracking, "unsubscribe_url", lambda message: f"https://t.example/u/{message.public_id}/"
    )
    subscriber = _subscriber(project, name="Ann <A>")
    template = EmailTemplateFactory(
        project=project,
        subject="Order {{ values.order }} for {{ subscriber.name }}",
        preheader="pre",
        html='<p>{{ subscriber.name }}</p><a href="{{ unsubscribe_url }}">u</a>',
        text="Hi {{ subscriber.name }}",
    )
    with django_capture_on_commit_callbacks(execute=True):
        message = _send(
            project, subscriber, template, values={"order": "7"}, origin={"journey": "j", "step": "s"}
        )
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED
    assert message.template_name == template.name and message.marketing is True
    assert message.values == {"order": "7"}
    assert message.content == {
        "subject": "Order 7 for Ann <A>",
        "preheader": "pre",
        "html": f'<p>Ann &lt;A&gt;</p><a href="https://t.example/u/{message.public_id}/">u</a>',
        "text": "Hi Ann <A>",
        "template": str(template.public_id),
        "origin": {"journey": "j", "step": "s"},
    }
    assert message.history[0]["status"] == "queued" and "system" in message.history[0]["note"]
    assert kicks == [1]


def test_a_given_context_is_used_as_is(project, kicks):
    subscriber = _subscriber(project)
    template = EmailTemplateFactory(project=project, subject="Total {{ event.total }}")
    context = {"subscriber": {}, "tags": {}, "values": {}, "event": {"total": 42}}
    message = _send(project, subscriber, template, context=context)
    assert message.content["subject"] == "Total 42"


def test_the_same_idempotency_key_returns_the_same_message(project, kicks):
    subscriber = _subscriber(project)
    template = EmailTemplateFactory(project=project)
    first = _send(project, subscriber, template, idempotency_key="journey:1:a")
    again = _send(project, subscriber, template, idempotency_key="journey:1:a")
    assert again.pk == first.pk
    assert Message.objects.count() == 1


def test_a_subscriber_or_template_of_another_project_is_refused(project, kicks):
    other = ProjectFactory()
    with pytest.raises(SendRefused, match="another project"):
        _send(project, _subscriber(other), EmailTemplateFactory(project=project))
    with pytest.raises(SendRefused, match="another project"):
        _send(project, _subscriber(project), EmailTemplateFactory(project=other))
    assert not Message.objects.exists()


def test_a_render_failure_refuses(project, kicks):
    template = EmailTemplateFactory(project=project, subject="{{ tags.nickname }}")
    with pytest.raises(SendRefused, match="subject is empty"):
        _send(project, _subscriber(project), template)
    assert not Message.objects.exists()
