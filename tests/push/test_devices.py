"""Devices: the write path (subscribers.devices) and /api/v1/devices."""

from __future__ import annotations

import secrets
import string
import uuid

import pytest

from controlpanel.models import AuditEntry
from controlpanel.services import Actor, create_api_key
from subscribers import devices
from subscribers.errors import InvalidInput
from subscribers.models import Device
from tests.factories import ProjectFactory, SubscriberFactory

ACTOR = Actor(label="test")


def data(token: str = "tok-1", **fields) -> devices.DeviceData:  # noqa: S107 - a push token
    return devices.DeviceData(token=token, platform=fields.pop("platform", "android"), **fields)


@pytest.fixture
def ana(project):
    return SubscriberFactory(project=project, phone="+4915112345678", external_id="crm-1")


@pytest.fixture
def api(client, project):
    _, raw = create_api_key(project=project, name="app", actor=ACTOR)

    class Api:
        def post(self, path: str, body: dict):
            return client.post(path, body, content_type="application/json", headers=self.auth)

        def get(self, path: str, params: dict):
            return client.get(path, params, headers=self.auth)

        def delete(self, path: str):
            return client.delete(path, headers=self.auth)

        auth = {"Authorization": f"Bearer {raw}"}

    return Api()


# --- the service ---------------------------------------------------------------------------------


def test_register_creates_then_refreshes_the_same_row(project, ana):
    device, created = devices.register(
        project=project,
        subscriber=ana,
        data=data(app_version="1.0", language="de", time_zone="Europe/Berlin"),
        actor=ACTOR,
    )
    assert created and device.platform == "android" and device.language == "de"
    again, created = devices.register(
        project=project, subscriber=ana, data=data(platform="ios", app_version="1.1"), actor=ACTOR
    )
    assert not created and again.pk == device.pk
    again.refresh_from_db()
    assert (again.platform, again.app_version, again.language) == ("ios", "1.1", "")
    assert Device.objects.for_project(project).count() == 1
    # A new device is audited; a refresh, which apps send at every start, is not.
    assert list(AuditEntry.objects.filter(project=project).values_list("action", flat=True)) == [
        "device.registered"
    ]


def test_a_token_registered_for_another_subscriber_moves_to_them(project, ana):
    ben = SubscriberFactory(project=project)
    device, _ = devices.register(project=project, subscriber=ana, data=data(), actor=ACTOR)
    moved, created = devices.register(project=project, subscriber=ben, data=data(), actor=ACTOR)
    assert not created and moved.pk == device.pk
    assert Device.objects.get(pk=device.pk).subscriber == ben
    assert ana.devices.count() == 0
    entry = AuditEntry.objects.get(action="device.reregistered")
    assert entry.changes["subscriber"] == [str(ana.public_id), str(ben.public_id)]


def test_a_removed_device_is_active_again_when_it_registers(project, ana):
    device, _ = devices.register(project=project, subscriber=ana, data=data(), actor=ACTOR)
    assert devices.remove(project=project, tokens=["tok-1"], reason="UNREGISTERED at FCM") == 1
    assert not Device.objects.active().filter(pk=device.pk).exists()
    _, created = devices.register(project=project, subscriber=ana, data=data(), actor=ACTOR)
    device.refresh_from_db()
    assert not created and device.removed_at is None and device.removed_reason == ""
    assert Device.objects.active().filter(pk=device.pk).exists()


def test_remove_is_set_based_and_counts_only_active_devices(project, ana):
    one, _ = devices.register(project=project, subscriber=ana, data=data("a"), actor=ACTOR)
    two, _ = devices.register(project=project, subscriber=ana, data=data("b"), actor=ACTOR)
    devices.register(project=project, subscriber=ana, data=data("c"), actor=ACTOR)
    assert devices.remove(project=project, tokens=["a"], device_ids=[two.pk], reason="gone") == 2
    assert devices.remove(project=project, tokens=["a", "b"], reason="again") == 0
    one.refresh_from_db()
    assert one.removed_reason == "gone"  # the first removal's reason stays
    assert devices.remove(project=project, reason="nothing named") == 0
    assert Device.objects.active().filter(project=project).count() == 1


