"""The push simulator: FCM v1's send URL, the device page, its "Open" button; and /api/v1/push/opened."""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.models import Message
from controlpanel.models import ApiKey, Role
from controlpanel.services import Actor, create_api_key, revoke_api_key
from push.models import SimulatedPush, SimulatorKey
from push.simulator import opens, views
from subscribers import devices
from subscribers.models import Device, Event
from tests.factories import ProjectFactory, SubscriberFactory
from whatsapp.simulator.testing import httpx_transport

ACTOR = Actor(label="test")
pytestmark = pytest.mark.django_db
SEND = "/simulator/fcm/v1/projects/simulator/messages:send"
BEARER = {"Authorization": "Bearer simulator"}


@pytest.fixture(autouse=True)
def _simulator(settings, monkeypatch):
    settings.SIMULATOR_ENABLED = True
    settings.ROOT_URLCONF = "push.simulator.full_urls"
    settings.PUBLIC_BASE_URL = ""
    # The "Open" button's HTTP call reaches the API through Django's test client (same transaction).
    monkeypatch.setattr(opens, "transport", httpx_transport())


@pytest.fixture
def ana(project):
    return SubscriberFactory(project=project, name="Ana", phone="+4915112345678")


def device(project, subscriber, token: str = "sim-ana") -> Device:  # noqa: S107 - a push token
    registered, _ = devices.register(
        project=project,
        subscriber=subscriber,
        data=devices.DeviceData(token=token, platform="android"),
        actor=ACTOR,
    )
    return registered


def push_message(project, subscriber, **content) -> Message:
    """A push in the outbox as the push channel writes it (a journey's step named as its origin)."""
    return Message.objects.create(
        project=project,
        subscriber=subscriber,
        channel="push",
        status="sent",
        content={"title": "Sushi", "body": "20% off", "origin": {"journey": "j-1", "step": "s-1"}, **content},
    )


def fcm(message: dict, **body):
    return {"message": message, **body}


def send(client, body, headers=BEARER):
    return client.post(SEND, body, content_type="application/json", headers=headers)


def fcm_message(token: str = "sim-ana", message_id: str = "", **fields) -> dict:  # noqa: S107
    data = {"link": "app://offers"} | ({"message_id": message_id} if message_id else {})
    return {
        "token": token,
        "notification": {"title": "Sushi", "body": "20% off today", "image": "https://cdn.example/s.png"},
        "data": data,
        **fields,
    }


def error_code(response) -> str:
    details = response.json()["error"].get("details", [])
    return next(d["errorCode"] for d in details if "errorCode" in d)


# --- FCM v1's send URL ---------------------------------------------------------------------------


def test_an_active_devices_token_is_accepted_and_stored_with_its_project(
    client, project, ana, django_assert_max_num_queries
):
    device(project, ana)
    with django_assert_max_num_queries(2):  # the device's project, the INSERT
        response = send(client, fcm(fcm_message()))
    assert response.status_code == 200
    name = response.json()["name"]
    assert re.fullmatch(r"projects/simulator/messages/[0-9a-f]{32}", name)
    stored = SimulatedPush.objects.get(fcm_name=name)
    assert stored.project == project and stored.token == "sim-ana"
    assert stored.payload["notification"]["title"] == "Sushi"


def test_a_token_of_any_project_is_accepted(client):
    other = ProjectFactory()
    device(other, SubscriberFactory(project=other), token="sim-elsewhere")
    response = send(client, fcm(fcm_message("sim-elsewhere")))
    assert response.status_code == 200
    assert SimulatedPush.objects.get().project == other


