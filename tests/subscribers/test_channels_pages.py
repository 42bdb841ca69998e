"""The subscriber page's Channels card (consent per channel, undeliverable mark, devices) with its
roles, the consent history's channel, the timeline's email and push words, the list's email
consent filter and the exports' new columns."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from controlpanel.models import AuditEntry, Role
from subscribers import devices, email_status, services
from subscribers.models import ConsentChange, Device, Event, Subscriber
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_role(client, member_of):
    """Log ``client`` in as a new member with ``role``; returns the user. Marketers change consent,
    admins also repair a channel (mark an address deliverable again, remove a device)."""

    def login(role: Role):
        user = member_of(role)
        client.force_login(user)
        return user

    return login


@pytest.fixture
def bounced(project):
    s = SubscriberFactory(
        project=project,
        email="ada@example.com",
        email_undeliverable_at=timezone.now() - timedelta(days=1),
        email_undeliverable_reason="550 mailbox unknown",
    )
    Device.objects.create(
        project=project, subscriber=s, token="tok-1", platform="android", app_version="4.2.0", language="de"
    )
    Device.objects.create(
        project=project,
        subscriber=s,
        token="tok-2",
        platform="ios",
        removed_at=timezone.now(),
        removed_reason="FCM: unregistered",
    )
    return s


def detail(s):
    return reverse("subscribers:detail", args=[s.project.slug, s.public_id])


def consent_url(s):
    return reverse("subscribers:consent", args=[s.project.slug, s.public_id])


def deliverable_url(s):
    return reverse("subscribers:email_deliverable", args=[s.project.slug, s.public_id])


def remove_url(s, device):
    return reverse("subscribers:device_remove", args=[s.project.slug, s.public_id, device.public_id])


def test_the_channels_card_shows_email_and_push(client, as_role, bounced):
    as_role(Role.ADMIN)
    html = client.get(detail(bounced)).content.decode()
    missing = [
        text
        for text in (
            'data-testid="channel-email"',
            "ada@example.com",
            "Undeliverable since",
            "(550 mailbox unknown)",
            "Mark deliverable again",
            'data-testid="channel-push"',
            "Android · app 4.2.0 · de",
            ">Active<",
            "FCM: unregistered",
            'data-testid="opt-in-form-email"',
            'data-testid="opt-out-form-push"',
        )
        if text not in html
    ]
    assert missing == []
    assert html.count('data-testid="device-remove-form"') == 1  # the removed device has no button


def test_a_marketer_opts_in_to_email_with_evidence(client, as_role, bounced):
    as_role(Role.MARKETER)
    response = client.post(
        consent_url(bounced), {"channel": "email", "state": "opted_in", "evidence": "Asked at the counter"}
    )
    assert response.status_code == 302
    assert response["Location"].endswith("#channel-email")
    bounced.refresh_from_db()
    assert (bounced.email_consent, bounced.whatsapp_consent) == ("opted_in", "opted_in")
    change = ConsentChange.objects.get(subscriber=bounced)
    assert (change.channel, change.source, change.evidence) == ("email", "panel", "Asked at the counter")
    history = client.get(detail(bounced)).content.decode()
    assert "Email · Control panel" in history


def test_an_email_opt_in_without_evidence_comes_back_on_the_email_form(client, as_role, bounced):
    as_role(Role.MARKETER)
    response = client.post(consent_url(bounced), {"channel": "email", "state": "opted_in", "evidence": ""})
    assert response.status_code == 200
    html = response.content.decode()
    email_part = html[html.index('data-testid="channel-email"') : html.index('data-testid="channel-push"')]
    assert "Opting in needs evidence" in email_part
    assert 'id="opt-in-evidence-email"' in email_part and "is-invalid" in email_part
    assert not ConsentChange.objects.filter(subscriber=bounced).exists()


def test_opting_out_of_push_records_the_event(client, as_role, bounced):
    as_role(Role.MARKETER)
    client.post(consent_url(bounced), {"channel": "push", "state": "opted_out", "evidence": "asked by phone"})
    bounced.refresh_from_db()
    assert bounced.push_consent == "opted_out"
    event = Event.objects.get(subscriber=bounced, name="Unsubscribed")
    assert event.attributes["channel"] == "push"
    timeline = client.get(detail(bounced)).content.decode()
    assert "Opted out of push" in timeline


def test_mark_deliverable_is_for_admins_and_audited(client, as_role, bounced, monkeypatch):
    calls = []

    def mark_deliverable(subscriber):
        calls.append(subscriber.pk)
        Subscriber.objects.filter(pk=subscriber.pk).update(
            email_undeliverable_at=None, email_undeliverable_reason=""
        )
        return True

    monkeypatch.setattr(email_status, "mark_deliverable", mark_deliverable)
    as_role(Role.MARKETER)
    assert "Mark deliverable again" not in client.get(detail(bounced)).content.decode()
    assert client.post(deliverable_url(bounced)).status_code == 403
    assert calls == []

    as_role(Role.ADMIN)
    response = client.post(deliverable_url(bounced))
    assert response.status_code == 302 and response["Location"].endswith("#channel-email")
    assert calls == [bounced.pk]
    entry = AuditEntry.objects.get(project=bounced.project, action="subscriber.email_deliverable")
    assert entry.object_id == str(bounced.public_id)
    assert entry.changes["reason"] == "550 mailbox unknown"
    assert "Undeliverable since" not in client.get(detail(bounced)).content.decode()


def test_removing_a_device_is_for_admins_and_audited(client, as_role, bounced, monkeypatch):
    calls = []

    def remove(*, project, tokens=(), device_ids=(), reason):
        calls.append((project.pk, list(device_ids), reason))
        return 1

    monkeypatch.setattr(devices, "remove", remove)
    active = Device.objects.get(token="tok-1")
    as_role(Role.MARKETER)
    assert client.post(remove_url(bounced, active)).status_code == 403

    admin = as_role(Role.ADMIN)
    response = client.post(remove_url(bounced, active))
    assert response.status_code == 302 and response["Location"].endswith("#channel-push")
    assert calls == [(bounced.project.pk, [active.pk], f"removed in the panel by {admin.email}")]
    assert AuditEntry.objects.filter(project=bounced.project, action="subscriber.device_removed").count() == 1


def test_channel_actions_on_another_projects_subscriber_or_device_are_404(client, as_role, project, bounced):
    as_role(Role.ADMIN)
    foreign = SubscriberFactory(email="x@example.com", email_undeliverable_at=timezone.now())
    foreign_device = Device.objects.create(
        project=foreign.project, subscriber=foreign, token="f", platform="web"
    )
    assert (
        client.post(
            reverse("subscribers:email_deliverable", args=[project.slug, foreign.public_id])
        ).status_code
        == 404
    )
    url = reverse(
        "subscribers:device_remove", args=[project.slug, bounced.public_id, foreign_device.public_id]
    )
    assert client.post(url).status_code == 404
    foreign_consent = reverse("subscribers:consent", args=[project.slug, foreign.public_id])
    assert client.post(foreign_consent, {"channel": "email", "state": "opted_out"}).status_code == 404


def test_a_viewer_sees_the_channels_without_any_form(client, viewer, bounced):
    client.force_login(viewer)
    html = client.get(detail(bounced)).content.decode()
    assert "Undeliverable since" in html and "Android" in html
    for testid in ("opt-in-form-email", "opt-out-form-push", "email-deliverable-form", "device-remove-form"):
        assert f'data-testid="{testid}"' not in html
    assert client.post(consent_url(bounced), {"channel": "email", "state": "opted_out"}).status_code == 403


def test_the_timeline_reads_email_and_push_events_in_words(client, viewer, project):
    s = SubscriberFactory(project=project)
    now = timezone.now()

    def event(name, minutes, **attributes):
        services.record_event(
            project=project,
            subscriber=s,
            name=name,
            attributes={"message": "m-1", "subject": "Spring sale", **attributes},
            occurred_at=now - timedelta(minutes=60 - minutes),
        )

    event("EmailDelivered", 1)
    event("EmailOpened", 2)
    event("EmailClicked", 3, url="https://shop.example/sale")
    services.record_event(
        project=project,
        subscriber=s,
        name="EmailBounced",
        attributes={"message": "m-2", "bounce": "hard", "reason": "550 mailbox unknown"},
        occurred_at=now - timedelta(minutes=10),
    )
    services.record_event(
        project=project, subscriber=s, name="PushOpened", attributes={"message": "p-1"}, occurred_at=now
    )
    client.force_login(viewer)
    html = client.get(detail(s)).content.decode()
    assert html.count("Email “Spring sale”") == 1  # three reports of one email: one entry
    for text in ("Clicked https://shop.example/sale", "Hard bounce: 550 mailbox unknown", "Push message"):
        assert text in html, text
    assert "event-attrs" not in html  # described, not dumped as attributes


def test_the_list_filters_by_email_consent(client, viewer, project):
    SubscriberFactory(project=project, name="In", email_consent="opted_in")
    SubscriberFactory(project=project, name="Out", email_consent="opted_out")
    client.force_login(viewer)
    url = reverse("subscribers:list", args=[project.slug])
    html = client.get(url, {"email_consent": "opted_out"}).content.decode()
    assert ">Out<" in html and ">In<" not in html
    bad = client.get(url, {"email_consent": "maybe"}).content.decode()
    assert "Unknown consent state &#x27;maybe&#x27;." in bad


def test_the_csv_export_has_the_channel_columns(client, owner, bounced):
    client.force_login(owner)
    response = client.get(reverse("subscribers:export", args=[bounced.project.slug]))
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    row = rows[0]
    assert (row["email_consent"], row["push_consent"], row["push_devices"]) == ("unknown", "unknown", "1")
    assert row["email_undeliverable_at"].startswith(bounced.email_undeliverable_at.date().isoformat())


def test_the_gdpr_export_has_the_channels(client, owner, bounced):
    client.force_login(owner)
    response = client.post(reverse("subscribers:export_json", args=[bounced.project.slug, bounced.public_id]))
    data = json.loads(response.content)
    assert data["email_undeliverable"]["reason"] == "550 mailbox unknown"
    assert data["active_devices"] == 1
    assert [d["platform"] for d in data["devices"]] == ["android", "ios"]