def test_unregister_says_the_app_did_it(project, ana):
    device, _ = devices.register(project=project, subscriber=ana, data=data(), actor=ACTOR)
    assert devices.unregister(project=project, tokens=["tok-1"]) == 1
    device.refresh_from_db()
    assert device.removed_reason == "unregistered by the app" and device.removed_at is not None


def test_remove_never_touches_another_projects_device_with_the_same_token(project, ana):
    other = ProjectFactory()
    theirs, _ = devices.register(
        project=other, subscriber=SubscriberFactory(project=other), data=data(), actor=ACTOR
    )
    devices.register(project=project, subscriber=ana, data=data(), actor=ACTOR)
    assert devices.remove(project=project, tokens=["tok-1"], device_ids=[theirs.pk], reason="x") == 1
    theirs.refresh_from_db()
    assert theirs.removed_at is None


def test_a_subscriber_of_another_project_is_refused(project):
    stranger = SubscriberFactory(project=ProjectFactory())
    with pytest.raises(InvalidInput) as caught:
        devices.register(project=project, subscriber=stranger, data=data(), actor=ACTOR)
    assert caught.value.field == "subscriber"
    assert not Device.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"token": ""}, "token"),
        ({"token": "has space"}, "token"),
        ({"token": "tab\there"}, "token"),
        ({"token": "bell\x07"}, "token"),
        ({"token": "x" * 2049}, "token"),
        ({"token": "tökén"}, "token"),
        ({"platform": "windows"}, "platform"),
        ({"app_version": "9" * 65}, "app_version"),
        ({"app_version": "1.0\x00"}, "app_version"),
        ({"language": "german!"}, "language"),
        ({"language": "d"}, "language"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"push_enabled": "yes"}, "push_enabled"),
    ],
)
def test_bad_input_is_refused_naming_the_field(project, ana, fields, field):
    values = {"token": "tok-1", "platform": "android", **fields}
    with pytest.raises(InvalidInput) as caught:
        devices.register(project=project, subscriber=ana, data=devices.DeviceData(**values), actor=ACTOR)
    assert caught.value.field == field
    assert not Device.objects.exists()


def test_the_longest_token_and_a_regional_language_are_taken(project, ana):
    # Random, so PostgreSQL cannot compress it below its btree's limit: the index must take it.
    token = "".join(secrets.choice(string.ascii_letters + string.digits + ":-_") for _ in range(2048))
    device, _ = devices.register(
        project=project,
        subscriber=ana,
        data=data(token, language="pt_BR", time_zone="America/Sao_Paulo"),
        actor=ACTOR,
    )
    assert Device.objects.get(pk=device.pk).token == token


# --- the API -------------------------------------------------------------------------------------


def body(**fields) -> dict:
    return {"subscriber": {"phone": "+4915112345678"}, "token": "tok-1", "platform": "android", **fields}


def test_post_creates_201_then_refreshes_200(api, ana):
    first = api.post("/api/v1/devices", body(app_version="2.0", language="de", time_zone="Europe/Berlin"))
    assert first.status_code == 201, first.content
    device = first.json()
    assert device["subscriber"] == {"id": str(ana.public_id)}
    assert (device["platform"], device["app_version"], device["push_enabled"]) == ("android", "2.0", True)
    assert device["removed_at"] is None
    assert "token" not in device and "phone" not in str(device)
    again = api.post("/api/v1/devices", body(subscriber={"external_id": "crm-1"}, push_enabled=False))
    assert again.status_code == 200 and again.json()["id"] == device["id"]
    assert again.json()["push_enabled"] is False


def test_post_by_subscriber_id_moves_the_token(api, project, ana):
    ben = SubscriberFactory(project=project)
    api.post("/api/v1/devices", body())
    moved = api.post("/api/v1/devices", body(subscriber={"id": str(ben.public_id)}))
    assert moved.status_code == 200 and moved.json()["subscriber"] == {"id": str(ben.public_id)}
    assert Device.objects.get().subscriber == ben


