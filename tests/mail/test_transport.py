"""The email transport: the mailbox backend, a local SMTP server (aiosmtpd), ESP error classes."""

from __future__ import annotations

import email
import socket

import pytest
import requests
from aiosmtpd.controller import Controller
from anymail.exceptions import AnymailRecipientsRefused, AnymailRequestsAPIError
from anymail.message import AnymailRecipientStatus, AnymailStatus

from campaigns.models import Channel, Message
from mail import backends, transport
from mail.models import EmailBackend, EmailSettings, MailboxMessage, SmtpSecurity
from mail.transport import EmailTransport
from tests.factories import SubscriberFactory

CONTENT = {
    "subject": "Your order",
    "preheader": "It ships today",
    "html": '<html><body><p>Hello <a href="https://shop.example/o/1">order</a></p></body></html>',
    "text": "",
}


def _message(project, address: str, **content) -> Message:
    subscriber = SubscriberFactory(project=project, email=address)
    return Message.objects.create(
        project=project, subscriber=subscriber, channel=Channel.EMAIL, content={**CONTENT, **content}
    )


# --- mailbox -----------------------------------------------------------------------------------


def test_the_mailbox_stores_the_batch_as_sent(project):
    EmailSettings.objects.create(
        project=project, from_email="news@shop.example", from_name="Shop, Inc.", reply_to="help@shop.example"
    )
    messages = [_message(project, "a@example.com"), _message(project, "b@example.com", text="Own text")]
    deliveries = EmailTransport().send(project, messages)
    assert all(d.ok for d in deliveries)
    rows = {row.message_id: row for row in MailboxMessage.objects.for_project(project)}
    assert set(rows) == {m.pk for m in messages}
    first = rows[messages[0].pk]
    assert deliveries[0].provider_message_id == first.headers["Message-ID"]
    assert first.headers["Message-ID"] == f"<{messages[0].public_id}@shop.example>"
    assert first.from_email == '"Shop, Inc." <news@shop.example>'
    assert first.headers["Reply-To"] == "help@shop.example"
    assert first.to == "a@example.com" and first.test is False
    # The preheader is the body's first, hidden text; the text part is made from the HTML.
    assert '<body><span style="display:none' in first.html and "It ships today</span><p>Hello" in first.html
    assert first.text == "Hello order (https://shop.example/o/1)"
    assert rows[messages[1].pk].text == "Own text"


def test_without_settings_the_mailbox_and_default_from_are_used(project, settings):
    settings.DEFAULT_FROM_EMAIL = "Panel <noreply@panel.example>"
    deliveries = EmailTransport().send(project, [_message(project, "a@example.com")])
    assert deliveries[0].ok
    assert MailboxMessage.objects.get().from_email == "Panel <noreply@panel.example>"


# --- SMTP --------------------------------------------------------------------------------------


class Handler:
    """Accepts mail; refuses some recipients; drops the connection for others."""

    def __init__(self):
        self.received: list[tuple[str, list[str], bytes]] = []
        self.sessions = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("unknown@"):
            return "550 5.1.1 No such user"
        if address.startswith("busy@"):
            return "451 4.3.0 Try again later"
        if address.startswith("drop@"):
            server.transport.close()
            return "421 closing"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(a.startswith("dropdata@") for a in envelope.rcpt_tos):
            server.transport.close()
            return "421 closing"
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    handler = Handler()
    port = _free_port()  # aiosmtpd 1.4's start() connects to its port to check it: 0 will not do
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _smtp_settings(project, port, **fields) -> EmailSettings:
    return EmailSettings.objects.create(
        project=project,
        backend=EmailBackend.SMTP,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security=SmtpSecurity.NONE,
        from_email="news@shop.example",
        **fields,
    )


