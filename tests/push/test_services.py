from __future__ import annotations

import pytest
from django.utils import timezone

from campaigns import channel_sending
from campaigns.channel_policy import NO_DEVICE, PUSH_OPTED_OUT
from campaigns.models import Channel, Message, MessageStatus
from campaigns.services import SendRefused
from controlpanel.models import AuditEntry
from controlpanel.services import Actor
from push import services
from push.models import PushMode, PushSettings, PushTemplate
from subscribers.models import ConsentState
from tests.factories import ProjectFactory, SubscriberFactory

from .conftest import DeviceFactory, PushTemplateFactory

ACTOR = Actor(label="test")


def _context(**values):
    return {"subscriber": {"name": "Ada"}, "tags": {"city": "Berlin"}, "values": values, "event": {}}


def test_render_push_fills_every_part_data_values_as_strings():
    template = PushTemplate(
        title="Hi {{ subscriber.name }}",
        body="Sale in {{ tags.city | upcase }}",
        image_url="https://cdn.example.com/{{ values.img }}.png",
        link="shop://orders/{{ values.order }}",
        data={"order": "{{ values.order }}", "count": "{{ values.order | plus: 1 }}"},
    )
    content = services.render_push(template, _context(img="sale", order=41))
    assert content == {
        "title": "Hi Ada",
        "body": "Sale in BERLIN",
        "image": "https://cdn.example.com/sale.png",
        "link": "shop://orders/41",
        "data": {"order": "41", "count": "42"},
    }


def test_render_push_refuses_when_title_and_body_render_empty():
    template = PushTemplate(title="{{ values.missing }}", body="  ")
    with pytest.raises(SendRefused, match="title and body are both empty"):
        services.render_push(template, _context())


def test_render_push_names_the_field_that_fails():
    template = PushTemplate(title="Hi", body="x", data={"n": "{{ values.n | divided_by: 0 }}"})
    with pytest.raises(SendRefused, match="data value “n”"):
        services.render_push(template, _context(n=1))


def test_render_push_refuses_a_non_https_image():
    template = PushTemplate(title="Hi", body="x", image_url="http://cdn.example.com/a.png")
    with pytest.raises(SendRefused, match="https://"):
        services.render_push(template, _context())


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("{{ tags.x ", "not valid Liquid"),
        ("{{ tags.x | nosuchfilter }}", "no filter “nosuchfilter”"),
        ("{{ customer.name }}", "“customer” does not exist"),
    ],
)
def test_liquid_problem_words(source, words):
    assert words in services.liquid_problem(source)


def test_liquid_problem_accepts_the_four_names():
    assert services.liquid_problem("{{ subscriber.name }}{{ tags.a }}{{ values.b }}{{ event.c }}") == ""


@pytest.mark.django_db
def test_send_push_writes_the_row_and_kicks_after_commit(
    project, subscriber, device, template, monkeypatch, django_capture_on_commit_callbacks
):
    kicks = []
    monkeypatch.setattr(channel_sending, "kick", lambda: kicks.append(1))
    with django_capture_on_commit_callbacks(execute=True):
        message = services.send_push(
            project=project,
            subscriber=subscriber,
            template=template,
            actor=ACTOR,
            values={"order": "A-7"},
            origin={"journey": "j1", "step": "s1"},
        )
        assert kicks == []  # not before the commit
    assert kicks == [1]
    message.refresh_from_db()
    assert message.channel == Channel.PUSH
    assert message.status == MessageStatus.QUEUED
    assert message.template_name == template.name
    assert message.marketing is False
    assert message.content == {
        "title": "Hello Ada",
        "body": "Your order A-7 is ready",
        "image": "",
        "link": "",
        "data": {},
        "template": str(template.public_id),
        "origin": {"journey": "j1", "step": "s1"},
    }
    assert message.history[0]["status"] == "queued" and "test" in message.history[0]["note"]


@pytest.mark.django_db
def test_send_push_marketing_comes_from_the_template(project, subscriber, device):
    template = PushTemplateFactory(project=project, marketing=True)
    message = services.send_push(
        project=project, subscriber=subscriber, template=template, actor=ACTOR, values={"order": "1"}
    )
    assert message.marketing is True


