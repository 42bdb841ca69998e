"""The operators' admin for campaigns: status changes only through lifecycle, writes through services."""

from __future__ import annotations

from datetime import time
from decimal import Decimal

import pytest
from django.urls import reverse

from campaigns.models import CampaignStatus, Message, MessageStatus, RateCardEntry, SendingPolicy
from controlpanel.models import AuditEntry, User
from tests.campaigns.launch_helpers import make_campaign


@pytest.fixture
def operator(client, db):
    user = User.objects.create_superuser(email="ops@example.com", password="pw-for-tests-123")
    client.force_login(user)
    return client


def _act(client, action: str, *campaigns, url=None):
    # The detail page's action form has its own prefix.
    field = "CHANGE_FORM-action" if url else "action"
    url = url or reverse("admin:campaigns_campaign_changelist")
    return client.post(url, {field: action, "_selected_action": [c.pk for c in campaigns]}, follow=True)


def test_pause_resume_and_cancel_go_through_lifecycle(operator, account, subscriber):
    campaign = make_campaign(account, status=CampaignStatus.RUNNING, snapshot_at="2026-01-01T00:00:00Z")
    Message.objects.create(project=account.project, subscriber=subscriber, campaign=campaign)

    _act(operator, "pause_campaigns", campaign)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    _act(operator, "resume_campaigns", campaign)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    _act(operator, "cancel_campaigns", campaign)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    # cancel's own work: queued rows skipped, and each step audited with the operator as actor
    assert Message.objects.get(campaign=campaign).status == MessageStatus.SKIPPED
    actions = list(
        AuditEntry.objects.filter(object_id=campaign.public_id)
        .order_by("id")
        .values_list("action", "actor_label")
    )
    assert [a for a, _ in actions] == ["campaign.pause", "campaign.resume", "campaign.cancel"]
    assert {label for _, label in actions} == {"ops@example.com"}


def test_a_refused_transition_is_reported_not_forced(operator, account):
    draft = make_campaign(account)
    response = _act(operator, "resume_campaigns", draft)
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.DRAFT
    assert "cannot be resumed" in response.content.decode()


def test_the_detail_page_is_read_only_with_the_lifecycle_actions(operator, account):
    campaign = make_campaign(account, status=CampaignStatus.SCHEDULED)
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    page = operator.get(url).content.decode()
    assert 'name="name"' not in page  # no editable field
    assert "pause_campaigns" in page
    # a direct POST of a status is refused
    assert operator.post(url, {"status": "running", "name": "x"}).status_code == 403
    _act(operator, "pause_campaigns", campaign, url=url)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED


def test_only_drafts_can_be_deleted(operator, account):
    running = make_campaign(account, status=CampaignStatus.RUNNING)
    draft = make_campaign(account)
    assert operator.get(reverse("admin:campaigns_campaign_delete", args=[running.pk])).status_code == 403
    assert operator.get(reverse("admin:campaigns_campaign_delete", args=[draft.pk])).status_code == 200
    page = operator.get(reverse("admin:campaigns_campaign_changelist")).content.decode()
    assert "delete_selected" not in page


def test_messages_stay_read_only(operator, account, subscriber):
    message = Message.objects.create(project=account.project, subscriber=subscriber)
    url = reverse("admin:campaigns_message_change", args=[message.pk])
    operator.post(url, {"status": "sent", "wamid": "wamid.X"})
    message.refresh_from_db()
    assert (message.status, message.wamid) == (MessageStatus.QUEUED, None)
    assert operator.get(reverse("admin:campaigns_message_add")).status_code == 403


def test_sending_policy_edits_go_through_the_service(operator, project):
    policy = SendingPolicy.objects.create(project=project, cap_messages=2, cap_days=7)
    url = reverse("admin:campaigns_sendingpolicy_change", args=[policy.pk])
    data = {"cap_messages": "3", "cap_days": "7", "quiet_start": "22:00", "quiet_end": "08:00"}
    assert operator.post(url, data).status_code == 302
    policy.refresh_from_db()
    assert (policy.cap_messages, policy.quiet_start, policy.quiet_end) == (3, time(22), time(8))
    assert AuditEntry.objects.filter(project=project, action="sending_policy.update").count() == 1

    bad = operator.post(url, {**data, "quiet_end": ""})
    assert bad.status_code == 200
    assert "Quiet hours need a start and an end" in bad.content.decode()
    policy.refresh_from_db()
    assert policy.quiet_end == time(8)


def test_rate_card_edits_go_through_the_service(operator, project):
    from campaigns.pricing import rate_card

    rate_card(project)
    entry = RateCardEntry.objects.get(project=project, category="marketing", country="DE")
    url = reverse("admin:campaigns_ratecardentry_change", args=[entry.pk])
    assert operator.post(url, {"price": "0.2000"}).status_code == 302
    entry.refresh_from_db()
    assert entry.price == Decimal("0.2000")
    audit = AuditEntry.objects.get(project=project, action="rate_card.update")
    assert audit.changes == {"marketing DE": {"from": "0.1365", "to": "0.2000"}}
    other = RateCardEntry.objects.get(project=project, category="marketing", country="")
    response = operator.post(
        reverse("admin:campaigns_ratecardentry_delete", args=[other.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert RateCardEntry.objects.filter(pk=other.pk).exists()  # the "other countries" row stays
