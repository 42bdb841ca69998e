"""The seeded demo project holds what the product's own writers would have written."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db.models import Max, Min

from campaigns.conversations import conversation_page
from controlpanel.models import Project
from subscribers.models import ConsentChange, ConsentState, Event, Subscriber


@pytest.fixture
def demo(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("bootstrap_demo", url="http://127.0.0.1:8123/")
    return Project.objects.get(slug="demo")


def test_last_inbound_time_is_the_latest_received_message(demo):
    people = Subscriber.objects.for_project(demo)
    received = dict(
        Event.objects.for_project(demo)
        .filter(name="WhatsAppReceived")
        .values("subscriber")
        .annotate(last=Max("occurred_at"))
        .values_list("subscriber", "last")
    )
    wrote = dict(people.filter(last_inbound_at__isnull=False).values_list("pk", "last_inbound_at"))
    assert wrote, "the demo has people who wrote in"
    assert received == wrote  # everyone with a last inbound time has the message, nobody else has one


def test_conversations_show_the_people_who_wrote(demo):
    wrote = Subscriber.objects.for_project(demo).filter(last_inbound_at__isnull=False).count()
    rows = conversation_page(project=demo, size=300).rows
    assert len(rows) == wrote
    assert all(row.snippet for row in rows)


def test_consent_on_the_subscriber_matches_the_ledger(demo):
    people = Subscriber.objects.for_project(demo)
    assert people.filter(whatsapp_consent=ConsentState.OPTED_IN).exists()
    for person in people:
        latest = ConsentChange.objects.for_project(demo).filter(subscriber=person, channel="whatsapp").first()
        if person.whatsapp_consent == ConsentState.UNKNOWN:
            assert latest is None and person.whatsapp_consent_at is None
        else:
            assert (latest.state, latest.created_at) == (person.whatsapp_consent, person.whatsapp_consent_at)


def test_nobody_acts_before_signing_up(demo):
    firsts = Event.objects.for_project(demo).values("subscriber").annotate(first=Min("occurred_at"))
    joined = dict(Subscriber.objects.for_project(demo).values_list("pk", "created_at"))
    assert all(joined[row["subscriber"]] <= row["first"] for row in firsts)
    consents = ConsentChange.objects.for_project(demo).values_list("subscriber", "created_at")
    assert all(joined[subscriber] <= at for subscriber, at in consents)
