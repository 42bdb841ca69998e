from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import fanout, sendpolicy
from campaigns.models import (
    AudienceKind,
    CampaignPurpose,
    CampaignRecipient,
    Message,
    MessageStatus,
    PassedLocalTime,
    ScheduleKind,
    SendingPolicy,
)
from subscribers.errors import InvalidInput
from subscribers.models import ConsentState, Segment
from tests.factories import ProjectFactory, SubscriberFactory

from .launch_helpers import make_campaign, rows, sent_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(account):
    project = account.project
    return {
        "in": SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_IN),
        "unknown": SubscriberFactory(project=project, whatsapp_consent=ConsentState.UNKNOWN),
        "out": SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_OUT),
        "bsuid": SubscriberFactory(
            project=project, phone=None, bsuid="DE.123456789", whatsapp_consent=ConsentState.OPTED_IN
        ),
    }


def test_marketing_snapshot_decides_consent_in_sql_and_writes_one_row_each(account, people):
    outsider = SubscriberFactory(project=ProjectFactory())
    campaign = make_campaign(account)

    with CaptureQueriesContext(connection) as queries:
        written = fanout.snapshot(campaign)

    assert written == 4
    got = rows(campaign)
    assert outsider.pk not in got
    assert got[people["in"].pk].status == MessageStatus.QUEUED
    assert got[people["in"].pk].reason == ""
    assert got[people["bsuid"].pk].status == MessageStatus.QUEUED  # templates may go to a BSUID
    assert (got[people["unknown"].pk].status, got[people["unknown"].pk].reason) == (
        MessageStatus.SKIPPED,
        sendpolicy.NO_OPT_IN,
    )
    assert (got[people["out"].pk].status, got[people["out"].pk].reason) == (
        MessageStatus.SKIPPED,
        sendpolicy.OPTED_OUT,
    )
    row = got[people["in"].pk]
    assert row.marketing is True
    assert row.account_id == account.pk
    assert row.project_id == account.project_id
    assert row.template_name == "winter_sale"
    assert row.history[0]["status"] == "queued"
    assert len({m.public_id for m in got.values()}) == 4
    inserts = [q["sql"] for q in queries.captured_queries if 'INSERT INTO "campaigns_message"' in q["sql"]]
    assert len(inserts) == 1


def test_a_rerun_adds_nobody(account, people):
    campaign = make_campaign(account)
    assert fanout.snapshot(campaign) == 4
    SubscriberFactory(project=account.project)
    assert fanout.snapshot(campaign) == 1  # only the newcomer
    assert fanout.snapshot(campaign) == 0
    assert Message.objects.filter(campaign=campaign).count() == 5


def test_transactional_goes_to_everyone_not_opted_out(account, people):
    campaign = make_campaign(account, purpose=CampaignPurpose.TRANSACTIONAL)
    fanout.snapshot(campaign)
    got = rows(campaign)
    assert got[people["unknown"].pk].status == MessageStatus.QUEUED
    assert got[people["unknown"].pk].marketing is False
    assert got[people["out"].pk].reason == sendpolicy.OPTED_OUT


def test_authentication_needs_a_phone(account, people):
    campaign = make_campaign(account, purpose=CampaignPurpose.VERIFICATION)
    fanout.snapshot(campaign)
    got = rows(campaign)
    assert got[people["bsuid"].pk].status == MessageStatus.SKIPPED
    assert got[people["bsuid"].pk].reason == sendpolicy.NEEDS_PHONE
    assert got[people["in"].pk].status == MessageStatus.QUEUED


def test_frequency_cap_counts_marketing_sent_in_the_window(account, people):
    SendingPolicy.objects.create(project=account.project, cap_messages=2, cap_days=7)
    capped, fresh, old = people["in"], *SubscriberFactory.create_batch(2, project=account.project)
    sent_message(capped, days_ago=1)
    sent_message(capped, days_ago=3, status=MessageStatus.SENDING, sent_at=None)
    sent_message(fresh, days_ago=1)
    sent_message(fresh, days_ago=2, marketing=False)  # transactional does not count
    sent_message(fresh, days_ago=2, status=MessageStatus.FAILED)  # never reached them
    sent_message(old, days_ago=1)
    sent_message(old, days_ago=9)  # outside the window

    campaign = make_campaign(account)
    fanout.snapshot(campaign)
    got = rows(campaign)

    assert (got[capped.pk].status, got[capped.pk].reason) == (MessageStatus.SKIPPED, sendpolicy.CAPPED)
    assert got[fresh.pk].status == MessageStatus.QUEUED
    assert got[old.pk].status == MessageStatus.QUEUED


def test_cap_does_not_apply_to_transactional(account, people):
    SendingPolicy.objects.create(project=account.project, cap_messages=1, cap_days=7)
    sent_message(people["in"], days_ago=1)
    campaign = make_campaign(account, purpose=CampaignPurpose.REMINDER)
    fanout.snapshot(campaign)
    assert rows(campaign)[people["in"].pk].status == MessageStatus.QUEUED


def test_segment_audience_and_values_from_given_recipients(account, people):
    project = account.project
    segment = Segment.objects.create(
        project=project,
        name="Opted in",
        rule={"type": "group", "op": "and", "children": [{"type": "reachability", "channel": "whatsapp"}]},
    )
    people["in"].external_id = "crm-1"
    people["in"].save()
    other = SubscriberFactory(project=project)
    campaign = make_campaign(account, audience_kind=AudienceKind.SEGMENT, segment=segment, rule={})
    CampaignRecipient.objects.create(campaign=campaign, key="crm-1", values={"order": "A1"})
    CampaignRecipient.objects.create(campaign=campaign, key=other.phone, values={"order": "B2"})

    fanout.snapshot(campaign)
    got = rows(campaign)

    assert {people["in"].pk, other.pk} <= set(got)
    assert people["unknown"].pk not in got  # not in the segment
    assert got[people["in"].pk].values == {"order": "A1"}
    assert got[other.pk].values == {"order": "B2"}


