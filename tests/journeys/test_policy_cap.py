"""The frequency cap of a journey's send step is the campaigns' one rule, on the run's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import sendpolicy
from campaigns.models import Message, MessageKind, MessageStatus, SendingPolicy
from campaigns.outcomes import Skip
from journeys.steps import Go
from journeys.steps import get as step_type
from journeys.steps.outbox import capped
from mail.models import EmailTemplate
from subscribers.models import ConsentState
from tests.campaigns.launch_helpers import make_campaign
from tests.factories import SubscriberFactory
from tests.journeys.helpers import make_account, make_journey, make_run, make_template, visit

pytestmark = pytest.mark.django_db

SEND = {
    "id": "send",
    "type": "whatsapp_template",
    "template": {"name": "support_menu", "language": "de"},
    "bindings": {"body.1": "{{ subscriber.name }}", "body.2": "x"},
    "next": None,
}
# A simulated clock far from the wall clock, as a dry run's or a test's.
NOW = datetime(2030, 1, 15, 9, 0, tzinfo=UTC)


@pytest.fixture
def account(project):
    account = make_account(project)
    make_template(account)
    return account


@pytest.fixture
def sub(project):
    return SubscriberFactory(project=project, name="Anna", whatsapp_consent=ConsentState.OPTED_IN)


def went_out(subscriber, at: datetime) -> Message:
    """A marketing row that went out at ``at`` (counts toward the cap of a window holding ``at``)."""
    return Message.objects.create(
        project=subscriber.project,
        subscriber=subscriber,
        marketing=True,
        status=MessageStatus.DELIVERED,
        sending_at=at,
        sent_at=at,
    )


def journey_step(project, subscriber, now: datetime, *, dry_run: bool = False):
    journey = make_journey(project, [SEND])
    v = visit(make_run(journey, subscriber, now=now), "send", now=now, dry_run=dry_run)
    assert step_type("whatsapp_template").run(v) == Go("next")
    return v.record.detail


@pytest.mark.parametrize(
    ("sent_days_before", "clock_days", "is_capped"),
    [
        (1, 0, True),  # the wall clock: sent yesterday, inside the 7-day window
        (1, 10, False),  # a clock 10 days on: yesterday's message left the window
        (20, -15, True),  # a clock 15 days back: a message of 20 days ago is inside its window
    ],
)
def test_the_cap_is_decided_on_the_visits_clock(
    project, account, sub, sent_days_before, clock_days, is_capped
):
    SendingPolicy.objects.create(project=project, cap_messages=1, cap_days=7)
    wall = timezone.now()
    went_out(sub, wall - timedelta(days=sent_days_before))
    detail = journey_step(project, sub, wall + timedelta(days=clock_days))
    assert (detail.get("reason") == sendpolicy.CAPPED) is is_capped
    assert detail["outcome"] == ("skipped" if is_capped else "sent")


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_a_campaign_and_a_journey_obey_the_projects_cap_alike(project, account, sub, cap):
    """Same data, same clock: decide() skips the campaign's row exactly when the journey skips."""
    SendingPolicy.objects.create(project=project, cap_messages=cap, cap_days=7)
    went_out(sub, NOW - timedelta(days=8))  # before the window: counts for neither
    campaign = make_campaign(account)
    seen = []
    for _ in range(cap + 1):
        row = Message.objects.create(
            project=project,
            subscriber=sub,
            campaign=campaign,
            marketing=True,
            kind=MessageKind.TEMPLATE,
            status=MessageStatus.SENDING,
            sending_at=NOW,
        )
        claimed = Message.objects.select_related("subscriber").get(pk=row.pk)
        campaign_capped = sendpolicy.decide([claimed], NOW) == {row.pk: Skip(sendpolicy.CAPPED)}
        row.delete()  # the journey decides on the same history, without the campaign's row
        journey_capped = journey_step(project, sub, NOW).get("reason") == sendpolicy.CAPPED
        seen.append((campaign_capped, journey_capped))
        went_out(sub, NOW - timedelta(days=1))  # one more inside the window
    assert seen == [(False, False)] * cap + [(True, True)]


def test_a_dry_run_shows_the_cap_a_real_run_would_meet(project, account, sub):
    SendingPolicy.objects.create(project=project, cap_messages=1, cap_days=7)
    went_out(sub, NOW - timedelta(days=1))
    assert journey_step(project, sub, NOW, dry_run=True) == {
        "outcome": "skipped",
        "reason": sendpolicy.CAPPED,
        "template": "support_menu",
        "language": "de",
        "body": "Hallo Anna, dein Code: x",
    }
    # Fast-forwarded past the window, it would send; and nothing was written either way.
    assert journey_step(project, sub, NOW + timedelta(days=7), dry_run=True)["outcome"] == "would_send"
    assert Message.objects.count() == 1


def test_the_policy_is_read_once_per_batch_then_one_count_per_visit(project, account, sub):
    SendingPolicy.objects.create(project=project, cap_messages=1, cap_days=7)
    journey = make_journey(project, [SEND])
    v = visit(make_run(journey, sub, now=NOW), "send", now=NOW)
    assert not capped(v)
    # The engine's batch shares the journey (and its project) across its runs' visits.
    with CaptureQueriesContext(connection) as queries:
        assert not capped(v)
    assert len(queries) == 1


def test_an_email_dry_run_shows_the_cap_on_its_clock_too(project):
    EmailTemplate.objects.create(project=project, name="news", subject="News", text="Hi", marketing=True)
    sub = SubscriberFactory(project=project, email="anna@example.com", email_consent=ConsentState.OPTED_IN)
    SendingPolicy.objects.create(project=project, cap_messages=1, cap_days=7)
    went_out(sub, NOW - timedelta(days=1))
    journey = make_journey(project, [{"id": "s", "type": "send_email", "template": "news"}])
    for clock, outcome in ((NOW, "skipped"), (NOW + timedelta(days=7), "would_send")):
        v = visit(make_run(journey, sub, now=clock), "s", now=clock, dry_run=True)
        step_type("send_email").run(v)
        assert v.record.detail["outcome"] == outcome
    assert Message.objects.count() == 1
