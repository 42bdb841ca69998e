"""Event attributes named like dict methods (items, keys, values) render like any other."""

from __future__ import annotations

from django.urls import reverse

from controlpanel.models import Role
from subscribers.services import record_event
from tests.factories import SubscriberFactory


def test_attribute_named_items_renders(client, project, member_of):
    client.force_login(member_of(Role.VIEWER))
    subscriber = SubscriberFactory(project=project)
    record_event(
        project=project, subscriber=subscriber, name="OrderPlaced", attributes={"items": 3, "keys": "a"}
    )
    detail = client.get(reverse("subscribers:detail", args=[project.slug, subscriber.public_id]))
    events = client.get(reverse("subscribers:events", args=[project.slug]))
    for response in (detail, events):
        assert response.status_code == 200
        assert "items" in response.content.decode()
