"""The Django admin writes audience data through the same cleaners and services as the panel."""

from __future__ import annotations

import pytest
from django.forms.models import model_to_dict
from django.urls import reverse

from controlpanel.models import AuditEntry, User
from subscribers.admin import SegmentAdminForm, SubscriberAdminForm
from subscribers.models import Event, TagDefinition, TagValue
from subscribers.services import record_event, set_tags
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    user = User.objects.create_superuser(email="ops@example.com", password="pw-for-tests-123")
    client.force_login(user)
    return client


def subscriber_form(subscriber, **changes):
    data = {k: v for k, v in model_to_dict(subscriber).items() if v is not None}
    return SubscriberAdminForm(data={**data, **changes}, instance=subscriber)


@pytest.mark.parametrize(
    ("field", "value"),
    # Identities (phone, WhatsApp ids) are read-only in the admin: test_admin_writes.py.
    [("name", "Ada\ud800"), ("time_zone", "Mars/Olympus"), ("country", "Germany")],
)
def test_subscriber_form_refuses_what_the_api_refuses(project, field, value):
    form = subscriber_form(SubscriberFactory(project=project), **{field: value})
    assert not form.is_valid()
    assert field in form.errors


def test_subscriber_form_normalizes_as_the_api_does(project):
    form = subscriber_form(SubscriberFactory(project=project), country="at", email="A@Example.com")
    assert form.is_valid(), form.errors
    assert (form.cleaned_data["country"], form.cleaned_data["email"]) == ("AT", "a@example.com")


def test_segment_form_refuses_a_lone_surrogate_in_the_name(project):
    form = SegmentAdminForm(data={"project": project.pk, "name": "VIP\ud800", "rule": "{}"})
    assert not form.is_valid()
    assert "name" in form.errors


def test_tag_definitions_are_added_through_the_service(operator_client, project, settings):
    url = reverse("admin:subscribers_tagdefinition_add")
    response = operator_client.post(url, {"project": project.pk, "name": "bad$name", "type": "string"})
    assert response.status_code == 200 and not TagDefinition.objects.exists()
    response = operator_client.post(url, {"project": project.pk, "name": "Points", "type": "integer"})
    assert response.status_code == 302
    assert AuditEntry.objects.filter(project=project, action="tag.created").exists()
    settings.TAGS_PER_PROJECT = 1
    response = operator_client.post(url, {"project": project.pk, "name": "More", "type": "string"})
    assert response.status_code == 200 and "at most 1" in response.content.decode()
    # The type of an existing tag cannot change under its values.
    definition = TagDefinition.objects.get(name="Points")
    change = reverse("admin:subscribers_tagdefinition_change", args=[definition.pk])
    operator_client.post(change, {"description": "From the POS"})
    definition.refresh_from_db()
    assert (definition.type, definition.description) == ("integer", "From the POS")


def test_tag_values_and_events_are_read_only(operator_client, project):
    subscriber = SubscriberFactory(project=project)
    set_tags(project=project, subscriber=subscriber, tags={"points": 1})
    event = record_event(project=project, subscriber=subscriber, name="OrderPlaced", attributes={"n": 1})
    value = TagValue.objects.get()
    change = reverse("admin:subscribers_tagvalue_change", args=[value.pk])
    assert operator_client.post(change, {"value_number": "1" * 21}).status_code == 403
    assert operator_client.get(reverse("admin:subscribers_tagvalue_add")).status_code == 403
    change = reverse("admin:subscribers_event_change", args=[event.pk])
    assert operator_client.post(change, {"attributes": '{"n": 1e300}'}).status_code == 403
    assert Event.objects.get().attributes == {"n": 1}
