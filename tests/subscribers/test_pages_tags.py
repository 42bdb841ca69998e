"""The tag definitions page: built-in and custom tags with type and usage; create and delete."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from controlpanel.models import AuditEntry, Role
from controlpanel.services import SYSTEM
from subscribers import services
from subscribers.models import TagDefinition, TagValue

pytestmark = pytest.mark.django_db


def add(project, phone, **raw):
    data = services.clean_subscriber_data(project, {"phone": phone, **raw})
    subscriber, _ = services.upsert_subscriber(project=project, data=data, actor=SYSTEM)
    return subscriber


@pytest.fixture
def mc(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


def usage(html: str, tag: str) -> str:
    row = re.search(rf'<tr data-tag="{re.escape(tag)}">(.*?)</tr>', html, re.S).group(1)
    return re.search(r'data-testid="usage">(\d+)<', row).group(1)


def test_lists_builtin_and_custom_tags_with_type_and_usage(mc, project):
    add(project, "+4915112340001", language="de", tags={"interests": ["food", "travel"], "orders": 2})
    add(project, "+4915112340002", tags={"orders": 5})
    add(project, "+4915112340003")
    html = mc.get(reverse("subscribers:tags", args=[project.slug])).content.decode()
    assert usage(html, "Language") == "1"
    assert usage(html, "Phone") == "3"
    assert usage(html, "orders") == "2"
    assert usage(html, "interests") == "1"  # people, not list items
    assert "Integer" in html and "List of strings" in html


def test_create_a_typed_tag_and_values_must_fit(mc, project):
    url = reverse("subscribers:tags", args=[project.slug])
    response = mc.post(url, {"name": "Loyalty points", "type": "integer", "description": "From the POS"})
    assert response.status_code == 302
    definition = TagDefinition.objects.get(project=project, name="Loyalty points")
    assert definition.type == "integer"
    assert AuditEntry.objects.filter(project=project, action="tag.created").exists()
    s = add(project, "+4915112340001")
    with pytest.raises(services.InvalidInput, match="expects integer"):
        services.set_tags(project=project, subscriber=s, tags={"Loyalty points": "12"})


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Language", "is a built-in tag"),
        ("orders", "exists already"),
        ("ORDERS", "exists already"),
        ("bad<name>", "is not allowed"),
    ],
)
def test_create_refuses_clashing_or_bad_names(mc, project, name, message):
    TagDefinition.objects.create(project=project, name="orders", type="integer")
    response = mc.post(reverse("subscribers:tags", args=[project.slug]), {"name": name, "type": "string"})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert f'value="{name}"'.replace("<", "&lt;").replace(">", "&gt;") in response.content.decode()
    assert TagDefinition.objects.filter(project=project).count() == 1


def test_delete_a_custom_tag_with_its_values(mc, project):
    s = add(project, "+4915112340001", tags={"city": "Berlin", "orders": 1})
    definition = TagDefinition.objects.get(project=project, name="city")
    response = mc.post(
        reverse("subscribers:tag_delete", args=[project.slug, definition.public_id]), follow=True
    )
    assert "Tag “city” deleted with 1 value." in response.content.decode()
    assert not TagDefinition.objects.filter(pk=definition.pk).exists()
    assert not TagValue.objects.filter(tag_id=definition.pk).exists()
    assert services.tags_of(s)["orders"] == 1
    assert AuditEntry.objects.filter(project=project, action="tag.deleted").exists()


def test_delete_of_another_projects_tag_is_404(mc, project):
    from tests.factories import ProjectFactory

    foreign = TagDefinition.objects.create(project=ProjectFactory(), name="secret", type="string")
    response = mc.post(reverse("subscribers:tag_delete", args=[project.slug, foreign.public_id]))
    assert response.status_code == 404
    assert TagDefinition.objects.filter(pk=foreign.pk).exists()


def test_viewer_sees_tags_but_no_forms(client, project, viewer):
    TagDefinition.objects.create(project=project, name="city", type="string")
    client.force_login(viewer)
    html = client.get(reverse("subscribers:tags", args=[project.slug])).content.decode()
    assert "city" in html
    assert "Create tag" not in html and ">Delete<" not in html
    response = client.post(reverse("subscribers:tags", args=[project.slug]), {"name": "x", "type": "string"})
    assert response.status_code == 403
