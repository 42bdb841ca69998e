from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import fanout, policy, sendpolicy
from campaigns.models import CampaignPurpose, Message, MessageKind, MessageStatus, SendingPolicy
from campaigns.outcomes import Hold, Skip
from subscribers.models import ConsentState
from tests.factories import SubscriberFactory
from whatsapp.models import TemplateCategory

from .launch_helpers import make_campaign, sent_message

pytestmark = pytest.mark.django_db

# 21:30 UTC on a winter day: 22:30 in Berlin (quiet), 16:30 in New York (not quiet).
NOW = datetime(2030, 1, 15, 21, 30, tzinfo=UTC)


def claimed(subscriber, *, campaign=None, marketing=True, kind=MessageKind.TEMPLATE) -> Message:
    """A row as the send path hands it over: claimed, subscriber loaded."""
    message = Message.objects.create(
        project=subscriber.project,
        subscriber=subscriber,
        campaign=campaign,
        marketing=marketing,
        kind=kind,
        status=MessageStatus.SENDING,
        sending_at=NOW,
    )
    return Message.objects.select_related("subscriber").get(pk=message.pk)


@pytest.fixture
def cap_policy(account):
    return SendingPolicy.objects.create(project=account.project, cap_messages=2, cap_days=7)


@pytest.fixture
def quiet_policy(account):
    return SendingPolicy.objects.create(
        project=account.project, cap_messages=2, cap_days=7, quiet_start=time(22, 0), quiet_end=time(8, 0)
    )


def test_sql_and_python_consent_reasons_agree_with_the_single_send_policy(account):
    """One wording per reason: fan-out's SQL, decide and the single-send path say the same."""
    out = SubscriberFactory(project=account.project, whatsapp_consent=ConsentState.OPTED_OUT)
    unknown = SubscriberFactory(project=account.project, whatsapp_consent=ConsentState.UNKNOWN)
    bsuid = SubscriberFactory(project=account.project, phone=None, bsuid="DE.1")
    assert policy.consent_refusal(out, TemplateCategory.UTILITY) == sendpolicy.OPTED_OUT
    assert policy.consent_refusal(unknown, TemplateCategory.MARKETING) == sendpolicy.NO_OPT_IN
    assert policy.consent_refusal(bsuid, TemplateCategory.AUTHENTICATION) == sendpolicy.NEEDS_PHONE
    assert fanout.REASONS["opted_out"] == sendpolicy.OPTED_OUT
    assert fanout.REASONS["no_opt_in"] == sendpolicy.NO_OPT_IN


def test_consent_withdrawn_after_launch_skips(account):
    person = SubscriberFactory(project=account.project)
    campaign = make_campaign(account)
    message = claimed(person, campaign=campaign)
    person.whatsapp_consent = ConsentState.OPTED_OUT
    person.save()
    message.subscriber.refresh_from_db()

    assert sendpolicy.decide([message], NOW) == {message.pk: Skip(sendpolicy.OPTED_OUT)}


def test_transactional_ignores_missing_opt_in_but_not_opt_out(account):
    unknown = SubscriberFactory(project=account.project, whatsapp_consent=ConsentState.UNKNOWN)
    out = SubscriberFactory(project=account.project, whatsapp_consent=ConsentState.OPTED_OUT)
    campaign = make_campaign(account, purpose=CampaignPurpose.TRANSACTIONAL)
    a, b = (
        claimed(unknown, campaign=campaign, marketing=False),
        claimed(out, campaign=campaign, marketing=False),
    )
    assert sendpolicy.decide([a, b], NOW) == {b.pk: Skip(sendpolicy.OPTED_OUT)}


def test_authentication_campaign_row_without_phone_is_skipped(account):
    bsuid = SubscriberFactory(project=account.project, phone=None, bsuid="DE.77")
    auth = make_campaign(account, purpose=CampaignPurpose.VERIFICATION)
    utility = make_campaign(account, purpose=CampaignPurpose.TRANSACTIONAL, name="Orders")
    a = claimed(bsuid, campaign=auth, marketing=False)
    b = claimed(bsuid, campaign=utility, marketing=False)
    assert sendpolicy.decide([a, b], NOW) == {a.pk: Skip(sendpolicy.NEEDS_PHONE)}


def test_frequency_cap_counts_other_sends_not_the_batch_itself(account, cap_policy):
    capped = SubscriberFactory(project=account.project, time_zone="Europe/Berlin")
    once = SubscriberFactory(project=account.project, time_zone="Europe/Berlin")
    for days in (1, 2):
        sent_message(capped, days_ago=days)
    sent_message(once, days_ago=1)
    sent_message(once, days_ago=1, marketing=False)  # transactional does not count
    a, b = claimed(capped), claimed(once)

    with CaptureQueriesContext(connection) as queries:
        decisions = sendpolicy.decide([a, b], timezone.now())

    assert decisions == {a.pk: Skip(sendpolicy.CAPPED)}
    assert len(queries) == 2  # the policy, one grouped count