@pytest.mark.parametrize("state", ["unknown", "removed", "disabled"])
def test_a_token_without_an_active_device_is_unregistered(client, project, ana, state):
    if state != "unknown":
        registered = device(project, ana)
        if state == "removed":
            devices.unregister(project=project, tokens=[registered.token])
        else:
            Device.objects.filter(pk=registered.pk).update(push_enabled=False)
    response = send(client, fcm(fcm_message()))
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
    assert error_code(response) == "UNREGISTERED"
    assert not SimulatedPush.objects.exists()


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"notification": {"title": "x"}}, "message.token"),
        (fcm_message(token=""), "message.token"),
        (fcm_message(token=12), "message.token"),
        (fcm_message(token="sim ana"), "message.token"),
        (fcm_message(token="sim-\x00"), "message.token"),
        ({**fcm_message(), "data": {"k": "v\x00"}}, "message.data.k"),
        (
            {**fcm_message(), "android": {"notification": {"title": "\ud800"}}},
            "message.android.notification.title",
        ),
        ({**fcm_message(), "data": {"count": 3}}, "message.data[count].value"),
        ({**fcm_message(), "data": {"flag": True}}, "message.data[flag].value"),
        ({**fcm_message(), "data": ["a"]}, "message.data"),
        ({**fcm_message(), "data": {"google.x": "1"}}, "message.data[google.x]"),
        ({**fcm_message(), "notification": {"title": 5}}, "message.notification.title"),
        ({**fcm_message(), "notification": {"sound": "x"}}, "message.notification"),
        ({**fcm_message(), "topic": "news"}, "message.token"),
        ({**fcm_message(), "priority": "high"}, "message"),
        ({**fcm_message(), "android": "fast"}, "message.android"),
        ("not an object", "message"),
    ],
)
def test_bad_messages_are_invalid_argument_in_fcms_shape(client, project, ana, message, field):
    device(project, ana)
    response = send(client, fcm(message))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error_code(response) == "INVALID_ARGUMENT"
    violations = next(d for d in error["details"] if "fieldViolations" in d)["fieldViolations"]
    assert violations[0]["field"] == field
    assert not SimulatedPush.objects.exists()


def test_a_body_that_is_no_json_or_no_message_is_refused(client, project, ana):
    device(project, ana)
    raw = client.post(SEND, "{not json", content_type="application/json", headers=BEARER)
    assert raw.status_code == 400 and raw.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert send(client, {"messages": []}).status_code == 400
    assert client.get(SEND, headers=BEARER).status_code == 405


def test_no_bearer_token_is_unauthenticated(client, project, ana):
    device(project, ana)
    response = send(client, fcm(fcm_message()), headers={})
    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert not SimulatedPush.objects.exists()


def test_validate_only_checks_and_stores_nothing(client, project, ana):
    device(project, ana)
    response = send(client, fcm(fcm_message(), validate_only=True))
    assert response.status_code == 200 and response.json()["name"].endswith("/fake_message_id")
    assert not SimulatedPush.objects.exists()


# --- the device page -----------------------------------------------------------------------------


def page(project) -> str:
    return reverse("push_simulator:devices") + f"?project={project.slug}"


def test_the_page_needs_a_login_and_a_membership(client, project, outsider):
    response = client.get(page(project))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(outsider)
    assert client.get(page(project)).status_code == 404
    assert client.get(reverse("push_simulator:devices") + "?project=a%00b").status_code == 404


def test_a_viewer_sees_the_devices_but_adds_none(client, project, viewer, ana):
    device(project, ana)
    device(project, ana, token="real-app-token")  # not simulated: never shown
    client.force_login(viewer)
    response = client.get(page(project))
    assert response.status_code == 200
    assert response.content.count(b'data-testid="push-device"') == 1
    assert b"real-app-token" not in response.content
    assert b'data-testid="add-device"' not in response.content
    refused = client.post(page(project), {"subscriber": "+4915112345678", "platform": "ios"})
    assert refused.status_code == 403
    assert Device.objects.count() == 2


def test_adding_a_device_registers_a_sim_token(owner_client, project, ana):
    response = owner_client.post(page(project), {"subscriber": "+49 151 12345678", "platform": "ios"})
    assert response.status_code == 302
    added = Device.objects.get()
    assert added.token.startswith("sim-") and added.platform == "ios" and added.subscriber == ana
    unknown = owner_client.post(page(project), {"subscriber": "nobody@example.com", "platform": "ios"})
    assert unknown.status_code == 400 and b"No subscriber with this phone" in unknown.content