@pytest.mark.parametrize(
    "subscriber",
    [{"phone": "+4915199999999"}, {"external_id": "nobody"}, {"id": str(uuid.uuid4())}],
)
def test_an_unknown_subscriber_is_a_404(api, ana, subscriber):
    response = api.post("/api/v1/devices", body(subscriber=subscriber))
    assert response.status_code == 404
    assert response.json()["code"] == "subscriber_not_found"
    assert response.json()["field"] == f"subscriber.{next(iter(subscriber))}"
    assert not Device.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"token": "two words"}, "token"),
        ({"token": ""}, "token"),
        ({"platform": "symbian"}, "platform"),
        ({"language": "x" * 17}, "language"),
        ({"language": "12"}, "language"),
        ({"time_zone": "Europe/Atlantis"}, "time_zone"),
        ({"push_enabled": "yes"}, "push_enabled"),
        ({"subscriber": {"phone": "+4915112345678", "external_id": "crm-1"}}, "subscriber"),
        ({"subscriber": {}}, "subscriber"),
        ({"subscriber": {"phone": "12"}}, "subscriber.phone"),
        ({"subscriber": {"external_id": "\ud800"}}, "subscriber.external_id"),
        ({"time_zone": "\ud800"}, "time_zone"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(api, ana, fields, field):
    response = api.post("/api/v1/devices", body(**fields))
    assert response.status_code == 422, response.content
    assert response.json()["field"] == field
    assert not Device.objects.exists()


def test_list_shows_the_subscribers_devices_newest_first(api, project, ana):
    api.post("/api/v1/devices", body(token="old"))
    api.post("/api/v1/devices", body(token="new", platform="ios"))
    SubscriberFactory(project=project)  # someone else's device is never listed
    response = api.get("/api/v1/devices", {"subscriber": str(ana.public_id)})
    assert response.status_code == 200
    listed = response.json()
    assert [d["platform"] for d in listed["devices"]] == ["ios", "android"] and listed["more"] is False
    limited = api.get("/api/v1/devices", {"subscriber": str(ana.public_id), "limit": 1}).json()
    assert len(limited["devices"]) == 1 and limited["more"] is True
    missing = api.get("/api/v1/devices", {"subscriber": str(uuid.uuid4())})
    assert missing.status_code == 404 and missing.json()["code"] == "subscriber_not_found"


def test_delete_and_unregister_remove_the_device(api, ana):
    device_id = api.post("/api/v1/devices", body()).json()["id"]
    assert api.delete(f"/api/v1/devices/{device_id}").status_code == 204
    assert api.delete(f"/api/v1/devices/{device_id}").status_code == 204  # idempotent
    assert Device.objects.get().removed_reason == "unregistered by the app"
    listed = api.get("/api/v1/devices", {"subscriber": str(ana.public_id)}).json()["devices"]
    assert listed[0]["removed_at"] is not None

    api.post("/api/v1/devices", body(token="tok-2"))
    assert api.post("/api/v1/devices/unregister", {"token": "tok-2"}).status_code == 204
    assert Device.objects.active().count() == 0
    unknown = api.post("/api/v1/devices/unregister", {"token": "never-seen"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "device_not_found"
    assert api.delete(f"/api/v1/devices/{uuid.uuid4()}").status_code == 404


def test_another_projects_devices_and_subscribers_are_not_found(api, project):
    other = ProjectFactory()
    stranger = SubscriberFactory(project=other, phone="+4915100000001")
    theirs, _ = devices.register(project=other, subscriber=stranger, data=data("theirs"), actor=ACTOR)
    SubscriberFactory(project=project, phone="+4915100000002")

    by_id = api.post("/api/v1/devices", body(subscriber={"id": str(stranger.public_id)}))
    assert by_id.status_code == 404
    assert api.get("/api/v1/devices", {"subscriber": str(stranger.public_id)}).status_code == 404
    assert api.delete(f"/api/v1/devices/{theirs.public_id}").status_code == 404
    assert api.post("/api/v1/devices/unregister", {"token": "theirs"}).status_code == 404
    # The same token in this project is this project's own install: it never touches theirs.
    mine = api.post("/api/v1/devices", body(subscriber={"phone": "+4915100000002"}, token="theirs"))
    assert mine.status_code == 201 and mine.json()["id"] != str(theirs.public_id)
    theirs.refresh_from_db()
    assert theirs.subscriber == stranger and theirs.removed_at is None


def test_without_a_key_it_is_a_401(client):
    assert client.post("/api/v1/devices", body(), content_type="application/json").status_code == 401