def test_uploaded_list_matches_phones_and_external_ids(account, people):
    project = account.project
    by_id = SubscriberFactory(project=project, external_id="crm-9")
    not_listed = SubscriberFactory(project=project)
    campaign = make_campaign(account, audience_kind=AudienceKind.LIST, rule={})
    CampaignRecipient.objects.create(campaign=campaign, key=people["in"].phone, values={"code": "X"})
    CampaignRecipient.objects.create(campaign=campaign, key="crm-9")
    CampaignRecipient.objects.create(campaign=campaign, key="+4915199999999")  # nobody
    SubscriberFactory(project=ProjectFactory(), external_id="crm-9")  # another project's

    assert fanout.snapshot(campaign) == 2
    got = rows(campaign)
    assert set(got) == {people["in"].pk, by_id.pk}
    assert not_listed.pk not in got
    assert got[people["in"].pk].values == {"code": "X"}
    assert got[by_id.pk].values == {}


def test_everyone_opted_in(account, people):
    campaign = make_campaign(account, audience_kind=AudienceKind.EVERYONE, rule={})
    fanout.snapshot(campaign)
    assert set(rows(campaign)) == {people["in"].pk, people["bsuid"].pk}


def test_a_campaign_without_a_rule_is_refused(account):
    campaign = make_campaign(account, audience_kind=AudienceKind.RULE, rule={})
    with pytest.raises(InvalidInput) as exc:
        fanout.snapshot(campaign)
    assert exc.value.field == "rule"


def test_scheduled_at_becomes_send_after(account, people):
    at = timezone.now() + timedelta(hours=3)
    campaign = make_campaign(account, schedule_kind=ScheduleKind.AT, scheduled_at=at)
    fanout.snapshot(campaign)
    got = rows(campaign)
    assert got[people["in"].pk].send_after == at
    assert got[people["out"].pk].send_after is None  # skipped rows do not wait


def test_now_has_no_wait(account, people):
    campaign = make_campaign(account)
    fanout.snapshot(campaign)
    assert rows(campaign)[people["in"].pk].send_after is None


@pytest.fixture
def zones(account):
    project = account.project
    return {
        "berlin": SubscriberFactory(project=project, time_zone="Europe/Berlin"),
        "ny": SubscriberFactory(project=project, time_zone="America/New_York"),
        "tokyo": SubscriberFactory(project=project, time_zone="Asia/Tokyo"),
        "empty": SubscriberFactory(project=project, time_zone=""),
        "bogus": SubscriberFactory(project=project, time_zone="Mars/Olympus"),
    }


def _local_campaign(account, passed: str, now: datetime):
    return make_campaign(
        account,
        schedule_kind=ScheduleKind.LOCAL_TIME,
        scheduled_at=now,
        local_time=time(10, 0),
        fallback_time_zone="Europe/Lisbon",
        passed_local_time=passed,
    )


def _at(zone: str, day: int, hour: int = 10) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(2030, 1, day, hour, 0, tzinfo=ZoneInfo(zone)).astimezone(UTC)


@pytest.mark.parametrize(
    ("passed", "tokyo"),
    [
        (PassedLocalTime.NEXT_DAY, _at("Asia/Tokyo", 16)),
        (PassedLocalTime.SEND_NOW, None),
    ],
)
def test_local_time_per_subscriber_zone(account, zones, monkeypatch, passed, tokyo):
    # 08:00 UTC on 15 January: 09:00 in Berlin (10:00 to come), 17:00 in Tokyo (10:00 passed),
    # 03:00 in New York; empty and unknown zones use the fallback, Lisbon (08:00).
    now = datetime(2030, 1, 15, 8, 0, tzinfo=UTC)
    monkeypatch.setattr(fanout.timezone, "now", lambda: now)
    campaign = _local_campaign(account, passed, now)

    fanout.snapshot(campaign)
    got = rows(campaign)

    assert got[zones["berlin"].pk].send_after == _at("Europe/Berlin", 15)
    assert got[zones["ny"].pk].send_after == _at("America/New_York", 15)
    assert got[zones["tokyo"].pk].send_after == tokyo
    assert got[zones["tokyo"].pk].status == MessageStatus.QUEUED
    assert got[zones["empty"].pk].send_after == _at("Europe/Lisbon", 15)
    assert got[zones["bogus"].pk].send_after == _at("Europe/Lisbon", 15)


def test_local_time_passed_can_skip(account, zones, monkeypatch):
    now = datetime(2030, 1, 15, 8, 0, tzinfo=UTC)
    monkeypatch.setattr(fanout.timezone, "now", lambda: now)
    campaign = _local_campaign(account, PassedLocalTime.SKIP, now)

    fanout.snapshot(campaign)
    got = rows(campaign)

    assert (got[zones["tokyo"].pk].status, got[zones["tokyo"].pk].reason) == (
        MessageStatus.SKIPPED,
        sendpolicy.LOCAL_TIME_PASSED,
    )
    assert got[zones["berlin"].pk].status == MessageStatus.QUEUED


def test_local_time_is_due_when_the_first_zone_reaches_it(account):
    now = datetime(2030, 1, 15, 0, 0, tzinfo=UTC)
    campaign = _local_campaign(account, PassedLocalTime.NEXT_DAY, datetime(2030, 1, 15, 12, 0, tzinfo=UTC))
    # 10:00 at UTC+14 is 20:00 UTC the day before.
    assert fanout.due_at(campaign, now) == datetime(2030, 1, 14, 20, 0, tzinfo=UTC)
