"""Amazon SES's tracking webhook: SES event publishing -> SNS -> /webhooks/email/<project>/amazon_ses/.

The payloads are SNS HTTP(S) messages as SNS posts them, wrapping SES event records in the shapes
of the SES developer guide. SNS signs with a certificate of its own; here a certificate made for
the test stands in for it at an SNS-shaped URL (nothing is fetched from the network).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import boto3
import pytest
from botocore.stub import Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from campaigns.models import MessageStatus
from mail import webhooks
from mail.models import EmailSettings
from subscribers.models import ConsentChange, ConsentSource, ConsentState, Event
from tests.mail.test_tracking import email_message
from tests.mail.test_webhooks import SECRET, auth

pytestmark = pytest.mark.django_db
SES_ID = "010201933e5a1b2c-7f3e9a8d-1c2b-4e5f-9a8b-7c6d5e4f3a2b-000000"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:email-events"
CERT_URL = (
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
)
WHEN = "2026-12-01T10:00:00.000Z"


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


SNS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
FORGER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SNS_PEM = _certificate(SNS_KEY)


@pytest.fixture(autouse=True)
def _sns_certificate(monkeypatch):
    fetched = []

    def fetch(url):
        fetched.append(url)
        if url != CERT_URL:
            raise AssertionError(f"fetched {url}")
        return SNS_PEM

    monkeypatch.setattr(webhooks, "_fetch_sns_certificate", fetch)
    webhooks._certificates.clear()
    yield fetched
    webhooks._certificates.clear()


@pytest.fixture
def email_settings(project):
    return EmailSettings.objects.create(
        project=project,
        backend="amazon_ses",
        webhook_secret=SECRET,
        provider_settings=json.dumps(
            {
                "region_name": "eu-west-1",
                "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "configuration_set_name": "panel-events",
                "sns_topic_arn": TOPIC,
            }
        ),
    )


@pytest.fixture
def message(project, email_settings):
    return email_message(project, provider_message_id=SES_ID)


def sign(sns: dict, key: rsa.RSAPrivateKey = SNS_KEY) -> dict:
    fields = webhooks.SNS_SIGNED[sns["Type"]]
    text = "".join(f"{name}\n{sns[name]}\n" for name in fields if name in sns)
    # SignatureVersion 1 is SHA1withRSA: what SNS signs with unless the topic asks for version 2.
    algorithm = hashes.SHA1() if sns["SignatureVersion"] == "1" else hashes.SHA256()  # noqa: S303
    return {
        **sns,
        "Signature": base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), algorithm)).decode(),
    }


def notification(ses_event: dict, *, topic=TOPIC, version="1", key=SNS_KEY, **fields) -> dict:
    sns = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic,
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(ses_event),
        "Timestamp": WHEN,
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": f"https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TOPIC}:1",
    }
    return sign({**sns, **fields}, key)


def post(client, project, sns: dict, *, secret=SECRET, **headers):
    sns_headers = {
        "HTTP_X_AMZ_SNS_MESSAGE_TYPE": sns.get("Type", ""),
        "HTTP_X_AMZ_SNS_MESSAGE_ID": sns.get("MessageId", ""),
        "HTTP_X_AMZ_SNS_TOPIC_ARN": sns.get("TopicArn", ""),
    }
    return client.post(
        f"/webhooks/email/{project.public_id}/amazon_ses/tracking/",
        data=json.dumps(sns),
        content_type="text/plain; charset=UTF-8",  # what SNS sends
        **{**sns_headers, **headers},
        **(auth(secret) if secret else {}),
    )


def mail_object(address="ada@example.com") -> dict:
    return {
        "timestamp": "2026-12-01T09:59:58.000Z",
        "source": "news@shop.example",
        "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/shop.example",
        "sendingAccountId": "123456789012",
        "messageId": SES_ID,
        "destination": [address],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": "news@shop.example"},
            {"name": "To", "value": address},
            {"name": "Subject", "value": "Spring sale"},
        ],
        "commonHeaders": {"from": ["news@shop.example"], "to": [address], "subject": "Spring sale"},
        "tags": {"ses:configuration-set": ["panel-events"], "ses:from-domain": ["shop.example"]},
    }


def delivery_event() -> dict:
    return {
        "eventType": "Delivery",
        "mail": mail_object(),
        "delivery": {
            "timestamp": WHEN, "processingTimeMillis": 546, "recipients": ["ada@example.com"],
            "smtpResponse": "250 2.6.0 Message received", "reportingMTA": "a8-70.smtp-out.amazonses.com",
        },
    }  # fmt: skip


def bounce_event(kind="Permanent", sub="General", address="ada@example.com") -> dict:
    return {
        "eventType": "Bounce",
        "mail": mail_object(address),
        "bounce": {
            "bounceType": kind, "bounceSubType": sub, "timestamp": WHEN,
            "feedbackId": "0102017a1b2c3d4e-5f6a7b8c-0000-000000",
            "reportingMTA": "dsn; e242-8.smtp-out.amazonses.com",
            "bouncedRecipients": [{
                "emailAddress": address, "action": "failed", "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            }],
        },
    }  # fmt: skip


def complaint_event() -> dict:
    return {
        "eventType": "Complaint",
        "mail": mail_object(),
        "complaint": {
            "complainedRecipients": [{"emailAddress": "ada@example.com"}], "timestamp": WHEN,
            "feedbackId": "0102017a1b2c3d4e-aaaa-0000-000000", "userAgent": "Mozilla/5.0",
            "complaintFeedbackType": "abuse", "arrivalDate": WHEN,
        },
    }  # fmt: skip


def open_event() -> dict:
    return {
        "eventType": "Open",
        "mail": mail_object(),
        "open": {"ipAddress": "192.0.2.1", "timestamp": WHEN, "userAgent": "Mozilla/5.0 (iPhone)"},
    }


def click_event() -> dict:
    return {
        "eventType": "Click",
        "mail": mail_object(),
        "click": {
            "ipAddress": "192.0.2.1", "timestamp": WHEN, "userAgent": "Mozilla/5.0 (iPhone)",
            "link": "https://shop.example.com/sale", "linkTags": {"campaign": ["spring"]},
        },
    }  # fmt: skip


def reject_event() -> dict:
    return {"eventType": "Reject", "mail": mail_object(), "reject": {"reason": "Bad content"}}


def delay_event() -> dict:
    return {
        "eventType": "DeliveryDelay",
        "mail": mail_object(),
        "deliveryDelay": {
            "timestamp": WHEN, "delayType": "MailboxFull", "expirationTime": "2026-12-02T10:00:00.000Z",
            "delayedRecipients": [{
                "emailAddress": "ada@example.com", "status": "4.2.2",
                "diagnosticCode": "smtp; 452 4.2.2 Mailbox full",
            }],
        },
    }  # fmt: skip


def test_a_delivery_marks_the_message(client, project, message, _sns_certificate):
    response = post(client, project, notification(delivery_event()))

    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivered_at is not None
    assert Event.objects.get(name="EmailDelivered").attributes["message"] == str(message.public_id)
    assert _sns_certificate == [CERT_URL]


def test_opens_and_clicks_are_recorded_once(client, project, message):
    for _ in range(2):
        assert post(client, project, notification(open_event())).status_code == 200
        assert post(client, project, notification(click_event(), version="2")).status_code == 200

    assert Event.objects.filter(name="EmailOpened").count() == 1
    assert Event.objects.get(name="EmailClicked").attributes["url"] == "https://shop.example.com/sale"
    message.refresh_from_db()
    assert message.opened_at and message.clicked_at


def test_a_permanent_bounce_is_hard_and_marks_the_address(client, project, message):
    assert post(client, project, notification(bounce_event())).status_code == 200

    event = Event.objects.get(name="EmailBounced")
    assert event.attributes["bounce"] == "hard" and event.attributes["reason"] == "Permanent: General"
    message.refresh_from_db()
    message.subscriber.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.subscriber.email_undeliverable_reason.startswith("Bounced (Amazon SES): Permanent")


@pytest.mark.parametrize(("kind", "sub"), [("Transient", "MailboxFull"), ("Undetermined", "Undetermined")])
def test_a_transient_bounce_is_soft_and_marks_nothing(client, project, message, kind, sub):
    assert post(client, project, notification(bounce_event(kind, sub))).status_code == 200

    event = Event.objects.get(name="EmailBounced")
    assert event.attributes == {**event.attributes, "bounce": "soft", "reason": f"{kind}: {sub}"}
    message.refresh_from_db()
    message.subscriber.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert message.subscriber.email_undeliverable_at is None


def test_a_delivery_delay_is_a_soft_bounce(client, project, message):
    assert post(client, project, notification(delay_event())).status_code == 200

    event = Event.objects.get(name="EmailBounced")
    assert event.attributes["bounce"] == "soft" and "MailboxFull" in event.attributes["reason"]
    message.subscriber.refresh_from_db()
    assert message.subscriber.email_undeliverable_at is None


def test_a_complaint_marks_the_address_and_opts_out(client, project, message):
    assert post(client, project, notification(complaint_event())).status_code == 200

    assert Event.objects.filter(name="EmailComplained").count() == 1
    subscriber = message.subscriber
    subscriber.refresh_from_db()
    assert subscriber.email_undeliverable_reason == "Spam complaint (Amazon SES)"
    assert subscriber.email_consent == ConsentState.OPTED_OUT
    change = ConsentChange.objects.get()
    assert (change.source, change.actor_label) == (ConsentSource.EMAIL_PROVIDER, "Amazon SES")


def test_a_reject_fails_the_message_but_not_the_address(client, project, message):
    assert post(client, project, notification(reject_event())).status_code == 200

    event = Event.objects.get(name="EmailBounced")
    assert event.attributes["bounce"] == "hard" and event.attributes["reason"] == "Rejected: Bad content"
    message.refresh_from_db()
    message.subscriber.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.subscriber.email_undeliverable_at is None


def test_replays_change_nothing(client, project, message):
    payloads = [notification(e) for e in (bounce_event(), complaint_event(), delivery_event())]
    for payload in payloads:
        post(client, project, payload)
    counts = (Event.objects.count(), ConsentChange.objects.count())
    for payload in payloads:
        assert post(client, project, payload).status_code == 200
    assert (Event.objects.count(), ConsentChange.objects.count()) == counts


def test_the_certificate_is_fetched_once(client, project, message, _sns_certificate):
    post(client, project, notification(open_event()))
    post(client, project, notification(delivery_event()))
    assert _sns_certificate == [CERT_URL]


def _tampered(sns: dict) -> dict:
    return {**sns, "Message": sns["Message"].replace("Permanent", "Transient")}


@pytest.mark.parametrize(
    "forge",
    [
        lambda: notification(bounce_event(), key=FORGER_KEY),
        lambda: _tampered(notification(bounce_event())),
        lambda: {k: v for k, v in notification(bounce_event()).items() if k != "Signature"},
        lambda: notification(bounce_event(), SignatureVersion="3"),
        lambda: notification(bounce_event(), SigningCertURL="https://sns.eu-west-1.evil.example/cert.pem"),
        lambda: notification(bounce_event(), SigningCertURL="http://sns.eu-west-1.amazonaws.com/c.pem"),
        lambda: notification(
            bounce_event(), SigningCertURL="https://sns.eu-west-1.amazonaws.com.evil.example/c.pem"
        ),
        lambda: notification(bounce_event(), SigningCertURL="https://x@sns.eu-west-1.amazonaws.com/c.pem"),
    ],
    ids=[
        "another-key", "tampered", "unsigned", "unknown-version", "foreign-host", "http", "host-suffix",
        "userinfo",
    ],
)  # fmt: skip
def test_a_forged_or_unsigned_message_is_refused(client, project, message, forge, _sns_certificate):
    response = post(client, project, forge())

    assert response.status_code == 403
    assert not Event.objects.exists()
    assert set(_sns_certificate) <= {CERT_URL}  # never a certificate from elsewhere


def test_a_certificate_that_cannot_be_loaded_refuses(client, project, message, monkeypatch):
    monkeypatch.setattr(webhooks, "_fetch_sns_certificate", lambda url: b"not a certificate")
    response = post(client, project, notification(delivery_event()))
    assert response.status_code == 403 and "could not be loaded" in response.content.decode()


def test_another_topic_is_refused(client, project, message):
    other = "arn:aws:sns:eu-west-1:999999999999:someone-else"
    response = post(client, project, notification(bounce_event(), topic=other))
    assert response.status_code == 403 and "sns_topic_arn" in response.content.decode()
    assert not Event.objects.exists()


def test_the_project_secret_is_checked_first(client, project, message):
    missing = post(client, project, notification(bounce_event()), secret=None)
    wrong = post(client, project, notification(bounce_event()), secret="hook:wrong")

    # SNS sends basic auth only after a 401 challenge.
    assert missing.status_code == wrong.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Basic")
    assert not Event.objects.exists()


def test_sns_headers_must_match_the_body(client, project, message):
    response = post(client, project, notification(delivery_event()), HTTP_X_AMZ_SNS_MESSAGE_ID="another")
    assert response.status_code == 403


@pytest.mark.parametrize("body", ["not json", "[1, 2]"])
def test_unreadable_bodies_are_a_400(client, project, message, body):
    response = client.post(
        f"/webhooks/email/{project.public_id}/amazon_ses/tracking/",
        data=body,
        content_type="text/plain",
        HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification",
        **auth(),
    )
    assert response.status_code == 400


def subscription_confirmation(topic=TOPIC) -> dict:
    return sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": str(uuid.uuid4()),
            "Token": "2336412f37fb687f5d51e6e2425dacbba2a1e7b3a0f3bd9f0a3b0c7",
            "TopicArn": topic,
            "Message": f"You have chosen to subscribe to the topic {topic}.\n"
            "To confirm the subscription, visit the SubscribeURL included in this message.",
            "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
            f"&TopicArn={topic}&Token=2336412f37fb687f5d51e6e2425dacbba2a1e7b3a0f3bd9f0a3b0c7",
            "Timestamp": WHEN,
            "SignatureVersion": "1",
            "SigningCertURL": CERT_URL,
        }
    )


@pytest.fixture
def sns_client(monkeypatch):
    client = boto3.session.Session(
        region_name="eu-west-1", aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x"
    ).client("sns")
    stubber = Stubber(client)
    stubber.activate()
    stubber.made = []

    def make_client(session, service_name, **kwargs):
        stubber.made.append((session, service_name, kwargs))
        return client

    monkeypatch.setattr(boto3.session.Session, "client", make_client)
    yield stubber
    stubber.deactivate()


def test_the_project_s_topic_is_confirmed_with_its_keys(client, project, email_settings, sns_client):
    sns = subscription_confirmation()
    sns_client.add_response(
        "confirm_subscription",
        {"SubscriptionArn": f"{TOPIC}:6c1e2a4b-1111-2222-3333-444455556666"},
        expected_params={"TopicArn": TOPIC, "Token": sns["Token"], "AuthenticateOnUnsubscribe": "true"},
    )

    response = post(client, project, sns)

    assert response.status_code == 200
    sns_client.assert_no_pending_responses()
    session, service, kwargs = sns_client.made[0]
    assert (service, kwargs["region_name"]) == ("sns", "eu-west-1")
    assert session.get_credentials().access_key == "AKIAIOSFODNN7EXAMPLE"


def test_a_subscription_needs_the_topic_in_the_settings(client, project, email_settings, sns_client):
    other = post(client, project, subscription_confirmation("arn:aws:sns:eu-west-1:999999999999:theirs"))
    email_settings.provider_settings = json.dumps({"region_name": "eu-west-1"})
    email_settings.save()
    unset = post(client, project, subscription_confirmation())

    assert other.status_code == unset.status_code == 403
    assert "sns_topic_arn" in unset.content.decode()
    assert sns_client.made == []  # nothing confirmed


def test_a_failed_confirmation_is_reported(client, project, email_settings, sns_client):
    sns_client.add_client_error(
        "confirm_subscription", service_error_code="AuthorizationError", service_message="Not authorized"
    )
    response = post(client, project, subscription_confirmation())
    assert response.status_code == 502 and "could not be confirmed" in response.content.decode()


def test_ses_s_own_test_notification_is_accepted(client, project, message):
    sns = notification({}, Message="Successfully validated SNS topic for Amazon SES event publishing.")
    assert post(client, project, sns).status_code == 200
    assert not Event.objects.exists()


def test_the_settings_page_lists_the_ses_url(owner_client, project, email_settings, settings):
    settings.PUBLIC_BASE_URL = "https://panel.example.com"
    page = owner_client.get(f"/p/{project.slug}/email/settings/").content.decode()
    url = f"https://{SECRET}@panel.example.com/webhooks/email/{project.public_id}/amazon_ses/tracking/"
    assert f'value="{url}"' in page and "sns_topic_arn" in page