def test_smtp_sends_each_message_over_one_connection(project, smtp_server):
    handler, port = smtp_server
    _smtp_settings(project, port)
    messages = [_message(project, "a@example.com"), _message(project, "b@example.com")]
    deliveries = EmailTransport().send(project, messages)
    assert [d.ok for d in deliveries] == [True, True]
    assert handler.sessions == 1
    assert [r[1] for r in handler.received] == [["a@example.com"], ["b@example.com"]]
    parsed = email.message_from_bytes(handler.received[0][2])
    assert (
        parsed["Message-ID"] == deliveries[0].provider_message_id == f"<{messages[0].public_id}@shop.example>"
    )
    assert parsed.get_content_type() == "multipart/alternative"


def test_smtp_refusals_are_classified_per_message(project, smtp_server):
    handler, port = smtp_server
    _smtp_settings(project, port)
    messages = [
        _message(project, "unknown@example.com"),
        _message(project, "busy@example.com"),
        _message(project, "ok@example.com"),
    ]
    refused, busy, ok = EmailTransport().send(project, messages)
    assert not refused.ok and not refused.retry and refused.error_code == "550"
    assert "No such user" in refused.error
    assert not busy.ok and busy.retry and busy.error_code == "451"
    assert ok.ok
    assert [r[1] for r in handler.received] == [["ok@example.com"]]


def test_a_dropped_connection_before_data_retries_and_stops_the_batch(project, smtp_server):
    handler, port = smtp_server
    _smtp_settings(project, port)
    messages = [
        _message(project, "a@example.com"),
        _message(project, "drop@example.com"),
        _message(project, "c@example.com"),
    ]
    sent, dropped, rest = EmailTransport().send(project, messages)
    assert sent.ok
    assert not dropped.ok and dropped.retry and not dropped.unknown
    assert not rest.ok and rest.retry and "Not attempted" in rest.error
    assert [r[1] for r in handler.received] == [["a@example.com"]]


def test_a_dropped_connection_during_data_is_unknown(project, smtp_server):
    _, port = smtp_server
    _smtp_settings(project, port)
    (delivery,) = EmailTransport().send(project, [_message(project, "dropdata@example.com")])
    assert not delivery.ok and delivery.unknown and not delivery.retry


def test_an_unreachable_server_retries_every_message(project):
    _smtp_settings(project, _free_port())
    deliveries = EmailTransport().send(
        project, [_message(project, "a@example.com"), _message(project, "b@example.com")]
    )
    assert all(not d.ok and d.retry and "Could not connect" in d.error for d in deliveries)


def test_incomplete_settings_retry_with_the_reason(project):
    EmailSettings.objects.create(project=project, backend=EmailBackend.SMTP, smtp_host="")
    (delivery,) = EmailTransport().send(project, [_message(project, "a@example.com")])
    assert not delivery.ok and delivery.retry and "No SMTP server" in delivery.error


# --- ESPs (anymail) ----------------------------------------------------------------------------


