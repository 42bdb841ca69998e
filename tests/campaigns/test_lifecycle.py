"""Launch, the snapshot at its time, pause, resume, cancel, test sends.

drafts.launch_problems / snapshot_templates are replaced here through lifecycle's seams (one
function each), so these tests cover lifecycle alone; test_campaign_flow.py runs them for real.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import lifecycle, sendpolicy
from campaigns.models import (
    AudienceKind,
    CampaignStatus,
    Message,
    MessageStatus,
    ScheduleKind,
)
from campaigns.outcomes import Skip
from campaigns.rendering import Rendered
from controlpanel.models import AuditEntry
from controlpanel.services import Actor
from subscribers.errors import InvalidInput
from subscribers.models import ConsentState, Segment
from tests.factories import ProjectFactory, SubscriberFactory, UserFactory
from whatsapp.models import AccountStatus

from .conftest import make_template
from .launch_helpers import make_campaign, rows

pytestmark = pytest.mark.django_db

SNAPSHOT = {"en_US": {"id": 1, "category": "MARKETING", "components": []}}


@pytest.fixture
def actor():
    return Actor(user=UserFactory())


@pytest.fixture(autouse=True)
def core(monkeypatch):
    """What drafts would answer: launchable, and the templates it snapshots."""
    problems: list[str] = []
    monkeypatch.setattr(lifecycle, "_launch_problems", lambda campaign: list(problems))
    monkeypatch.setattr(lifecycle, "_snapshot_templates", lambda campaign: dict(SNAPSHOT))
    return problems


@pytest.fixture
def audience(account):
    return SubscriberFactory.create_batch(3, project=account.project, whatsapp_consent=ConsentState.OPTED_IN)


def actions(campaign) -> list[str]:
    return list(
        AuditEntry.objects.filter(object_id=str(campaign.public_id))
        .order_by("id")
        .values_list("action", flat=True)
    )


def test_launch_refuses_with_every_problem(account, actor, core):
    core += ["Choose a template.", "Bind {{1}}."]
    campaign = make_campaign(account)
    with pytest.raises(InvalidInput) as exc:
        lifecycle.launch(campaign=campaign, actor=actor)
    assert exc.value.message == "Choose a template. Bind {{1}}."
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT
    assert actions(campaign) == []


def test_launch_now_snapshots_on_the_next_tick_and_runs(
    account, actor, audience, django_capture_on_commit_callbacks
):
    segment = Segment.objects.create(
        project=account.project,
        name="All",
        rule={"type": "group", "op": "and", "children": [{"type": "all"}]},
    )
    campaign = make_campaign(account, audience_kind=AudienceKind.SEGMENT, segment=segment, rule={})

    with django_capture_on_commit_callbacks() as callbacks:
        launched = lifecycle.launch(campaign=campaign, actor=actor)

    assert launched.status == CampaignStatus.SCHEDULED
    assert launched.templates_snapshot == SNAPSHOT
    assert launched.rule == segment.rule  # the segment's rule at launch
    assert len(callbacks) == 1  # the immediate kick of the start actor
    assert Message.objects.filter(campaign=campaign).count() == 0  # not in the request

    segment.delete()  # the campaign keeps its snapshot of the rule
    assert lifecycle.start_due() == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    assert campaign.audience_size == 3
    assert campaign.snapshot_at is not None
    assert campaign.estimated_cost is not None and campaign.currency == "USD"
    assert set(rows(campaign)) == {s.pk for s in audience}
    assert lifecycle.start_due() == 0  # a second tick does nothing
    assert Message.objects.filter(campaign=campaign).count() == 3
    assert actions(campaign) == ["campaign.launch", "campaign.start"]


def test_launch_twice_is_refused(account, actor):
    campaign = make_campaign(account)
    lifecycle.launch(campaign=campaign, actor=actor)
    with pytest.raises(InvalidInput) as exc:
        lifecycle.launch(campaign=campaign, actor=actor)
    assert exc.value.code == "invalid_transition"


def test_scheduled_campaign_waits_for_its_time(account, actor, audience):
    at = timezone.now() + timedelta(hours=2)
    campaign = make_campaign(account, schedule_kind=ScheduleKind.AT, scheduled_at=at)
    lifecycle.launch(campaign=campaign, actor=actor)

    assert lifecycle.start_due() == 0
    assert lifecycle.start_due(now=at + timedelta(seconds=1)) == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    assert all(m.send_after == at for m in rows(campaign).values())


def test_a_rule_that_no_longer_compiles_pauses_the_campaign_with_the_reason(account, actor, audience):
    rule = {"type": "group", "op": "and", "children": [{"type": "tag", "tag": "gone", "op": "any"}]}
    campaign = make_campaign(account, rule=rule)
    lifecycle.launch(campaign=campaign, actor=actor)
    assert lifecycle.start_due() == 0
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert campaign.status_reason.startswith("The audience could not be computed")


def test_pause_resume_and_cancel(account, actor, audience):
    campaign = make_campaign(account)
    lifecycle.launch(campaign=campaign, actor=actor)
    lifecycle.start_due()

    paused = lifecycle.pause(campaign=campaign, actor=actor)
    assert paused.status == CampaignStatus.PAUSED and paused.paused_at is not None
    # Pausing touches no outbox row: the claim joins the campaign's status.
    assert {m.status for m in rows(campaign).values()} == {MessageStatus.QUEUED}

    resumed = lifecycle.resume(campaign=campaign, actor=actor)
    assert resumed.status == CampaignStatus.RUNNING and resumed.paused_at is None

    sent = Message.objects.filter(campaign=campaign).first()
    Message.objects.filter(pk=sent.pk).update(status=MessageStatus.SENT)
    cancelled = lifecycle.cancel(campaign=campaign, actor=actor)

    assert cancelled.status == CampaignStatus.CANCELLED and cancelled.finished_at is not None
    got = rows(campaign)
    assert got[sent.subscriber_id].status == MessageStatus.SENT
    others = [m for m in got.values() if m.pk != sent.pk]
    assert {(m.status, m.reason) for m in others} == {(MessageStatus.SKIPPED, sendpolicy.CANCELLED)}
    assert all(m.history[-1]["note"] == "campaign cancelled" for m in others)
    assert actions(campaign) == [
        "campaign.launch",
        "campaign.start",
        "campaign.pause",
        "campaign.resume",
        "campaign.cancel",
    ]


def test_a_paused_scheduled_campaign_resumes_as_scheduled(account, actor):
    campaign = make_campaign(
        account, schedule_kind=ScheduleKind.AT, scheduled_at=timezone.now() + timedelta(days=1)
    )
    lifecycle.launch(campaign=campaign, actor=actor)
    lifecycle.pause(campaign=campaign, actor=actor)
    assert lifecycle.start_due(now=timezone.now() + timedelta(days=2)) == 0  # paused: not started
    assert lifecycle.resume(campaign=campaign, actor=actor).status == CampaignStatus.SCHEDULED


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (CampaignStatus.COMPLETED, "cancel"),
        (CampaignStatus.CANCELLED, "cancel"),
        (CampaignStatus.DRAFT, "pause"),
        (CampaignStatus.COMPLETED, "pause"),
        (CampaignStatus.RUNNING, "resume"),
        (CampaignStatus.CANCELLED, "resume"),
    ],
)
def test_transitions_are_checked(account, actor, status, action):
    campaign = make_campaign(account, status=status)
    with pytest.raises(InvalidInput) as exc:
        getattr(lifecycle, action)(campaign=campaign, actor=actor)
    assert exc.value.code == "invalid_transition"
    campaign.refresh_from_db()
    assert campaign.status == status


def test_resume_refuses_while_the_account_is_stopped(account, actor):
    campaign = make_campaign(account, status=CampaignStatus.PAUSED, status_reason="Payment problem")
    account.status, account.status_reason = AccountStatus.SUSPENDED, "Payment method missing."
    account.save()
    with pytest.raises(InvalidInput) as exc:
        lifecycle.resume(campaign=campaign, actor=actor)
    assert "Payment method missing." in exc.value.message


def test_test_send_renders_for_that_subscriber_and_sends_a_single_message(account, actor, monkeypatch):
    template = make_template(account, name="winter_sale", category="MARKETING")
    person = SubscriberFactory(project=account.project, phone="+4915112345670")
    seen = []

    def render(campaign, subscriber):
        seen.append(subscriber)
        return Rendered(
            template_id=template.pk,
            template_name="winter_sale",
            language="en_US",
            components=[
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": "Anna"}, {"type": "text", "text": "7"}],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": "x"}],
                },
            ],
            body="Hi Anna",
        )

    monkeypatch.setattr(lifecycle, "_render_for", render)
    campaign = make_campaign(account)

    message = lifecycle.test_send(campaign=campaign, phone="0151 12345670", actor=actor)

    assert seen == [person]
    assert message.campaign_id is None
    assert message.subscriber_id == person.pk
    assert message.template_id == template.pk
    assert message.marketing is True
    assert actions(campaign) == ["campaign.test_send"]


def test_test_send_says_why_it_is_refused(account, actor, monkeypatch):
    make_template(account, name="winter_sale", category="MARKETING")
    SubscriberFactory(project=ProjectFactory(), phone="+4915112345671")  # another project's
    campaign = make_campaign(account)
    with pytest.raises(InvalidInput) as exc:
        lifecycle.test_send(campaign=campaign, phone="+4915112345671", actor=actor)
    assert "No subscriber of this project" in exc.value.message

    SubscriberFactory(project=account.project, phone="+4915112345672")
    monkeypatch.setattr(
        lifecycle, "_render_for", lambda c, s: Skip("tags.first_name is empty and has no default.")
    )
    with pytest.raises(InvalidInput) as exc:
        lifecycle.test_send(campaign=campaign, phone="+4915112345672", actor=actor)
    assert "tags.first_name is empty" in exc.value.message


def test_test_send_bypasses_no_consent_rule(account, actor, monkeypatch):
    template = make_template(
        account, name="winter_sale", category="MARKETING", components=[{"type": "BODY", "text": "Hi"}]
    )
    SubscriberFactory(project=account.project, phone="+4915112345673", whatsapp_consent=ConsentState.UNKNOWN)
    monkeypatch.setattr(
        lifecycle,
        "_render_for",
        lambda c, s: Rendered(template.pk, "winter_sale", "en_US", [], "Hi"),
    )
    with pytest.raises(InvalidInput) as exc:
        lifecycle.test_send(campaign=make_campaign(account), phone="+4915112345673", actor=actor)
    assert "opt-in" in exc.value.message
    assert Message.objects.count() == 0
