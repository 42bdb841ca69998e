"""Amazon SES through anymail's SES v2 backend: sending, failure classes, the settings' checks.

No request leaves the machine: boto3's client is botocore's Stubber, or raises what botocore
raises when the network fails.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.stub import ANY, Stubber
from django.urls import reverse

from campaigns.models import Channel, Message
from controlpanel.models import AuditEntry
from mail import backends, transport
from mail.models import EmailBackend, EmailSettings
from mail.transport import EmailTransport
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SES_ID = "010201933e5a1b2c-7f3e9a8d-1c2b-4e5f-9a8b-7c6d5e4f3a2b-000000"
PROVIDER = {
    "region_name": "eu-west-1",
    "access_key_id": KEY_ID,
    "secret_access_key": SECRET,
    "configuration_set_name": "panel-events",
}
CONTENT = {"subject": "Your order", "html": "<p>Hello</p>", "text": "Hello"}


@pytest.fixture(autouse=True)
def _no_aws_files(monkeypatch, tmp_path):
    # Never a developer's own AWS configuration, never the instance metadata service.
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "none"))
    for name in (
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def ses(monkeypatch):
    """The SES v2 client every backend gets: stubbed. ``made`` lists (session, service, kwargs)."""
    client = boto3.session.Session(
        region_name="eu-west-1", aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET
    ).client("sesv2")
    stubber = Stubber(client)
    stubber.activate()
    stubber.made = []

    def make_client(session, service_name, **kwargs):
        stubber.made.append((session, service_name, kwargs))
        return client

    monkeypatch.setattr(boto3.session.Session, "client", make_client)
    stubber.client = client
    yield stubber
    stubber.deactivate()


def _settings(project, **provider) -> EmailSettings:
    return EmailSettings.objects.create(
        project=project,
        backend=EmailBackend.AMAZON_SES,
        from_email="news@shop.example",
        provider_settings=json.dumps({**PROVIDER, **provider}),
    )


def _message(project, address="ada@example.com", **fields) -> Message:
    subscriber = SubscriberFactory(project=project, email=address)
    return Message.objects.create(
        project=project, subscriber=subscriber, channel=Channel.EMAIL, content=CONTENT, **fields
    )


def test_a_send_goes_through_ses_v2_and_keeps_its_message_id(project, ses):
    _settings(project)
    message = _message(project)
    ses.add_response(
        "send_email",
        {"MessageId": SES_ID},
        expected_params={
            "ConfigurationSetName": "panel-events",
            "Destination": {"ToAddresses": ["ada@example.com"]},
            "Content": {"Raw": {"Data": ANY}},
        },
    )

    (delivery,) = EmailTransport().send(project, [message])

    assert delivery.ok and delivery.provider_message_id == SES_ID
    ses.assert_no_pending_responses()
    session, service, kwargs = ses.made[0]
    assert service == "sesv2" and session.region_name == "eu-west-1"
    assert session.get_credentials().access_key == KEY_ID
    # One attempt with our timeouts: boto3 never resends an email on its own.
    config = kwargs["config"]
    assert (config.connect_timeout, config.read_timeout) == (backends.ESP_TIMEOUT, backends.ESP_TIMEOUT)
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}


def test_the_raw_email_is_ours(project, ses):
    _settings(project)
    message = _message(project, marketing=True)
    sent = {}

    def keep(params, **kwargs):
        sent.update(params)

    ses.client.meta.events.register("provide-client-params.sesv2.SendEmail", keep)
    ses.add_response("send_email", {"MessageId": SES_ID})
    EmailTransport().send(project, [message])

    raw = sent["Content"]["Raw"]["Data"].decode()
    assert "Subject: Your order" in raw and f"Message-ID: <{message.public_id}@shop.example>" in raw
    assert "List-Unsubscribe" in raw  # marketing by default: our headers go to SES as written


def test_a_rejected_message_fails_with_ses_words(project, ses):
    _settings(project)
    ses.add_client_error(
        "send_email",
        service_error_code="MessageRejected",
        service_message="Email address is not verified. The following identities failed the check "
        "in region EU-WEST-1: news@shop.example",
        http_status_code=400,
    )
    (delivery,) = EmailTransport().send(project, [_message(project)])

    assert not delivery.ok and not delivery.retry and not delivery.unknown
    assert delivery.error_code == "400"
    assert delivery.error.startswith("Amazon SES rejected the message (MessageRejected): Email address")


@pytest.mark.parametrize(
    ("code", "status"),
    [("TooManyRequestsException", 429), ("LimitExceededException", 400), ("Throttling", 400)],
)
def test_throttling_is_a_retry(project, ses, code, status):
    _settings(project)
    ses.add_client_error(
        "send_email",
        service_error_code=code,
        service_message="Maximum sending rate exceeded.",
        http_status_code=status,
    )
    (delivery,) = EmailTransport().send(project, [_message(project)])

    assert not delivery.ok and delivery.retry and delivery.error_code == "429"
    assert "limiting this account's sending" in delivery.error


def test_an_ses_server_error_is_a_retry(project, ses):
    _settings(project)
    ses.add_client_error(
        "send_email", service_error_code="InternalFailure", service_message="oops", http_status_code=500
    )
    (delivery,) = EmailTransport().send(project, [_message(project)])
    assert delivery.retry and delivery.error_code == "500"


def test_never_reached_is_a_retry_and_no_answer_is_unknown(project, ses, monkeypatch):
    _settings(project)
    url = "https://email.eu-west-1.amazonaws.com/v2/email/outbound-emails"
    errors = iter([EndpointConnectionError(endpoint_url=url), ReadTimeoutError(endpoint_url=url)])

    def fail(**params):
        raise next(errors)

    monkeypatch.setattr(ses.client, "send_email", fail, raising=False)
    unreachable, silent = EmailTransport().send(
        project, [_message(project), _message(project, "bo@example.com")]
    )

    assert unreachable.retry and not unreachable.unknown and not unreachable.error_code
    assert unreachable.error.startswith("Amazon SES could not be reached: Could not connect")
    assert silent.unknown and not silent.retry
    assert silent.error.startswith("Amazon SES did not answer in time:")


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("UnrecognizedClientException", "Amazon SES does not know the access key ID: check access_key_id."),
        ("SignatureDoesNotMatch", "Amazon SES refused the secret access key: check secret_access_key."),
        ("AccessDeniedException", "its IAM policy needs ses:SendEmail and ses:SendRawEmail"),
    ],
)
def test_bad_credentials_are_plain_words_in_the_test_email(owner_client, project, ses, code, words):
    _settings(project)
    ses.add_client_error(
        "send_email",
        service_error_code=code,
        service_message=f"The security token included in the request is invalid ({SECRET}).",
        http_status_code=403,
    )
    response = owner_client.post(
        reverse("mail:settings_test", args=[project.slug]), {"to": "me@example.com"}, follow=True
    )

    page = response.content.decode()
    assert "The test email was not sent: " in page and words in page and f"({code}:" in page
    assert SECRET not in page  # an echoed secret is cut out
    entry = AuditEntry.objects.get(action="email_settings.tested")
    assert entry.changes["ok"] is False and SECRET not in str(entry.changes)


def test_the_test_email_through_ses_says_it_was_sent(owner_client, project, ses):
    _settings(project)
    ses.add_response("send_email", {"MessageId": SES_ID})
    response = owner_client.post(
        reverse("mail:settings_test", args=[project.slug]), {"to": "me@example.com"}, follow=True
    )
    assert "Test email sent to me@example.com" in response.content.decode()


def test_without_a_region_every_message_retries_with_the_reason(project):
    _settings(project, region_name="")
    deliveries = EmailTransport().send(project, [_message(project), _message(project, "bo@example.com")])
    assert all(d.retry and not d.ok for d in deliveries)
    assert "You must specify a region" in deliveries[0].error
    email_settings = EmailSettings.objects.get(project=project)
    email = transport.compose(email_settings, to="me@example.com", content=CONTENT)
    assert not transport.deliver_now(email_settings, email).ok  # never raises


@pytest.mark.parametrize(
    ("provider", "words"),
    [
        ({"region_name": "eu-west-1.evil.example"}, "an AWS region such as eu-west-1"),
        ({"secret_access_key": ""}, "access_key_id and secret_access_key together"),
        ({"sns_topic_arn": "arn:aws:sqs:eu-west-1:123456789012:q"}, "an SNS topic's ARN"),
        ({"api_key": "x"}, "Amazon SES has no setting api_key"),
    ],
)
def test_ses_settings_are_checked_when_saving(owner_client, project, provider, words):
    data = {
        "backend": "amazon_ses",
        "smtp_port": "587",
        "smtp_security": "starttls",
        "provider_settings": json.dumps({**PROVIDER, **provider}),
    }
    response = owner_client.post(reverse("mail:settings", args=[project.slug]), data)
    assert response.status_code == 422
    assert words in " ".join(response.context["form"].errors["provider_settings"])


def test_ses_settings_are_saved_encrypted_and_make_a_connection(owner_client, project):
    provider = {**PROVIDER, "sns_topic_arn": "arn:aws:sns:eu-west-1:123456789012:email-events"}
    data = {
        "backend": "amazon_ses",
        "smtp_port": "587",
        "smtp_security": "starttls",
        "provider_settings": json.dumps(provider),
    }
    assert owner_client.post(reverse("mail:settings", args=[project.slug]), data).status_code == 302
    stored = EmailSettings.objects.get(project=project)
    assert json.loads(stored.provider_settings) == provider
    page = owner_client.get(reverse("mail:settings", args=[project.slug])).content.decode()
    assert SECRET not in page
    assert "needs boto3" not in page
    backend = backends.connection_for(stored)
    assert isinstance(backend, backends.AmazonSesBackend)
    assert backend.configuration_set_name == "panel-events"
    assert backend.session_params == {
        "region_name": "eu-west-1",
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
    }


def test_ses_words_follow_the_panel_language(owner_client, project, ses):
    _settings(project)
    ses.add_client_error(
        "send_email",
        service_error_code="UnrecognizedClientException",
        service_message="bad",
        http_status_code=403,
    )
    response = owner_client.post(
        reverse("mail:settings_test", args=[project.slug]),
        {"to": "me@example.com"},
        follow=True,
        HTTP_ACCEPT_LANGUAGE="de",
    )
    assert (
        "Amazon SES kennt die Zugriffsschlüssel-ID nicht: Prüfen Sie access_key_id."
        in response.content.decode()
    )

    data = {
        "backend": "amazon_ses",
        "smtp_port": "587",
        "smtp_security": "starttls",
        "provider_settings": json.dumps({**PROVIDER, "secret_access_key": ""}),
    }
    response = owner_client.post(
        reverse("mail:settings", args=[project.slug]), data, HTTP_ACCEPT_LANGUAGE="de"
    )
    assert "Amazon SES braucht access_key_id und secret_access_key zusammen" in " ".join(
        response.context["form"].errors["provider_settings"]
    )
