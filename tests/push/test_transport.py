"""The push transport against a fake FCM: a local HTTP/1.1 server thread, no internet."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.auth import exceptions as auth_exceptions
from google.auth import transport as auth_transport

from campaigns.channel_policy import NO_DEVICE
from campaigns.channels import transport_for
from controlpanel.services import Actor
from push import fcm, services
from push.models import PushMode, PushSettings
from push.transport import PushTransport
from subscribers import devices
from tests.factories import SubscriberFactory

from .conftest import DeviceFactory

ACTOR = Actor(label="test")
SLOW = "slow"  # an answer that never comes in time (READ_TIMEOUT is shortened)
DROP = "drop"  # the connection closes without an answer


class FakeFcm:
    """Answers per device token: ``answers[token] = (status, body, headers)``, SLOW or DROP;
    FCM's success answer for the others. Records every request (path, headers, body)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: dict[str, object] = {}

    def bodies(self) -> list[dict]:
        return [r["body"]["message"] for r in self.requests]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as FCM

    def do_POST(self):
        fake: FakeFcm = self.server.fake
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        token = body["message"]["token"]
        answer = fake.answers.get(token, (200, {"name": f"projects/p/messages/{token}"}, {}))
        if answer == SLOW:
            time.sleep(0.5)
            return
        if answer == DROP:
            self.close_connection = True
            return
        status, payload, headers = answer
        raw = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


def fcm_error(status: int, state: str, code: str | None, message: str = "oops", extra: list | None = None):
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
    details = (details if code else []) + (extra or [])
    return {"error": {"code": status, "message": message, "status": state, "details": details}}


@pytest.fixture(scope="module")
def _server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def fake(_server, monkeypatch, settings):
    _server.fake = FakeFcm()
    client = fcm.FcmClient(8)  # a fresh loop and pool per test: no connection outlives its test
    monkeypatch.setattr(fcm, "client", lambda: client)
    monkeypatch.setattr(fcm, "READ_TIMEOUT", 0.2)
    base = f"http://127.0.0.1:{_server.server_port}"
    settings.PUSH_SIMULATOR_URL = f"{base}/simulator/fcm"
    settings.PUSH_FCM_URL = f"{base}/fcm"
    yield _server.fake
    client.loop.call_soon_threadsafe(client.loop.stop)


@pytest.fixture
def removed(monkeypatch):
    calls = []
    monkeypatch.setattr(devices, "remove", lambda **kwargs: calls.append(kwargs) or len(kwargs["tokens"]))
    return calls


def _queue(project, subscriber, template, **values):
    return services.send_push(
        project=project,
        subscriber=subscriber,
        template=template,
        actor=ACTOR,
        values=values or {"order": "1"},
    )


def test_the_push_transport_is_registered():
    assert isinstance(transport_for("push"), PushTransport)


@pytest.mark.django_db
def test_simulator_mode_posts_fcm_shaped_requests_to_each_device(
    project, subscriber, template, fake, removed
):
    template.image_url = "https://cdn.example.com/a.png"
    template.link = "https://shop.example.com/o/{{ values.order }}"
    template.data = {"order": "{{ values.order }}"}
    template.save()
    first = DeviceFactory(subscriber=subscriber)
    second = DeviceFactory(subscriber=subscriber)
    message = _queue(project, subscriber, template, order="7")
    [delivery] = PushTransport().send(project, [message])
    assert delivery.ok and delivery.provider_message_id == f"projects/p/messages/{first.token}"
    assert {r["path"] for r in fake.requests} == {"/simulator/fcm/v1/projects/simulator/messages:send"}
    assert {r["headers"]["Authorization"] for r in fake.requests} == {"Bearer simulator"}
    assert sorted(b["token"] for b in fake.bodies()) == sorted([first.token, second.token])
    body = fake.bodies()[0]
    assert body["notification"] == {
        "title": "Hello Ada",
        "body": "Your order 7 is ready",
        "image": "https://cdn.example.com/a.png",
    }
    assert body["data"] == {
        "order": "7",
        "link": "https://shop.example.com/o/7",
        "message_id": str(message.public_id),
    }
    assert body["webpush"] == {"fcm_options": {"link": "https://shop.example.com/o/7"}}
    assert body["apns"]["fcm_options"] == {"image": "https://cdn.example.com/a.png"}
    assert removed == []


@pytest.mark.django_db
def test_devices_of_a_batch_are_read_in_one_query(
    project, template, fake, removed, django_assert_num_queries
):
    messages = []
    for _ in range(5):
        device = DeviceFactory(subscriber=SubscriberFactory(project=project))
        messages.append(_queue(project, device.subscriber, template))
    with django_assert_num_queries(2):  # the settings row, the devices
        deliveries = PushTransport().send(project, messages)
    assert all(d.ok for d in deliveries)
    assert len(fake.requests) == 5


