"""The standalone push simulator's lean FCM route answers as the Django view does (fastpath.py)."""

from __future__ import annotations

import io
import json

import pytest

from push.models import SimulatedPush
from push.simulator import fastpath
from tests.factories import SubscriberFactory
from tests.push.test_simulator import SEND, device, fcm, fcm_message

pytestmark = pytest.mark.django_db


def call(app, path: str, body: bytes, *, method: str = "POST", authorization: str = "Bearer x"):
    seen: dict = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "HTTP_AUTHORIZATION": authorization,
    }
    answer = b"".join(app(environ, start_response))
    return seen["status"], json.loads(answer) if answer.startswith(b"{") else answer


def django_app(environ, start_response):
    start_response("418 I'm a teapot", [])
    return [b"django"]


def test_a_send_is_answered_and_stored_without_django(project):
    device(project, SubscriberFactory(project=project))
    app = fastpath.wrap(django_app)
    status, data = call(app, SEND, json.dumps(fcm(fcm_message())).encode())
    assert status == "200 OK"
    assert SimulatedPush.objects.get(fcm_name=data["name"]).project == project


def test_errors_are_fcms_as_the_view_answers_them(client, project):
    app = fastpath.wrap(django_app)
    body = json.dumps(fcm(fcm_message(token="sim-nobody"))).encode()
    status, data = call(app, SEND, body)
    view = client.post(SEND, body, content_type="application/json", headers={"Authorization": "Bearer x"})
    assert status == "404 Not Found" and data == view.json()
    status, data = call(app, SEND, body, authorization="")
    assert status.startswith("401") and data["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", SEND), ("POST", "/simulator/push/"), ("POST", "/simulator/fcm/v1/projects/p/messages:batch")],
)
def test_other_requests_go_to_django(method, path):
    status, answer = call(fastpath.wrap(django_app), path, b"{}", method=method)
    assert status.startswith("418") and answer == b"django"
