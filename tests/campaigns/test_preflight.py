"""Preflight numbers. bindings.required_fields is replaced through preflight's seam here; the
end-to-end flow (test_campaign_flow.py) runs the real one."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import fanout, preflight
from campaigns.models import CampaignPurpose, CampaignRecipient, Message, SendingPolicy
from subscribers.models import ConsentState, TagDefinition, TagType, TagValue
from tests.factories import ProjectFactory, SubscriberFactory

from .launch_helpers import make_campaign, sent_message

pytestmark = pytest.mark.django_db


def required(tags=(), subscriber_fields=(), values=()):
    return SimpleNamespace(tags=set(tags), subscriber_fields=set(subscriber_fields), values=set(values))


@pytest.fixture
def audience(account):
    project = account.project
    SendingPolicy.objects.create(project=project, cap_messages=1, cap_days=7)
    people = {
        "de": SubscriberFactory(project=project, phone="+4915112300001", country="DE"),
        "de2": SubscriberFactory(project=project, phone="+4915112300002", country=""),
        "in": SubscriberFactory(project=project, phone="+919812345678", country=""),
        "capped": SubscriberFactory(project=project, phone="+4915112300003"),
        "unknown": SubscriberFactory(project=project, whatsapp_consent=ConsentState.UNKNOWN),
        "out": SubscriberFactory(project=project, whatsapp_consent=ConsentState.OPTED_OUT),
        "bsuid": SubscriberFactory(project=project, phone=None, bsuid="DE.9"),
    }
    sent_message(people["capped"])
    SubscriberFactory(project=ProjectFactory())  # another project's
    return people


def test_preflight_counts_what_launch_writes(account, audience):
    account.throughput_mps = 2
    account.messaging_tier = "TIER_250"
    account.save()
    campaign = make_campaign(account, throttle_mps=5)

    result = preflight.preflight(campaign)

    assert result.audience == 7
    assert result.excluded == {
        "missing_number": 0,
        "opted_out": 1,
        "no_opt_in": 1,
        "capped": 1,
        "local_time_passed": 0,
        "missing_binding": 0,
    }
    assert result.sendable == 4
    # DE (country), DE (from +49), IN (from +91), and the BSUID-only one at the rest-of-world rate.
    assert result.cost == 2 * Decimal("0.1365") + Decimal("0.0107") + Decimal("0.0604")
    assert result.currency == "USD"
    assert result.throughput_mps == 2  # the number's limit beats a higher throttle
    assert result.estimated_seconds == 2
    assert result.tier_limit == 250 and result.warnings == []

    # The same numbers as the rows launch writes.
    fanout.snapshot(campaign)
    skipped = Message.objects.filter(campaign=campaign, status="skipped").count()
    assert skipped == sum(result.excluded.values())


def test_transactional_preflight_counts_no_opt_in_as_sendable(account, audience):
    campaign = make_campaign(account, purpose=CampaignPurpose.TRANSACTIONAL)
    result = preflight.preflight(campaign)
    assert result.excluded["no_opt_in"] == 0
    assert result.excluded["capped"] == 0
    assert result.sendable == 6


def test_tier_warning_when_the_audience_exceeds_the_daily_limit(account, audience):
    account.messaging_tier = "TIER_2K"
    account.save()
    SubscriberFactory.create_batch(3, project=account.project)
    assert preflight.tier_limit("TIER_2K") == (True, 2000)
    assert preflight.tier_limit("TIER_UNLIMITED") == (True, None)
    assert preflight.tier_limit("") == (False, None)
    assert preflight.tier_limit("TIER_100K") == (True, 100_000)

    result = preflight.preflight(make_campaign(account))
    assert result.warnings == []

    account.messaging_tier = "TIER_1K"
    account.save()
    small = preflight.tier_limit("TIER_1K")
    assert small == (True, 1000)
    account.messaging_tier = "5"
    account.save()
    result = preflight.preflight(make_campaign(account, name="Big"))
    assert len(result.warnings) == 1
    assert "exceeds the number's messaging limit of 5" in result.warnings[0]


def test_missing_binding_values(account, audience, monkeypatch):
    project = account.project
    first_name = TagDefinition.objects.create(project=project, name="first_name", type=TagType.STRING)
    for key in ("de", "in", "bsuid"):
        TagValue.objects.create(project=project, subscriber=audience[key], tag=first_name, value_text="Anna")
    audience["de"].email = "anna@example.com"
    audience["de"].save()
    campaign = make_campaign(account, bindings={"body": {"1": "{{ tags.first_name }}"}})

    monkeypatch.setattr(preflight, "_required_fields", lambda c: required(tags={"first_name"}))
    assert preflight.preflight(campaign).excluded["missing_binding"] == 1  # de2 lacks it

    monkeypatch.setattr(
        preflight, "_required_fields", lambda c: required(tags={"first_name"}, subscriber_fields={"email"})
    )
    result = preflight.preflight(campaign)
    assert result.excluded["missing_binding"] == 3  # only "de" has both
    assert result.sendable == 1

    monkeypatch.setattr(preflight, "_required_fields", lambda c: required(tags={"Country"}))
    assert preflight.preflight(campaign).excluded["missing_binding"] == 3  # built-in tag, a column


def test_missing_per_recipient_values(account, audience, monkeypatch):
    campaign = make_campaign(account, bindings={"body": {"1": "{{ values.order }}"}})
    CampaignRecipient.objects.create(campaign=campaign, key=audience["de"].phone, values={"order": "A1"})
    CampaignRecipient.objects.create(campaign=campaign, key=audience["in"].phone, values={"order": ""})
    monkeypatch.setattr(preflight, "_required_fields", lambda c: required(values={"order"}))
    result = preflight.preflight(campaign)
    assert result.excluded["missing_binding"] == 3
    assert result.sendable == 1


def test_preflight_is_one_query_for_the_figures(account, audience):
    campaign = make_campaign(account)
    preflight.preflight(campaign)  # seeds the rate card
    with CaptureQueriesContext(connection) as queries:
        preflight.preflight(campaign)
    grouped = [q for q in queries.captured_queries if "GROUP BY x.reason" in q["sql"]]
    assert len(grouped) == 1
    assert len(queries) <= 4  # sending policy, the grouped figures, the rate card, given recipients


def test_as_dict_for_the_api(account, audience):
    body = preflight.preflight(make_campaign(account)).as_dict()
    assert body["audience"] == 7
    assert {e["reason"]: e["count"] for e in body["excluded"]}["capped"] == 1
    assert body["estimated_cost"]["currency"] == "USD"
    assert body["estimated_cost"]["rates_effective"] == "2025-07-01"
    assert body["estimated_cost"]["amount"] == str(
        2 * Decimal("0.1365") + Decimal("0.0107") + Decimal("0.0604")
    )
