"""The push pages: templates (list, edit, preview, test send, delete) and Settings → Push."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns import channel_sending
from campaigns.models import Channel, Message
from controlpanel.models import AuditEntry, Role
from push.models import PushMode, PushSettings, PushTemplate
from tests.factories import ProjectFactory, SubscriberFactory

from .conftest import DeviceFactory, PushTemplateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_kick(monkeypatch):
    monkeypatch.setattr(channel_sending, "kick", lambda: None)


def url(project, name, *args):
    return reverse(f"push:{name}", args=[project.slug, *args])


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


def form_data(**changes):
    data = {
        "name": "order-ready",
        "title": "Hi {{ subscriber.name }}",
        "body": "Ready",
        "image_url": "",
        "link": "",
        "data_text": "",
    }
    data.update(changes)
    return data


# --- access -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["templates", "new", "settings"])
def test_outsider_gets_404(client, outsider, project, name):
    client.force_login(outsider)
    assert client.get(url(project, name)).status_code == 404


def test_outsider_gets_404_for_a_template_and_its_posts(client, outsider, project, template):
    client.force_login(outsider)
    assert client.get(url(project, "edit", template.public_id)).status_code == 404
    assert client.post(url(project, "delete", template.public_id)).status_code == 404
    assert PushTemplate.objects.filter(pk=template.pk).exists()


def test_another_projects_template_is_404(marketer_client, project):
    foreign = PushTemplateFactory(project=ProjectFactory())
    assert marketer_client.get(url(project, "edit", foreign.public_id)).status_code == 404
    assert marketer_client.post(url(project, "delete", foreign.public_id)).status_code == 404
    assert PushTemplate.objects.filter(pk=foreign.pk).exists()


def test_viewer_reads_but_cannot_write(viewer_client, project, template):
    assert viewer_client.get(url(project, "templates")).status_code == 200
    page = viewer_client.get(url(project, "edit", template.public_id))
    assert page.status_code == 200 and b"<fieldset disabled>" in page.content
    assert viewer_client.post(url(project, "new"), form_data()).status_code == 403
    assert viewer_client.post(url(project, "delete", template.public_id)).status_code == 403
    assert viewer_client.post(url(project, "test_send", template.public_id)).status_code == 403
    assert viewer_client.get(url(project, "settings")).status_code == 403


def test_settings_need_an_admin(marketer_client, project):
    assert marketer_client.get(url(project, "settings")).status_code == 403
    assert marketer_client.post(url(project, "settings"), {"mode": "simulator"}).status_code == 403
    assert marketer_client.post(url(project, "settings_test")).status_code == 403


# --- templates ----------------------------------------------------------------------------------


def test_list_shows_templates_in_fixed_queries(marketer_client, project, django_assert_max_num_queries):
    for _ in range(3):
        PushTemplateFactory(project=project)
    PushTemplateFactory(project=ProjectFactory(), name="foreign-template")
    with django_assert_max_num_queries(8):
        page = marketer_client.get(url(project, "templates"))
    assert page.content.count(b'data-testid="push-template-row"') == 3
    assert b"foreign-template" not in page.content


def test_new_page_and_settings_tab(owner_client, project):
    page = owner_client.get(url(project, "new"))
    assert page.status_code == 200 and 'name="data_text"' in page.content.decode()
    general = owner_client.get(reverse("controlpanel:settings", args=[project.slug])).content.decode()
    assert url(project, "settings") in general


def test_create_template_with_data_rows(marketer_client, project):
    response = marketer_client.post(
        url(project, "new"), form_data(data_text="order={{ values.order }}\nscreen=orders", marketing="on")
    )
    template = PushTemplate.objects.get(project=project)
    assert response.status_code == 302 and response.url == url(project, "edit", template.public_id)
    assert template.data == {"order": "{{ values.order }}", "screen": "orders"}
    assert template.marketing is True


def test_create_template_with_a_json_data_object(marketer_client, project):
    marketer_client.post(url(project, "new"), form_data(data_text='{"screen": "home"}'))
    assert PushTemplate.objects.get(project=project).data == {"screen": "home"}


@pytest.mark.parametrize(
    ("changes", "field_error"),
    [
        ({"title": "{{ subscriber.name "}, "not valid Liquid"),
        ({"body": "{{ customer.name }}"}, "“customer” does not exist"),
        ({"link": "{{ tags.x | nosuch }}"}, "no filter"),
        ({"image_url": "http://example.com/a.png"}, "must start with https://"),
        ({"data_text": '{"n": 1}'}, "must be a string"),
        ({"data_text": "no equals sign"}, "Line 1 has no"),
        ({"data_text": "google.x=1"}, "reserved"),
        ({"data_text": "message_id=1"}, "reserved"),
        ({"title": "", "body": ""}, "Write a title or a body"),
    ],
)
def test_invalid_templates_show_errors_per_field(marketer_client, project, changes, field_error):
    page = marketer_client.post(url(project, "new"), form_data(**changes))
    assert page.status_code == 200
    assert field_error in page.content.decode()
    assert not PushTemplate.objects.exists()


def test_duplicate_name_is_refused(marketer_client, project, template):
    page = marketer_client.post(url(project, "new"), form_data(name=template.name))
    assert "Another push template has this name" in page.content.decode()


def test_edit_shows_data_as_rows_and_saves(marketer_client, project):
    template = PushTemplateFactory(project=project, data={"screen": "orders"})
    page = marketer_client.get(url(project, "edit", template.public_id))
    assert "screen=orders" in page.content.decode()
    marketer_client.post(
        url(project, "edit", template.public_id), form_data(name=template.name, body="New body")
    )
    template.refresh_from_db()
    assert template.body == "New body" and template.data == {}


def test_edit_previews_three_real_recipients(marketer_client, project, template):
    template.title = "Hi {{ subscriber.name }}"
    template.body = "{{ tags.city | default: 'somewhere' }}"
    template.save()
    for name in ("Ada", "Bob", "Cy", "Dee"):
        SubscriberFactory(project=project, name=name)
    page = marketer_client.get(url(project, "edit", template.public_id)).content.decode()
    assert page.count('data-testid="push-preview-card"') == 3
    assert "Hi Ada" in page and "Hi Cy" in page and "Hi Dee" not in page


def test_preview_renders_the_form_as_typed(marketer_client, project):
    SubscriberFactory(project=project, name="Ada")
    page = marketer_client.post(
        url(project, "preview"), form_data(title="Hey {{ subscriber.name | upcase }}"), HTTP_HX_REQUEST="true"
    )
    content = page.content.decode()
    assert page.status_code == 200 and content.lstrip().startswith('<div class="card" id="push-preview">')
    assert "Hey ADA" in content
    broken = marketer_client.post(
        url(project, "preview"), form_data(title="{{ nope }}"), HTTP_HX_REQUEST="true"
    )
    assert "Fix the errors" in broken.content.decode()
    assert not PushTemplate.objects.exists()


def test_delete_template(marketer_client, project, template):
    response = marketer_client.post(url(project, "delete", template.public_id))
    assert response.status_code == 302
    assert not PushTemplate.objects.exists()


def test_test_send_goes_through_send_push(marketer_client, project, template, device):
    response = marketer_client.post(
        url(project, "test_send", template.public_id),
        {"subscriber": str(device.subscriber.public_id)},
        follow=True,
    )
    message = Message.objects.get(project=project)
    assert message.channel == Channel.PUSH and message.subscriber == device.subscriber
    assert "Test push queued" in response.content.decode()


def test_test_send_refuses_a_subscriber_without_a_device(marketer_client, project, template):
    no_device = SubscriberFactory(project=project)
    foreign = DeviceFactory(subscriber=SubscriberFactory(project=ProjectFactory()))
    for subscriber in (no_device, foreign.subscriber):
        response = marketer_client.post(
            url(project, "test_send", template.public_id),
            {"subscriber": str(subscriber.public_id)},
            follow=True,
        )
        assert "Choose a subscriber with an active push device" in response.content.decode()
    assert not Message.objects.exists()


# --- settings -----------------------------------------------------------------------------------


def test_settings_upload_a_key_shows_only_email_and_project(owner_client, project, service_account_json):
    upload = SimpleUploadedFile("key.json", service_account_json.encode(), content_type="application/json")
    response = owner_client.post(url(project, "settings"), {"mode": "fcm", "service_account_file": upload})
    assert response.status_code == 302
    stored = PushSettings.objects.get(project=project)
    assert stored.mode == PushMode.FCM and stored.fcm_project_id == "shop-app-1234"
    page = owner_client.get(url(project, "settings")).content.decode()
    assert "fcm-sender@shop-app-1234.iam.gserviceaccount.com" in page and "shop-app-1234" in page
    private_key = json.loads(service_account_json)["private_key"]
    assert "PRIVATE KEY" not in page
    assert private_key.splitlines()[1] not in page
    assert AuditEntry.objects.filter(project=project, action="push.settings_changed").count() == 1


def test_settings_paste_a_key(owner_client, project, service_account_json):
    owner_client.post(url(project, "settings"), {"mode": "fcm", "service_account_text": service_account_json})
    assert PushSettings.objects.get(project=project).service_account == service_account_json


def test_settings_refuse_a_bad_key_in_words(owner_client, project, service_account_json):
    bad = json.dumps(json.loads(service_account_json) | {"type": "authorized_user"})
    page = owner_client.post(url(project, "settings"), {"mode": "fcm", "service_account_text": bad})
    assert page.status_code == 200 and "not a service-account key" in page.content.decode()
    assert "PRIVATE KEY" not in page.content.decode()  # the pasted key is not echoed back
    assert not PushSettings.objects.exists()


def test_settings_firebase_needs_a_key(owner_client, project):
    page = owner_client.post(url(project, "settings"), {"mode": "fcm"})
    assert "needs the service-account key" in page.content.decode()
    assert not PushSettings.objects.exists()


def test_settings_test_push_is_queued(owner_client, project, device):
    response = owner_client.post(
        url(project, "settings_test"), {"subscriber": str(device.subscriber.public_id)}, follow=True
    )
    message = Message.objects.get(project=project)
    assert message.channel == Channel.PUSH and message.content["title"] == "Test push"
    assert "Test push queued" in response.content.decode()
