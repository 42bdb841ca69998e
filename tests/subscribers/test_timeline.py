"""The subscriber timeline reads in words: a message's statuses grouped on one line, no raw wamids."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from controlpanel.models import Role
from subscribers import services
from subscribers.models import Event
from subscribers.timeline import entries
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

WAMID = "wamid.HBgLNDkxNTExMjM0NTY3FQIAERgSQjE4RkE0NUY2QjI1QzNBMDgA"


def _status(subscriber, name, minutes, **attributes):
    return services.record_event(
        project=subscriber.project,
        subscriber=subscriber,
        name=name,
        attributes={"message_id": WAMID, "template": "order_update", **attributes},
        occurred_at=timezone.now() - timedelta(minutes=60 - minutes),
    )


def test_statuses_of_one_message_are_one_entry_with_steps(project):
    subscriber = SubscriberFactory(project=project)
    _status(subscriber, "WhatsAppDelivered", 1)
    _status(subscriber, "WhatsAppRead", 5)
    services.record_event(
        project=project,
        subscriber=subscriber,
        name="WhatsAppReceived",
        attributes={"text": "Danke!", "type": "text", "message_id": "wamid.in"},
        occurred_at=timezone.now() - timedelta(minutes=50),
    )
    events = Event.objects.filter(subscriber=subscriber).order_by("-occurred_at")
    [reply, message] = entries(events)
    assert (reply.title, reply.detail) == ("Wrote on WhatsApp", "Danke!")
    assert message.title == "WhatsApp template order_update"
    assert [s.label for s in message.steps] == ["Delivered", "Read"]
    assert message.occurred_at == events[1].occurred_at  # the newest status's place


def test_a_failure_says_why_and_unknown_events_keep_their_attributes(project):
    subscriber = SubscriberFactory(project=project)
    _status(subscriber, "WhatsAppFailed", 1, error_code=131026, error_title="Message undeliverable")
    services.record_event(project=project, subscriber=subscriber, name="OrderPlaced", attributes={"n": 3})
    events = Event.objects.filter(subscriber=subscriber).order_by("-occurred_at")
    [order, failed] = entries(events)
    assert (order.title, order.attributes) == ("OrderPlaced", {"n": 3})
    assert failed.detail == "Failed: (131026) Message undeliverable"
    assert [(s.label, s.tone) for s in failed.steps] == [("Failed", "danger")]


def test_subscriber_page_shows_words_not_wamids(client, member_of, project):
    client.force_login(member_of(Role.VIEWER))
    subscriber = SubscriberFactory(project=project)
    _status(subscriber, "WhatsAppDelivered", 1)
    _status(subscriber, "WhatsAppRead", 2)
    html = client.get(
        reverse("subscribers:detail", args=[project.slug, subscriber.public_id])
    ).content.decode()
    assert "WhatsApp template order_update" in html
    assert WAMID not in html
    assert len(re.findall(r'data-testid="timeline-entry"', html)) == 1
    assert re.findall(r'data-testid="timeline-step">(\w+)', html) == ["Delivered", "Read"]


def test_consent_events_say_where_they_came_from_in_words(project):
    subscriber = SubscriberFactory(project=project)
    services.record_event(
        project=project, subscriber=subscriber, name="Subscribed", attributes={"source": "whatsapp"}
    )
    services.record_event(
        project=project,
        subscriber=subscriber,
        name="Unsubscribed",
        attributes={"channel": "whatsapp", "source": "import"},
        occurred_at=timezone.now() + timedelta(seconds=1),
    )
    events = Event.objects.filter(subscriber=subscriber).order_by("-occurred_at")
    assert [(e.title, e.detail) for e in entries(events)] == [
        ("Opted out of WhatsApp", "via a CSV import"),
        ("Subscribed", "via a WhatsApp message"),
    ]