def test_two_rows_to_one_person_in_one_batch_count_each_other(account, cap_policy):
    person = SubscriberFactory(project=account.project, time_zone="Europe/Berlin")
    sent_message(person, days_ago=1)
    first, second = claimed(person), claimed(person)
    decisions = sendpolicy.decide([second, first], timezone.now())
    assert decisions == {second.pk: Skip(sendpolicy.CAPPED)}


def test_cap_window_forgets_old_sends(account, cap_policy):
    person = SubscriberFactory(project=account.project, time_zone="Europe/Berlin")
    sent_message(person, days_ago=8)
    sent_message(person, days_ago=9)
    sent_message(person, days_ago=6.9)
    message = claimed(person)
    assert sendpolicy.decide([message], timezone.now()) == {}
    sent_message(person, days_ago=0.5, status=MessageStatus.UNKNOWN, sent_at=None)  # in flight counts
    assert sendpolicy.decide([message], timezone.now()) == {message.pk: Skip(sendpolicy.CAPPED)}


def test_quiet_hours_hold_until_the_window_ends_in_the_subscribers_zone(account, quiet_policy):
    berlin = SubscriberFactory(project=account.project, time_zone="Europe/Berlin")
    new_york = SubscriberFactory(project=account.project, time_zone="America/New_York")
    a, b = claimed(berlin), claimed(new_york)

    decisions = sendpolicy.decide([a, b], NOW)

    assert set(decisions) == {a.pk}
    hold = decisions[a.pk]
    assert isinstance(hold, Hold)
    assert hold.until == datetime(2030, 1, 16, 8, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert "Quiet hours" in hold.reason


def test_quiet_hours_use_the_project_zone_when_the_subscriber_has_none(account, quiet_policy):
    # The test project is in Europe/Berlin; "Mars/Olympus" is no zone.
    for zone in ("", "Mars/Olympus"):
        person = SubscriberFactory(project=account.project, time_zone=zone)
        message = claimed(person)
        assert isinstance(sendpolicy.decide([message], NOW)[message.pk], Hold)


def test_held_rows_do_not_use_up_the_cap_in_the_batch(account):
    SendingPolicy.objects.create(
        project=account.project, cap_messages=1, cap_days=7, quiet_start=time(22), quiet_end=time(8)
    )
    person = SubscriberFactory(project=account.project, time_zone="Europe/Berlin")
    first, second = claimed(person), claimed(person)
    decisions = sendpolicy.decide([first, second], NOW)
    assert all(isinstance(d, Hold) for d in decisions.values())
    assert set(decisions) == {first.pk, second.pk}


def test_transactional_bypasses_cap_and_quiet_hours(account, quiet_policy):
    person = SubscriberFactory(project=account.project, time_zone="Europe/Berlin")
    for days in (1, 2, 3):
        sent_message(person, days_ago=days)
    marketing, transactional = claimed(person), claimed(person, marketing=False)
    at_night = sendpolicy.decide([marketing, transactional], NOW)  # 22:30 in Berlin
    assert set(at_night) == {marketing.pk}
    assert isinstance(at_night[marketing.pk], Hold)
    capped = sendpolicy.decide([marketing, transactional], timezone.now())  # three sent this week
    assert capped.get(marketing.pk) == Skip(sendpolicy.CAPPED)  # the cap is checked before quiet hours
    assert transactional.pk not in capped


def test_without_a_policy_marketing_goes(account):
    person = SubscriberFactory(project=account.project)
    for days in (1, 2, 3):
        sent_message(person, days_ago=days)
    message = claimed(person)
    assert sendpolicy.decide([message], NOW) == {}


def test_text_messages_keep_the_window_rule(account):
    person = SubscriberFactory(project=account.project, last_inbound_at=None)
    message = claimed(person, marketing=False, kind=MessageKind.TEXT)
    assert "24 hours" in sendpolicy.decide([message], NOW)[message.pk].reason


@pytest.mark.parametrize(
    ("local", "start", "end", "until"),
    [
        (datetime(2030, 1, 15, 23, 0), time(22), time(8), datetime(2030, 1, 16, 8, 0)),
        (datetime(2030, 1, 16, 7, 59), time(22), time(8), datetime(2030, 1, 16, 8, 0)),
        (datetime(2030, 1, 16, 8, 0), time(22), time(8), None),
        (datetime(2030, 1, 15, 21, 59), time(22), time(8), None),
        (datetime(2030, 1, 15, 13, 0), time(12), time(14), datetime(2030, 1, 15, 14, 0)),
        (datetime(2030, 1, 15, 14, 0), time(12), time(14), None),
        (datetime(2030, 1, 15, 13, 0), time(12), time(12), None),
    ],
)
def test_quiet_until(local, start, end, until):
    zone = ZoneInfo("Europe/Berlin")
    expected = until.replace(tzinfo=zone) if until else None
    assert sendpolicy.quiet_until(local.replace(tzinfo=zone), start, end) == expected