@pytest.mark.django_db
def test_send_push_refuses_without_an_active_device(project, subscriber, template):
    DeviceFactory(subscriber=subscriber, removed_at=timezone.now())
    DeviceFactory(subscriber=subscriber, push_enabled=False)
    with pytest.raises(SendRefused, match=NO_DEVICE):
        services.send_push(project=project, subscriber=subscriber, template=template, actor=ACTOR)
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_send_push_refuses_an_opted_out_subscriber(project, device, template):
    subscriber = device.subscriber
    subscriber.push_consent = ConsentState.OPTED_OUT
    subscriber.save()
    with pytest.raises(SendRefused, match=PUSH_OPTED_OUT):
        services.send_push(project=project, subscriber=subscriber, template=template, actor=ACTOR)
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_send_push_refuses_other_projects(project, device, template):
    other = SubscriberFactory(project=ProjectFactory())
    DeviceFactory(subscriber=other)
    with pytest.raises(SendRefused, match="another project"):
        services.send_push(project=project, subscriber=other, template=template, actor=ACTOR)
    foreign = PushTemplateFactory(project=ProjectFactory())
    with pytest.raises(SendRefused, match="another project"):
        services.send_push(project=project, subscriber=device.subscriber, template=foreign, actor=ACTOR)


@pytest.mark.django_db
def test_send_push_same_idempotency_key_same_message(project, subscriber, device, template):
    first = services.send_push(
        project=project, subscriber=subscriber, template=template, actor=ACTOR, idempotency_key="k1"
    )
    again = services.send_push(
        project=project, subscriber=subscriber, template=template, actor=ACTOR, idempotency_key="k1"
    )
    assert again.pk == first.pk
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_send_push_unsaved_template_names_none(project, subscriber, device):
    test_push = PushTemplate(project=project, name="Test push", title="Test", body="From settings")
    message = services.send_push(project=project, subscriber=subscriber, template=test_push, actor=ACTOR)
    assert message.content["template"] == ""


# --- settings --------------------------------------------------------------------------------


def test_parse_service_account_accepts_a_real_key(service_account_json):
    assert services.parse_service_account(service_account_json)["project_id"] == "shop-app-1234"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"type": "authorized_user"}, "not a service-account key"),
        ({"project_id": ""}, '"project_id"'),
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"}, "does not parse"),
    ],
)
def test_parse_service_account_refuses(service_account_json, change, words):
    import json

    info = {**json.loads(service_account_json), **change}
    with pytest.raises(ValueError, match=words):
        services.parse_service_account(json.dumps(info))
    with pytest.raises(ValueError, match="not JSON"):
        services.parse_service_account("{nope")


@pytest.mark.django_db
def test_save_settings_stores_the_key_and_audits_without_it(project, service_account_json):
    services.save_settings(
        project=project,
        mode=PushMode.FCM,
        service_account_json=service_account_json,
        fcm_project_id="",
        actor=ACTOR,
    )
    stored = PushSettings.objects.get(project=project)
    assert stored.mode == PushMode.FCM
    assert stored.fcm_project_id == "shop-app-1234"
    assert stored.service_account == service_account_json
    entry = AuditEntry.objects.get(project=project, action="push.settings_changed")
    assert "PRIVATE KEY" not in str(entry.changes)
    assert entry.changes["service_account"] == "fcm-sender@shop-app-1234.iam.gserviceaccount.com"
    # Saving again without a key keeps the stored one.
    services.save_settings(
        project=project,
        mode=PushMode.FCM,
        service_account_json="",
        fcm_project_id="shop-app-1234",
        actor=ACTOR,
    )
    assert PushSettings.objects.get(project=project).service_account == service_account_json


@pytest.mark.django_db
def test_save_settings_fcm_needs_a_key(project):
    with pytest.raises(ValueError, match="needs the service-account key"):
        services.save_settings(
            project=project, mode=PushMode.FCM, service_account_json="", fcm_project_id="", actor=ACTOR
        )
    assert not PushSettings.objects.exists()


@pytest.mark.django_db
def test_back_to_firebase_sends_to_the_keys_project_again(project, service_account_json):
    save = {"project": project, "service_account_json": "", "actor": ACTOR}
    services.save_settings(
        **save | {"service_account_json": service_account_json}, mode=PushMode.FCM, fcm_project_id=""
    )
    services.save_settings(**save, mode=PushMode.SIMULATOR, fcm_project_id="sim-1")
    assert PushSettings.objects.get(project=project).fcm_project_id == "sim-1"
    services.save_settings(**save, mode=PushMode.FCM, fcm_project_id="")
    assert PushSettings.objects.get(project=project).fcm_project_id == "shop-app-1234"