def test_the_page_reads_the_same_number_of_queries_for_more_devices_and_pushes(
    owner_client, client, project, ana
):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert owner_client.get(page(project)).status_code == 200
        return len(captured)

    device(project, ana)
    send(client, fcm(fcm_message()))
    few = queries()
    for n in range(3):
        device(project, SubscriberFactory(project=project), token=f"sim-{n}")
        send(client, fcm(fcm_message(f"sim-{n}")))
        send(client, fcm(fcm_message(f"sim-{n}")))
    assert queries() == few


def test_pushes_are_shown_newest_first_and_the_poll_answers_204_until_something_changes(
    owner_client, client, project, ana
):
    device(project, ana)
    send(client, fcm(fcm_message() | {"notification": {"title": "First", "body": "one"}}))
    send(client, fcm(fcm_message() | {"notification": {"title": "Second", "body": "two"}}))
    html = owner_client.get(page(project)).content.decode()
    assert html.index("Second") < html.index("First")
    assert "https://cdn.example/s.png" not in html  # these two carry no image
    version = re.search(r"v=([^\"&]+)\"", html).group(1)
    polled = owner_client.get(page(project) + f"&v={version}", headers={"HX-Request": "true"})
    assert polled.status_code == 204
    send(client, fcm(fcm_message()))
    changed = owner_client.get(page(project) + f"&v={version}", headers={"HX-Request": "true"})
    assert changed.status_code == 200 and b"https://cdn.example/s.png" in changed.content
    assert b"<html" not in changed.content  # the list only


def test_a_device_shows_its_newest_pushes_and_a_removal_reaches_the_poll(owner_client, client, project, ana):
    registered = device(project, ana)
    for n in range(views.PUSHES_PER_DEVICE + 2):
        send(client, fcm(fcm_message() | {"notification": {"title": f"Push {n:02d}"}}))
    html = owner_client.get(page(project)).content.decode()
    assert html.count('data-testid="push"') == views.PUSHES_PER_DEVICE
    assert "Push 21" in html and "Push 01" not in html
    version = re.search(r"v=([^\"&]+)\"", html).group(1)
    devices.unregister(project=project, device_ids=[registered.pk])
    polled = owner_client.get(page(project) + f"&v={version}", headers={"HX-Request": "true"})
    assert polled.status_code == 200 and b"unregistered by the app" in polled.content


