"""The Django admin: every model of our apps is registered and its pages open for an operator."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from controlpanel.models import User
from subscribers.services import record_event, set_tags
from tests.factories import SubscriberFactory

OUR_APPS = ("controlpanel", "subscribers", "whatsapp", "campaigns", "journeys")


def our_models():
    # The admin cannot show a composite primary key: campaigns' AudienceRow is counted on the
    # campaign's admin page instead (test below).
    return [m for m in apps.get_models() if m._meta.app_label in OUR_APPS and not m._meta.is_composite_pk]


def test_every_model_of_our_apps_is_in_the_admin():
    missing = [m._meta.label for m in our_models() if m not in admin.site._registry]
    assert not missing, f"not in the admin: {missing}"


@pytest.fixture
def operator_client(client, db):
    user = User.objects.create_superuser(email="ops@example.com", password="pw-for-tests-123")
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", our_models(), ids=lambda m: m._meta.label)
def test_changelist_and_detail_pages_open(operator_client, project, model):
    subscriber = SubscriberFactory(project=project)
    set_tags(project=project, subscriber=subscriber, tags={"city": "Berlin"})
    record_event(project=project, subscriber=subscriber, name="OrderPlaced", attributes={"items": 2})
    opts = model._meta
    response = operator_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert response.status_code == 200
    row = model._default_manager.first()
    if row is not None:
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk])
        assert operator_client.get(url).status_code == 200


def test_the_campaign_page_counts_the_recipients_still_to_be_written(operator_client, project):
    from campaigns.models import AudienceRow, Campaign

    campaign = Campaign.objects.create(project=project, name="Big", status="running", template_name="t")
    for subscriber in SubscriberFactory.create_batch(2, project=project):
        AudienceRow.objects.create(campaign=campaign, subscriber=subscriber)
    response = operator_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "recipients still to be written to the outbox" in html.lower()
    assert '<div class="readonly">2</div>' in html
