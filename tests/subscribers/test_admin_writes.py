"""The Django admin writes subscribers through the services: consent via the ledger, delete = GDPR erase."""

from __future__ import annotations

import pytest
from django.urls import reverse

from controlpanel.models import AuditEntry, User
from subscribers.models import ConsentChange, ConsentState, Event, Subscriber
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    client.force_login(User.objects.create_superuser(email="ops@example.com", password="pw-for-tests-123"))
    return client


def _change(operator, subscriber, **fields):
    data = {"name": subscriber.name, "email": "", "language": "", "country": "", "time_zone": ""}
    data.update(fields)
    url = reverse("admin:subscribers_subscriber_change", args=[subscriber.pk])
    return operator.post(url, data)


def test_opting_out_in_the_admin_writes_the_ledger_and_the_event(operator, project):
    subscriber = SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_IN)
    response = _change(operator, subscriber, consent="opted_out", consent_evidence="called support")
    assert response.status_code == 302, response.content.decode()[:2000]
    subscriber.refresh_from_db()
    assert subscriber.whatsapp_consent == ConsentState.OPTED_OUT
    change = ConsentChange.objects.get(subscriber=subscriber)
    assert (change.state, change.evidence, change.actor_user.email) == (
        "opted_out",
        "called support",
        "ops@example.com",
    )
    assert Event.objects.filter(subscriber=subscriber, name="Unsubscribed").exists()


def test_opting_in_without_evidence_and_a_bad_profile_are_refused(operator, project):
    subscriber = SubscriberFactory(project=project)
    response = _change(operator, subscriber, consent="opted_in", country="D1")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Opting in needs evidence" in html
    assert "two-letter code" in html
    assert not ConsentChange.objects.exists()


def test_consent_and_identity_cannot_be_edited_directly(operator, project):
    subscriber = SubscriberFactory(
        project=project, phone="+4915112345678", whatsapp_consent=ConsentState.OPTED_OUT
    )
    _change(operator, subscriber, whatsapp_consent="opted_in", phone="+4915100000000", name="Ada")
    subscriber.refresh_from_db()
    assert (subscriber.name, subscriber.phone) == ("Ada", "+4915112345678")
    assert subscriber.whatsapp_consent != ConsentState.OPTED_IN
    assert operator.get(reverse("admin:subscribers_subscriber_add")).status_code == 403


def test_deleting_in_the_admin_is_the_gdpr_erasure(operator, project):
    doomed = SubscriberFactory.create_batch(2, project=project)
    url = reverse("admin:subscribers_subscriber_changelist")
    response = operator.post(
        url, {"action": "delete_selected", "_selected_action": [s.pk for s in doomed], "post": "yes"}
    )
    assert response.status_code == 302
    assert not Subscriber.objects.filter(pk__in=[s.pk for s in doomed]).exists()
    assert AuditEntry.objects.filter(project=project, action="subscriber.erased").count() == 2
    one = SubscriberFactory(project=project)
    operator.post(reverse("admin:subscribers_subscriber_delete", args=[one.pk]), {"post": "yes"})
    assert AuditEntry.objects.filter(project=project, action="subscriber.erased").count() == 3