def _response(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = "Whatever"
    response._content = b'{"message": "nope"}'
    return response


@pytest.mark.parametrize(
    ("error", "ok", "retry", "unknown", "code"),
    [
        (None, True, False, False, ""),
        (AnymailRecipientsRefused(), False, False, False, "rejected"),
        (AnymailRequestsAPIError(response=_response(422)), False, False, False, "422"),
        (AnymailRequestsAPIError(response=_response(429)), False, True, False, "429"),
        (AnymailRequestsAPIError(response=_response(503)), False, True, False, "503"),
        (type("E", (AnymailRequestsAPIError, requests.ConnectionError), {})("down"), False, True, False, ""),
        (type("E", (AnymailRequestsAPIError, requests.ReadTimeout), {})("slow"), False, False, True, ""),
    ],
)
def test_esp_answers_are_classified(project, monkeypatch, error, ok, retry, unknown, code):
    EmailSettings.objects.create(
        project=project, backend=EmailBackend.POSTMARK, provider_settings='{"server_token": "t"}'
    )
    from anymail.backends.postmark import EmailBackend as Postmark

    def send_messages(self, emails):
        if error is not None:
            raise error
        emails[0].anymail_status = AnymailStatus()
        emails[0].anymail_status.set_recipient_status(
            {"a@example.com": AnymailRecipientStatus("pm-1", "sent")}
        )
        return 1

    monkeypatch.setattr(Postmark, "send_messages", send_messages)
    (delivery,) = EmailTransport().send(project, [_message(project, "a@example.com")])
    assert (delivery.ok, delivery.retry, delivery.unknown, delivery.error_code) == (ok, retry, unknown, code)
    if ok:
        assert delivery.provider_message_id == "pm-1"


def test_provider_settings_must_fit_the_esp(project):
    EmailSettings.objects.create(
        project=project, backend=EmailBackend.MAILGUN, provider_settings='{"token": "x"}'
    )
    (delivery,) = EmailTransport().send(project, [_message(project, "a@example.com")])
    assert not delivery.ok and "Mailgun has no setting token" in delivery.error


def test_a_mailgun_connection_gets_the_keys_and_region(project):
    settings_row = EmailSettings(
        project=project,
        backend=EmailBackend.MAILGUN,
        provider_settings='{"api_key": "key-1", "sender_domain": "mg.example.com", "region": "eu"}',
    )
    backend = backends.connection_for(settings_row)
    assert (backend.api_key, backend.sender_domain) == ("key-1", "mg.example.com")
    assert backend.api_url.startswith("https://api.eu.mailgun.net/v3")
    assert backend.timeout == backends.ESP_TIMEOUT


def test_deliver_now_never_raises_for_bad_settings(project):
    settings_row = EmailSettings(project=project, backend=EmailBackend.SENDGRID, provider_settings="not json")
    email_message = transport.compose(settings_row, to="a@example.com", content=CONTENT)
    delivery = transport.deliver_now(settings_row, email_message)
    assert not delivery.ok and "not valid JSON" in delivery.error


def test_a_missing_esp_library_is_a_plain_problem(project, monkeypatch):
    def missing(path):
        raise ImportError("boto3")

    monkeypatch.setattr(backends, "import_string", missing)
    settings_row = EmailSettings(project=project, backend=EmailBackend.AMAZON_SES, provider_settings="{}")
    with pytest.raises(backends.ConnectionProblem, match=r'pip install "django-anymail\[amazon-ses\]"'):
        backends.connection_for(settings_row)


def test_an_unexpected_error_fails_one_message_and_keeps_the_batchs_answers(
    project, smtp_server, monkeypatch
):
    handler, port = smtp_server
    _smtp_settings(project, port)
    real_send = backends.SmtpBackend._send

    def send(self, email_message):
        if email_message.to == ["bug@example.com"]:
            raise RuntimeError("a bug")
        return real_send(self, email_message)

    monkeypatch.setattr(backends.SmtpBackend, "_send", send)
    messages = [
        _message(project, "a@example.com"),
        _message(project, "bug@example.com"),
        _message(project, "c@example.com"),
    ]
    first, bug, last = EmailTransport().send(project, messages)
    assert first.ok and last.ok
    assert not bug.ok and not bug.retry and not bug.unknown and "a bug" in bug.error
    assert [r[1] for r in handler.received] == [["a@example.com"], ["c@example.com"]]


@pytest.fixture
def smtp_server_with_login():
    from aiosmtpd.smtp import AuthResult

    def authenticator(server, session, envelope, mechanism, auth_data):
        # handled=False: aiosmtpd answers a refusal with 535 itself.
        ok = (auth_data.login, auth_data.password) == (b"user", b"s3cret")
        return AuthResult(success=ok, handled=False)

    handler = Handler()
    port = _free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_smtp_logs_in_with_the_stored_password(project, smtp_server_with_login):
    handler, port = smtp_server_with_login
    _smtp_settings(project, port, smtp_username="user", smtp_password="s3cret")
    (delivery,) = EmailTransport().send(project, [_message(project, "a@example.com")])
    assert delivery.ok and len(handler.received) == 1


def test_a_refused_login_retries_with_the_reason(project, smtp_server_with_login):
    handler, port = smtp_server_with_login
    _smtp_settings(project, port, smtp_username="user", smtp_password="wrong")
    (delivery,) = EmailTransport().send(project, [_message(project, "a@example.com")])
    assert not delivery.ok and delivery.retry and "refused the user name or password" in delivery.error
    assert handler.received == []
