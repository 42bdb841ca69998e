"""Email and push on the subscriber through the API: the JSON, opt-in/opt-out per channel, and
email consent on create, upsert and bulk (an opt-in needs evidence, like WhatsApp's)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from subscribers.models import ConsentChange, Device, Event, Subscriber
from tests.factories import SubscriberFactory
from tests.subscribers.test_api_subscribers import ApiClient, key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, project):
    return ApiClient(client, key_for(project))


def ledger(subscriber):
    return list(
        ConsentChange.objects.filter(subscriber=subscriber)
        .order_by("id")
        .values_list("channel", "state", "source", "evidence")
    )


def test_the_subscriber_json_shows_every_channel(api, project):
    bounced = timezone.now() - timedelta(days=1)
    s = SubscriberFactory(
        project=project,
        email="ada@example.com",
        email_consent="opted_in",
        email_consent_at=bounced - timedelta(days=3),
        email_undeliverable_at=bounced,
        email_undeliverable_reason="550 mailbox unknown",
        push_consent="opted_out",
    )
    Device.objects.create(project=project, subscriber=s, token="a", platform="android")
    Device.objects.create(project=project, subscriber=s, token="b", platform="ios", removed_at=bounced)
    Device.objects.create(project=project, subscriber=s, token="c", platform="web", push_enabled=False)

    body = api.get(f"/subscribers/{s.public_id}").json()

    assert body["email_consent"] == "opted_in"
    assert body["email_consent_at"] is not None
    assert body["email_undeliverable"]["reason"] == "550 mailbox unknown"
    assert body["email_undeliverable"]["at"].startswith(bounced.date().isoformat())
    assert (body["push_consent"], body["push_consent_at"]) == ("opted_out", None)
    assert body["devices"] == 1  # removed and notifications-off devices do not count


def test_a_deliverable_address_is_null_not_an_empty_object(api, project):
    s = SubscriberFactory(project=project, email="ada@example.com")
    assert api.get(f"/subscribers/{s.public_id}").json()["email_undeliverable"] is None


@pytest.mark.parametrize("where", ["body", "query"])
def test_opt_in_and_out_of_email_by_channel(api, project, where):
    s = SubscriberFactory(project=project, whatsapp_consent="unknown")
    path = f"/subscribers/{s.public_id}/opt-in"
    body = {"evidence": "Newsletter box ticked"}
    if where == "body":
        response = api.post(path, {**body, "channel": "email"})
    else:
        response = api.post(f"{path}?channel=email", body)
    assert response.status_code == 200, response.content
    assert (response.json()["email_consent"], response.json()["whatsapp_consent"]) == ("opted_in", "unknown")

    out = api.post(f"/subscribers/{s.public_id}/opt-out?channel=email")
    assert out.json()["email_consent"] == "opted_out"
    assert ledger(s) == [
        ("email", "opted_in", "api", "Newsletter box ticked"),
        ("email", "opted_out", "api", ""),
    ]
    unsubscribed = Event.objects.get(subscriber=s, name="Unsubscribed")
    assert unsubscribed.attributes["channel"] == "email"


def test_opt_out_of_push(api, project):
    s = SubscriberFactory(project=project)
    response = api.post(
        f"/subscribers/{s.public_id}/opt-out", {"channel": "push", "evidence": "app settings"}
    )
    assert response.json()["push_consent"] == "opted_out"
    assert ledger(s) == [("push", "opted_out", "api", "app settings")]


def test_without_a_channel_it_is_whatsapp_as_before(api, project):
    s = SubscriberFactory(project=project, whatsapp_consent="unknown")
    response = api.post(f"/subscribers/{s.public_id}/opt-in", {"evidence": "Web form"})
    assert (response.json()["whatsapp_consent"], response.json()["email_consent"]) == ("opted_in", "unknown")
    assert ledger(s) == [("whatsapp", "opted_in", "api", "Web form")]


def test_opt_in_to_email_without_evidence_is_refused(api, project):
    s = SubscriberFactory(project=project)
    response = api.post(f"/subscribers/{s.public_id}/opt-in?channel=email", {"evidence": " "})
    assert response.status_code == 422
    assert response.json()["field"] == "evidence"
    assert ledger(s) == []


def test_an_unknown_or_contradicting_channel_is_a_422(api, project):
    s = SubscriberFactory(project=project)
    assert api.post(f"/subscribers/{s.public_id}/opt-out?channel=sms").status_code == 422
    response = api.post(f"/subscribers/{s.public_id}/opt-out?channel=email", {"channel": "push"})
    assert response.status_code == 422
    assert response.json()["field"] == "channel"
    assert ledger(s) == []


def test_create_with_email_consent_writes_the_ledger(api, project):
    response = api.post(
        "/subscribers",
        {
            "phone": "+4915112345678",
            "email": "ada@example.com",
            "email_consent": {"state": "opted_in", "evidence": "Checkout box"},
        },
    )
    assert response.status_code == 201, response.content
    assert response.json()["email_consent"] == "opted_in"
    s = Subscriber.objects.get(project=project)
    assert s.email_consent_at is not None
    assert ledger(s) == [("email", "opted_in", "api", "Checkout box")]

    again = api.post(
        "/subscribers",
        {"phone": "+4915112345678", "email_consent": {"state": "opted_in", "evidence": "Checkout box"}},
    )
    assert again.json()["status"] == "unchanged"
    out = api.post("/subscribers", {"phone": "+4915112345678", "email_consent": {"state": "opted_out"}})
    assert (out.json()["status"], out.json()["email_consent"]) == ("updated", "opted_out")
    assert [row[1] for row in ledger(s)] == ["opted_in", "opted_out"]
    assert Event.objects.filter(subscriber=s, name="Unsubscribed", attributes__channel="email").count() == 1


def test_an_email_opt_in_without_evidence_is_refused_with_nothing_written(api, project):
    response = api.post("/subscribers", {"phone": "+4915112345678", "email_consent": {"state": "opted_in"}})
    assert response.status_code == 422
    assert response.json()["field"] == "email_consent.evidence"
    assert not Subscriber.objects.filter(project=project).exists()


def test_bulk_applies_email_consent_per_item(api, project):
    SubscriberFactory(project=project, phone="+4915112345679")
    response = api.post(
        "/subscribers/bulk",
        {
            "subscribers": [
                {"phone": "+4915112345678", "email_consent": {"state": "opted_in", "evidence": "Form"}},
                {"phone": "+4915112345679", "email_consent": {"state": "opted_out"}},
                {"phone": "+4915112345670", "email_consent": {"state": "opted_in"}},
                {"phone": "+4915112345671", "email_consent": {"state": "maybe"}},
            ]
        },
    )
    results = response.json()["results"]
    assert [r.get("status") for r in results] == ["created", "updated", None, None]
    assert results[2]["error"]["field"] == "email_consent.evidence"
    assert results[3]["error"]["code"] == "validation_error"
    states = dict(Subscriber.objects.filter(project=project).values_list("phone", "email_consent"))
    assert states == {"+4915112345678": "opted_in", "+4915112345679": "opted_out"}
    assert sorted(ConsentChange.objects.filter(project=project).values_list("channel", "state")) == [
        ("email", "opted_in"),
        ("email", "opted_out"),
    ]
