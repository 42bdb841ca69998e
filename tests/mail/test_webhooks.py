"""Email providers' tracking webhooks (mail/webhooks.py): per project, per ESP, replay-safe."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from django.template.loader import render_to_string
from django.test import RequestFactory

from campaigns.channel_policy import EMAIL_UNDELIVERABLE, email_refusal
from campaigns.models import MessageStatus
from mail import webhooks
from mail.models import EmailSettings
from subscribers.models import ConsentChange, ConsentSource, ConsentState, Event
from tests.factories import ProjectFactory, SubscriberFactory
from tests.mail.test_tracking import email_message

pytestmark = pytest.mark.django_db
SECRET = "hook:s3cret-s3cret-s3cret"
PROVIDER_ID = "0a129aee-e1cd-480d-b08d-4f48548ff48d"
WHEN = "2026-12-01T10:00:00Z"


@pytest.fixture
def email_settings(project):
    return EmailSettings.objects.create(project=project, backend="postmark", webhook_secret=SECRET)


@pytest.fixture
def message(project, email_settings):
    return email_message(project, provider_message_id=PROVIDER_ID)


def auth(secret: str = SECRET) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def post(client, project, payload, *, esp="postmark", secret=SECRET, **extra):
    return client.post(
        f"/webhooks/email/{project.public_id}/{esp}/tracking/",
        data=json.dumps(payload),
        content_type="application/json",
        **(auth(secret) if secret else {}),
        **extra,
    )


# Postmark's webhook bodies, as its documentation shows them.
def delivery(message_id=PROVIDER_ID):
    return {
        "RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound", "MessageID": message_id,
        "Recipient": "ada@example.com", "Tag": "", "DeliveredAt": WHEN, "Details": "250 OK", "Metadata": {},
    }  # fmt: skip


def bounce(kind="HardBounce", email="ada@example.com"):
    return {
        "RecordType": "Bounce", "ID": 4323372036854775807, "Type": kind, "TypeCode": 1,
        "Name": "Hard bounce", "Tag": "", "MessageID": PROVIDER_ID, "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email, "From": "shop@example.com", "BouncedAt": WHEN, "DumpAvailable": True,
        "Inactive": True, "CanActivate": True, "Subject": "Spring sale", "MessageStream": "outbound",
    }  # fmt: skip


def complaint():
    return {
        **bounce("SpamComplaint"),
        "RecordType": "SpamComplaint",
        "Name": "Spam complaint",
        "Description": "",
    }


def subscription_change():
    return {
        "RecordType": "SubscriptionChange", "MessageID": PROVIDER_ID, "ServerID": 23,
        "MessageStream": "broadcast", "ChangedAt": WHEN, "Recipient": "ada@example.com",
        "Origin": "Recipient", "SuppressSending": True, "SuppressionReason": "ManualSuppression",
        "Tag": "", "Metadata": {},
    }  # fmt: skip


def test_a_delivery_marks_the_message_and_records_the_event(client, project, message):
    response = post(client, project, delivery())

    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivered_at is not None
    event = Event.objects.get(name="EmailDelivered")
    assert event.attributes["message"] == str(message.public_id)


def test_a_hard_bounce_marks_the_address_and_a_later_email_is_refused(client, project, message):
    assert post(client, project, bounce()).status_code == 200

    event = Event.objects.get(name="EmailBounced")
    assert event.attributes["bounce"] == "hard" and "unable to deliver" in event.attributes["reason"]
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    subscriber = message.subscriber
    subscriber.refresh_from_db()
    assert subscriber.email_undeliverable_at is not None
    assert subscriber.email_undeliverable_reason.startswith("Bounced (Postmark)")
    # Acceptance 3: the address is not mailed again.
    assert email_refusal(subscriber, marketing=True) == EMAIL_UNDELIVERABLE
    assert email_refusal(subscriber, marketing=False) == EMAIL_UNDELIVERABLE


def test_a_transient_failure_is_a_soft_bounce_that_marks_nothing(client, project, message):
    assert post(client, project, bounce("Transient")).status_code == 200

    assert Event.objects.get(name="EmailBounced").attributes["bounce"] == "soft"
    message.refresh_from_db()
    message.subscriber.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert message.subscriber.email_undeliverable_at is None
    # A hard bounce after the soft one is still recorded (another dedup key).
    post(client, project, bounce())
    assert sorted(e.attributes["bounce"] for e in Event.objects.filter(name="EmailBounced")) == [
        "hard",
        "soft",
    ]


def test_a_bounce_of_an_address_the_subscriber_no_longer_has_marks_nothing(client, project, message):
    post(client, project, bounce(email="old@example.com"))

    message.subscriber.refresh_from_db()
    assert Event.objects.filter(name="EmailBounced").count() == 1
    assert message.subscriber.email_undeliverable_at is None


def test_a_complaint_marks_the_address_and_opts_out_of_email(client, project, message):
    assert post(client, project, complaint()).status_code == 200

    assert Event.objects.filter(name="EmailComplained").count() == 1
    subscriber = message.subscriber
    subscriber.refresh_from_db()
    assert subscriber.email_undeliverable_reason == "Spam complaint (Postmark)"
    assert subscriber.email_consent == ConsentState.OPTED_OUT
    change = ConsentChange.objects.get()
    assert (change.channel, change.source) == ("email", ConsentSource.EMAIL_PROVIDER)
    assert "spam complaint" in change.evidence and str(message.public_id) in change.evidence
    assert change.actor_label == "Postmark"


def test_an_unsubscribe_at_the_provider_opts_out_without_marking(client, project, message):
    assert post(client, project, subscription_change()).status_code == 200

    subscriber = message.subscriber
    subscriber.refresh_from_db()
    assert subscriber.email_consent == ConsentState.OPTED_OUT
    assert subscriber.email_undeliverable_at is None
    assert ConsentChange.objects.get().source == ConsentSource.EMAIL_PROVIDER


def test_replayed_webhooks_change_nothing(client, project, message):
    for payload in (bounce(), complaint(), delivery()):
        post(client, project, payload)
    subscriber = message.subscriber
    subscriber.refresh_from_db()
    state = (subscriber.email_undeliverable_at, subscriber.email_undeliverable_reason, subscriber.updated_at)
    counts = (Event.objects.count(), ConsentChange.objects.count())

    for payload in (bounce(), complaint(), delivery()):
        assert post(client, project, payload).status_code == 200

    subscriber.refresh_from_db()
    assert (
        subscriber.email_undeliverable_at,
        subscriber.email_undeliverable_reason,
        subscriber.updated_at,
    ) == state
    assert (Event.objects.count(), ConsentChange.objects.count()) == counts


@pytest.mark.parametrize(
    "secret", [None, "hook:wrong", SECRET + "x", "hook"], ids=["none", "wrong", "longer", "user-only"]
)
def test_wrong_credentials_are_refused_and_nothing_is_applied(client, project, message, secret):
    response = post(client, project, bounce(), secret=secret)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")
    assert not Event.objects.exists()


def test_another_project_s_url_or_secret_reaches_nothing(client, project, message):
    other = ProjectFactory()
    EmailSettings.objects.create(project=other, webhook_secret="other:secret")
    # The same provider id in the other project (ids are only unique per ESP account).
    theirs = email_message(
        other, provider_message_id=PROVIDER_ID, subscriber=SubscriberFactory(project=other)
    )

    wrong_secret = post(client, other, bounce(), secret=SECRET)
    no_settings = post(client, ProjectFactory(), bounce(), secret=SECRET)
    own_url = post(client, other, bounce(), secret="other:secret")

    assert wrong_secret.status_code == no_settings.status_code == 401
    assert own_url.status_code == 200
    message.refresh_from_db()
    theirs.refresh_from_db()
    assert message.status == MessageStatus.SENT and message.subscriber.email_undeliverable_at is None
    assert theirs.status == MessageStatus.FAILED


def test_an_unknown_or_another_project_s_message_id_changes_nothing(client, project, message):
    other = ProjectFactory()
    theirs = email_message(other, provider_message_id="theirs", subscriber=SubscriberFactory(project=other))

    assert post(client, project, delivery(message_id="not-anyones")).status_code == 200
    assert post(client, project, delivery(message_id="theirs")).status_code == 200

    assert not Event.objects.exists()
    theirs.refresh_from_db()
    assert theirs.delivered_at is None


@pytest.mark.parametrize(
    "body", ["not json", "[1, 2]", json.dumps({"RecordType": "Inbound", "FromFull": {}})]
)
def test_unreadable_payloads_are_a_400(client, project, message, body):
    response = client.post(
        f"/webhooks/email/{project.public_id}/postmark/tracking/",
        data=body,
        content_type="application/json",
        **auth(),
    )

    assert response.status_code == 400
    assert not Event.objects.exists()


def test_unknown_provider_is_a_404_and_head_probes_answer(client, project, email_settings):
    assert client.post(f"/webhooks/email/{project.public_id}/smtp/tracking/", **auth()).status_code == 404
    assert client.head(f"/webhooks/email/{project.public_id}/postmark/tracking/").status_code == 200
    assert client.get(f"/webhooks/email/{project.public_id}/postmark/tracking/").status_code == 405


def mailgun_event(key: str, event: dict) -> dict:
    signature = {"timestamp": "1764583200", "token": "f0c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4"}
    signature["signature"] = hmac.new(
        key.encode(), (signature["timestamp"] + signature["token"]).encode(), hashlib.sha256
    ).hexdigest()
    return {"signature": signature, "event-data": event}


MAILGUN_CLICK = {
    "event": "clicked", "timestamp": 1764583200.5, "id": "Ase7i2zsRYeDXztHGENqRA",
    "recipient": "ada@example.com", "url": "https://shop.example.com/sale",
    "message": {"headers": {"message-id": "20261201100000.1.ABC@mg.example.com"}},
}  # fmt: skip


def test_mailgun_needs_the_project_s_signing_key(client, project, email_settings):
    message = email_message(project, provider_message_id="<20261201100000.1.ABC@mg.example.com>")
    without_key = post(client, project, mailgun_event("k", MAILGUN_CLICK), esp="mailgun")
    email_settings.provider_settings = json.dumps({"api_key": "key-1", "webhook_signing_key": "signing-1"})
    email_settings.save()

    forged = post(client, project, mailgun_event("signing-2", MAILGUN_CLICK), esp="mailgun")
    signed = post(client, project, mailgun_event("signing-1", MAILGUN_CLICK), esp="mailgun")

    assert without_key.status_code == forged.status_code == 403
    assert signed.status_code == 200
    click = Event.objects.get(name="EmailClicked")
    assert click.attributes["url"] == "https://shop.example.com/sale"
    assert click.attributes["message"] == str(message.public_id)


def test_brevo_open_and_click(client, project, email_settings):
    message = email_message(project, provider_message_id="<202612011000.12345678901@smtp-relay.mailin.fr>")
    base = {"email": "ada@example.com", "message-id": message.provider_message_id, "ts_epoch": 1764583200000}

    opened = post(client, project, {**base, "event": "unique_opened"}, esp="brevo")
    clicked = post(
        client, project, {**base, "event": "click", "link": "https://shop.example.com/"}, esp="brevo"
    )

    assert opened.status_code == clicked.status_code == 200
    assert Event.objects.filter(name="EmailOpened").count() == 1
    assert Event.objects.get(name="EmailClicked").attributes["url"] == "https://shop.example.com/"


def test_the_settings_snippet_shows_one_url_per_provider_with_a_secret_made_once(project, settings):
    settings.PUBLIC_BASE_URL = "https://panel.example.com"
    email_settings = EmailSettings.objects.create(project=project)
    request = RequestFactory().get("/")

    context = webhooks.webhook_context(request, email_settings)
    again = webhooks.webhook_context(request, EmailSettings.objects.get(pk=email_settings.pk))
    html = render_to_string("mail/_webhook_urls.html", {"project": project, **context})

    secret = EmailSettings.objects.get(pk=email_settings.pk).webhook_secret
    user, _, password = secret.partition(":")
    assert user and len(password) >= 32
    assert [e.url for e in context["webhook_endpoints"]] == [e.url for e in again["webhook_endpoints"]]
    postmark = next(e for e in context["webhook_endpoints"] if e.esp == "postmark")
    assert (
        postmark.url
        == f"https://{secret}@panel.example.com/webhooks/email/{project.public_id}/postmark/tracking/"
    )
    assert postmark.url in html and "Mailgun" in html


# anymail still parses SendGrid's webhooks but warns that it no longer supports it officially.
@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
def test_sendgrid_batches_are_applied_in_one_request(client, project, email_settings):
    first = email_message(project, provider_message_id="a1b2c3d4-0000-4000-8000-000000000001")
    second = email_message(project, provider_message_id="a1b2c3d4-0000-4000-8000-000000000002")
    batch = [
        {"email": "ada@example.com", "timestamp": 1764583200, "event": "delivered",
         "anymail_id": m.provider_message_id, "sg_event_id": f"ev-{n}", "sg_message_id": f"sg-{n}",
         "smtp-id": f"<sg-{n}@example.com>"}
        for n, m in enumerate((first, second))
    ]  # fmt: skip

    assert post(client, project, batch, esp="sendgrid").status_code == 200

    assert Event.objects.filter(name="EmailDelivered").count() == 2