@pytest.mark.django_db
def test_unregistered_and_invalid_tokens_remove_the_devices_once_per_batch(project, template, fake, removed):
    gone = DeviceFactory(subscriber=SubscriberFactory(project=project))
    invalid = DeviceFactory(subscriber=SubscriberFactory(project=project))
    also_gone = DeviceFactory(subscriber=SubscriberFactory(project=project))
    fake.answers[gone.token] = (404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), {})
    fake.answers[invalid.token] = (
        400,
        fcm_error(
            400,
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "Invalid registration token",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "message.token"}],
                }
            ],
        ),
        {},
    )
    fake.answers[also_gone.token] = (404, {}, {})
    messages = [_queue(project, d.subscriber, template) for d in (gone, invalid, also_gone)]
    deliveries = PushTransport().send(project, messages)
    assert [d.ok or d.retry or d.unknown for d in deliveries] == [False, False, False]
    assert [d.error_code for d in deliveries] == ["UNREGISTERED", "INVALID_ARGUMENT", "404"]
    assert len(removed) == 1
    assert sorted(removed[0]["tokens"]) == sorted([gone.token, invalid.token, also_gone.token])
    assert removed[0]["project"] == project


@pytest.mark.django_db
def test_one_accepting_device_is_enough(project, subscriber, template, fake, removed):
    dead = DeviceFactory(subscriber=subscriber)
    alive = DeviceFactory(subscriber=subscriber)
    fake.answers[dead.token] = (404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), {})
    [delivery] = PushTransport().send(project, [_queue(project, subscriber, template)])
    assert delivery.ok and delivery.provider_message_id.endswith(alive.token)
    assert removed[0]["tokens"] == [dead.token]


@pytest.mark.django_db
def test_invalid_argument_about_the_payload_fails_without_removing(project, device, template, fake, removed):
    fake.answers[device.token] = (
        400,
        fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid JSON payload"),
        {},
    )
    [delivery] = PushTransport().send(project, [_queue(project, device.subscriber, template)])
    assert not delivery.ok and not delivery.retry and not delivery.unknown
    assert "Invalid JSON payload" in delivery.error
    assert removed == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "state", "code", "headers", "after"),
    [
        (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", {"Retry-After": "30"}, 30.0),
        (503, "UNAVAILABLE", "UNAVAILABLE", {}, None),
        (500, "INTERNAL", "INTERNAL", {"Retry-After": "5"}, 5.0),
    ],
)
def test_transient_errors_retry_honouring_retry_after(
    project, device, template, fake, removed, status, state, code, headers, after
):
    fake.answers[device.token] = (status, fcm_error(status, state, code), headers)
    [delivery] = PushTransport().send(project, [_queue(project, device.subscriber, template)])
    assert delivery.retry and not delivery.ok
    assert delivery.retry_after == after
    assert delivery.error_code == code


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "state", "code", "words"),
    [
        (403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "another Firebase project"),
        (401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", "APNs"),
        (401, "UNAUTHENTICATED", None, "upload a current service-account key"),
        (403, "PERMISSION_DENIED", None, "Firebase Cloud Messaging API Admin"),
    ],
)
def test_settings_errors_fail_with_plain_words(
    project, device, template, fake, removed, status, state, code, words
):
    fake.answers[device.token] = (status, fcm_error(status, state, code), {})
    [delivery] = PushTransport().send(project, [_queue(project, device.subscriber, template)])
    assert not delivery.ok and not delivery.retry and not delivery.unknown
    assert words in delivery.error
    assert removed == []


@pytest.mark.django_db
def test_a_timeout_after_sending_is_unknown_a_broken_connection_retries(
    project, subscriber, template, fake, removed
):
    device = DeviceFactory(subscriber=subscriber)
    other = DeviceFactory(subscriber=SubscriberFactory(project=project))
    fake.answers[device.token] = SLOW
    fake.answers[other.token] = DROP
    unknown, retry = PushTransport().send(
        project, [_queue(project, subscriber, template), _queue(project, other.subscriber, template)]
    )
    assert unknown.unknown and not unknown.retry and not unknown.ok
    assert unknown.error_code == "NO_ANSWER"
    assert retry.retry and not retry.unknown


@pytest.mark.django_db
def test_firebase_unreachable_retries(project, device, template, fake, removed, settings):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.PUSH_SIMULATOR_URL = f"http://127.0.0.1:{port}/simulator/fcm"
    [delivery] = PushTransport().send(project, [_queue(project, device.subscriber, template)])
    assert delivery.retry and delivery.error_code == "CONNECT"


@pytest.mark.django_db
def test_connections_are_kept_alive_across_requests(project, template, fake, removed, monkeypatch):
    opened = []
    original = fcm._Connection.__init__

    def counting(self, reader, writer):
        opened.append(1)
        original(self, reader, writer)

    monkeypatch.setattr(fcm._Connection, "__init__", counting)
    device = DeviceFactory(subscriber=SubscriberFactory(project=project))
    for _ in range(3):
        assert PushTransport().send(project, [_queue(project, device.subscriber, template)])[0].ok
    assert len(opened) == 1 and len(fake.requests) == 3