def test_open_reports_through_the_api_and_records_push_opened_once(owner_client, client, project, ana):
    registered = device(project, ana)
    message = push_message(project, ana)
    send(client, fcm(fcm_message(message_id=str(message.public_id))))
    simulated = SimulatedPush.objects.get()

    response = owner_client.post(
        reverse("push_simulator:open") + f"?project={project.slug}",
        {"push": simulated.fcm_name},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200 and b'data-testid="push-opened"' in response.content
    simulated.refresh_from_db()
    message.refresh_from_db()
    assert simulated.opened_at is not None and message.opened_at is not None
    event = Event.objects.get(name="PushOpened")
    assert event.subscriber == ana
    assert event.attributes == {
        "message": str(message.public_id),
        "journey": "j-1",
        "step": "s-1",
        "title": "Sushi",
        "device": str(registered.public_id),
    }
    # The simulator's own key, created once and reused; the plaintext is stored encrypted.
    key = ApiKey.objects.get(project=project)
    assert key.name == "Push simulator" and key.last_used_at is not None
    assert SimulatorKey.objects.get(project=project).api_key == key

    SimulatedPush.objects.update(opened_at=None)
    owner_client.post(
        reverse("push_simulator:open") + f"?project={project.slug}", {"push": simulated.fcm_name}
    )
    assert Event.objects.filter(name="PushOpened").count() == 1
    assert ApiKey.objects.filter(project=project).count() == 1


def test_a_revoked_simulator_key_is_replaced(owner_client, client, project, ana):
    device(project, ana)
    message = push_message(project, ana)
    first = opens.api_key_for(project)
    revoke_api_key(project=project, key=SimulatorKey.objects.get().api_key, actor=ACTOR)
    send(client, fcm(fcm_message(message_id=str(message.public_id))))
    owner_client.post(
        reverse("push_simulator:open") + f"?project={project.slug}",
        {"push": SimulatedPush.objects.get().fcm_name},
    )
    assert opens.api_key_for(project) != first
    assert Event.objects.filter(name="PushOpened").count() == 1


def test_a_push_that_names_no_message_cannot_be_opened(owner_client, client, project, ana):
    device(project, ana)
    send(client, fcm(fcm_message()))
    html = owner_client.get(page(project)).content
    assert b'data-testid="open-push"' not in html
    response = owner_client.post(
        reverse("push_simulator:open") + f"?project={project.slug}",
        {"push": SimulatedPush.objects.get().fcm_name},
        headers={"HX-Request": "true"},
    )
    assert b'data-testid="open-error"' in response.content
    assert not Event.objects.filter(name="PushOpened").exists()


def test_another_projects_push_is_not_found_and_viewers_cannot_open(client, project, viewer, member_of):
    other = ProjectFactory()
    device(other, SubscriberFactory(project=other), token="sim-other")
    send(client, fcm(fcm_message("sim-other")))
    client.force_login(member_of(Role.OWNER))
    url = reverse("push_simulator:open") + f"?project={project.slug}"
    assert client.post(url, {"push": SimulatedPush.objects.get().fcm_name}).status_code == 404
    assert client.post(url, {"push": "projects/x\x00"}).status_code == 404
    client.force_login(viewer)
    assert client.post(url, {"push": SimulatedPush.objects.get().fcm_name}).status_code == 403


def test_the_sidebar_links_the_push_simulator(owner_client, project):
    html = owner_client.get(reverse("controlpanel:dashboard", args=[project.slug])).content.decode()
    assert f'href="/simulator/push/?project={project.slug}" data-testid="push-simulator"' in html


# --- /api/v1/push/opened -------------------------------------------------------------------------


@pytest.fixture
def api_post(client, project):
    _, raw = create_api_key(project=project, name="app", actor=ACTOR)

    def post(body: dict):
        return client.post(
            "/api/v1/push/opened",
            body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {raw}"},
        )

    return post


def test_opened_marks_the_message_and_answers_the_same_event_again(api_post, project, ana):
    message = push_message(project, ana)
    first = api_post({"message": str(message.public_id)})
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["message"] == str(message.public_id) and body["event"]["name"] == "PushOpened"
    again = api_post({"message": str(message.public_id)})
    assert again.json()["event"]["id"] == body["event"]["id"]
    assert again.json()["opened_at"] == body["opened_at"]
    assert Event.objects.filter(name="PushOpened").count() == 1
    assert "device" not in Event.objects.get().attributes


def test_opened_refuses_what_is_not_a_push_of_this_project(api_post, project, ana):
    email = Message.objects.create(project=project, subscriber=ana, channel="email", status="sent")
    other = ProjectFactory()
    theirs = push_message(other, SubscriberFactory(project=other))
    for message_id in (email.public_id, theirs.public_id, uuid.uuid4()):
        response = api_post({"message": str(message_id)})
        assert response.status_code == 404 and response.json()["code"] == "message_not_found"
    mine = push_message(project, ana)
    device(other, theirs.subscriber, token="sim-theirs")
    unknown_token = api_post({"message": str(mine.public_id), "token": "sim-theirs"})
    assert unknown_token.status_code == 404 and unknown_token.json()["field"] == "token"
    assert api_post({"message": "not-a-uuid"}).status_code == 422
    assert not Event.objects.filter(name="PushOpened").exists()
