"""Indexing event attributes from the event statistics page (admins only)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from controlpanel.models import Role
from subscribers import attribute_indexes
from subscribers.models import AttributeIndex, AttributeIndexStatus
from subscribers.services import record_event
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def orders(project):
    # "items" as an attribute name once broke templates that looped over dict.items.
    record_event(
        project=project,
        subscriber=SubscriberFactory(project=project),
        name="OrderPlaced",
        attributes={"cuisine": "asian", "amount": 12.5, "items": 3},
    )
    return project


def stats_url(project):
    return reverse("subscribers:event_stats", args=[project.slug, "OrderPlaced"])


def index_url(project):
    return reverse("subscribers:event_attribute_index", args=[project.slug, "OrderPlaced"])


def test_the_attributes_are_listed_with_their_types(client, member_of, orders):
    client.force_login(member_of(Role.ADMIN))
    html = client.get(stats_url(orders)).content.decode()
    for attribute, type_ in (("cuisine", "string"), ("amount", "decimal"), ("items", "integer")):
        assert f'data-attribute="{attribute}"' in html
        assert f'<code>{attribute}</code></td>\n          <td class="text-secondary">{type_}</td>' in html
    assert html.count("Index for segments") == 1  # texts and yes/no attributes only


@pytest.mark.django_db(transaction=True)  # PostgreSQL builds the index outside a transaction
def test_an_admin_indexes_an_attribute_and_sees_its_status(client, member_of, orders):
    client.force_login(member_of(Role.ADMIN))
    response = client.post(index_url(orders), {"attribute": "cuisine"}, follow=True)
    assert "is being indexed" in response.content.decode()
    index = AttributeIndex.objects.get(project=orders, event_name="OrderPlaced", attribute="cuisine")
    assert index.attribute_type == "string"
    assert "Index: waiting to be built" in response.content.decode()
    attribute_indexes.build(index.pk)
    ready = "Index: ready" if attribute_indexes.supported() else "Indexed (PostgreSQL only)"
    assert ready in client.get(stats_url(orders)).content.decode()

    response = client.post(index_url(orders), {"attribute": "cuisine", "action": "remove"}, follow=True)
    index.refresh_from_db()
    assert index.status == AttributeIndexStatus.REMOVING
    assert "Index: being removed" in response.content.decode()


def test_a_bad_request_is_explained(client, member_of, orders):
    client.force_login(member_of(Role.ADMIN))
    response = client.post(index_url(orders), {"attribute": "colour"}, follow=True)
    assert "has no attribute" in response.content.decode()
    assert not AttributeIndex.objects.exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MARKETER])
def test_only_admins_change_indexes(client, member_of, orders, role):
    client.force_login(member_of(role))
    assert "Index for segments" not in client.get(stats_url(orders)).content.decode()
    assert client.post(index_url(orders), {"attribute": "cuisine"}).status_code == 403
    assert not AttributeIndex.objects.exists()