@pytest.mark.django_db
def test_unknown_wins_over_retry_for_one_message(project, subscriber, template, fake, removed):
    slow = DeviceFactory(subscriber=subscriber)
    busy = DeviceFactory(subscriber=subscriber)
    fake.answers[slow.token] = SLOW
    fake.answers[busy.token] = (503, fcm_error(503, "UNAVAILABLE", "UNAVAILABLE"), {})
    [delivery] = PushTransport().send(project, [_queue(project, subscriber, template)])
    assert delivery.unknown  # never resent blindly: the first device may have shown it


@pytest.mark.django_db
def test_a_message_whose_devices_went_away_fails(project, device, template, fake, removed):
    message = _queue(project, device.subscriber, template)
    device.push_enabled = False
    device.save()
    [delivery] = PushTransport().send(project, [message])
    assert not delivery.ok and delivery.error == NO_DEVICE
    assert fake.requests == []


# --- Firebase mode and OAuth -----------------------------------------------------------------


class FakeTokenEndpoint(auth_transport.Request):
    """google-auth's token request, answered without Google."""

    def __init__(self, status: int = 200, expires_in: int = 3600):
        self.calls = 0
        self.status = status
        self.expires_in = expires_in

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        self.calls += 1
        assert url == "https://oauth2.googleapis.com/token"
        assert b"assertion=" in body  # the JWT signed with the service account's key
        data = (
            {
                "access_token": f"ya29.token-{self.calls}",
                "expires_in": self.expires_in,
                "token_type": "Bearer",
            }
            if self.status == 200
            else {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        )

        class Response:
            status = self.status
            headers: dict = {}

        response = Response()
        response.data = json.dumps(data).encode()
        return response


@pytest.fixture
def firebase(project, service_account_json, monkeypatch):
    PushSettings.objects.create(
        project=project,
        mode=PushMode.FCM,
        service_account=service_account_json,
        fcm_project_id="shop-app-1234",
    )
    endpoint = FakeTokenEndpoint()
    monkeypatch.setattr(fcm, "auth_request", lambda: endpoint)
    monkeypatch.setattr(fcm, "_credentials", {})
    return endpoint


@pytest.mark.django_db
def test_firebase_mode_uses_the_oauth_token_cached_per_project(
    project, device, template, fake, removed, firebase
):
    message = _queue(project, device.subscriber, template)
    PushTransport().send(project, [message])
    PushTransport().send(project, [message])
    assert firebase.calls == 1
    assert {r["path"] for r in fake.requests} == {"/fcm/v1/projects/shop-app-1234/messages:send"}
    assert {r["headers"]["Authorization"] for r in fake.requests} == {"Bearer ya29.token-1"}


@pytest.mark.django_db
def test_the_token_is_refreshed_near_expiry(project, device, template, fake, removed, firebase):
    message = _queue(project, device.subscriber, template)
    PushTransport().send(project, [message])
    _, credentials = fcm._credentials[project.pk]
    # Within google-auth's refresh margin (its expiry is naive UTC).
    credentials.expiry = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=60)
    PushTransport().send(project, [message])
    assert firebase.calls == 2
    assert fake.requests[-1]["headers"]["Authorization"] == "Bearer ya29.token-2"


@pytest.mark.django_db
def test_a_new_key_forgets_the_cached_token(
    project, device, template, fake, removed, firebase, service_account_json
):
    PushTransport().send(project, [_queue(project, device.subscriber, template)])
    info = json.loads(service_account_json) | {"private_key_id": "rotated"}
    PushSettings.objects.filter(project=project).update(service_account=json.dumps(info))
    PushTransport().send(project, [_queue(project, device.subscriber, template)])
    assert firebase.calls == 2


@pytest.mark.django_db
def test_google_refusing_the_key_fails_the_batch_with_words(
    project, device, template, fake, removed, firebase
):
    firebase.status = 400
    [delivery] = PushTransport().send(project, [_queue(project, device.subscriber, template)])
    assert not delivery.ok and not delivery.retry
    assert "Google refused the service account" in delivery.error
    assert fake.requests == []


@pytest.mark.django_db
def test_google_unreachable_raises_so_the_sender_requeues(
    project, device, template, fake, removed, firebase, monkeypatch
):
    def unreachable(*args, **kwargs):
        raise auth_exceptions.TransportError("connection refused")

    monkeypatch.setattr(firebase, "__class__", type("Down", (FakeTokenEndpoint,), {"__call__": unreachable}))
    with pytest.raises(auth_exceptions.TransportError):
        PushTransport().send(project, [_queue(project, device.subscriber, template)])
    assert fake.requests == []


@pytest.mark.django_db
def test_firebase_mode_without_a_key_fails_with_words(project, device, template, fake, removed):
    PushSettings.objects.create(project=project, mode=PushMode.FCM)
    [delivery] = PushTransport().send(project, [_queue(project, device.subscriber, template)])
    assert not delivery.ok and "no service-account key" in delivery.error
    assert fake.requests == []


@pytest.mark.django_db
def test_a_failing_device_removal_does_not_resend_the_batch(project, device, template, fake, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(devices, "remove", broken)
    fake.answers[device.token] = (404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), {})
    [delivery] = PushTransport().send(project, [_queue(project, device.subscriber, template)])
    assert not delivery.ok and delivery.error_code == "UNREGISTERED"  # answered, not raised
