from __future__ import annotations

from decimal import Decimal

import pytest

from campaigns import pricing
from campaigns.models import CampaignPurpose, Message, MessageStatus, RateCardEntry
from tests.factories import ProjectFactory, SubscriberFactory

from .launch_helpers import make_campaign

pytestmark = pytest.mark.django_db


def test_rate_card_is_seeded_once_per_project_and_keeps_edits(account):
    project = account.project
    card = pricing.rate_card(project)
    assert card.price("marketing", "DE") == Decimal("0.1365")
    assert card.price("utility", "IN") == Decimal("0.0014")
    assert card.price("marketing", "ZZ") == Decimal("0.0604")  # rest of world
    assert card.currency == "USD"
    count = RateCardEntry.objects.filter(project=project).count()
    assert count == len(pricing.RATES) * 3

    RateCardEntry.objects.filter(project=project, category="marketing", country="DE").update(price="0.2000")
    assert pricing.seed_rate_card(project) == 0
    assert pricing.rate_card(project).price("marketing", "DE") == Decimal("0.2000")
    assert RateCardEntry.objects.filter(project=ProjectFactory()).count() == 0  # lazily, per project


def test_pricing_categories_of_webhooks_fall_back_to_their_family(account):
    card = pricing.rate_card(account.project)
    assert card.price("authentication_international", "IN") == card.price("authentication", "IN")
    assert card.price("marketing_lite", "DE") == card.price("marketing", "DE")
    assert card.price("service", "DE") == Decimal(0)


@pytest.mark.parametrize(
    ("country", "prefix", "market"),
    [
        ("DE", "491", "DE"),
        ("", "491", "DE"),
        ("", "155", "US"),  # +1: North America
        ("", "919", "IN"),
        ("", "353", "IE"),
        ("", "", ""),
        ("", "800", ""),  # +800: non-geographic
        ("at", "491", "AT"),  # the subscriber's own country wins
    ],
)
def test_market_of_a_recipient(country, prefix, market):
    assert pricing.country_of(country, prefix) == market


def test_actual_cost_counts_billable_rows_by_pricing_category_and_market(account):
    project = account.project
    campaign = make_campaign(account, purpose=CampaignPurpose.PROMOTION)
    german = SubscriberFactory(project=project, phone="+4915112340001", country="")
    indian = SubscriberFactory(project=project, phone="+919812345678", country="")
    dutch_in_de = SubscriberFactory(project=project, phone="+4915112340002", country="NL")

    def row(subscriber, **kw):
        return Message.objects.create(
            project=project, subscriber=subscriber, campaign=campaign, status=MessageStatus.DELIVERED, **kw
        )

    row(german, pricing_category="marketing", pricing_type="regular", billable=True)
    row(indian, pricing_category="marketing", pricing_type="regular", billable=True)
    row(dutch_in_de, pricing_category="marketing", pricing_type="", billable=True)  # older webhook
    other = make_campaign(account, name="Other")
    Message.objects.create(
        project=project,
        subscriber=german,
        campaign=other,
        pricing_category="marketing",
        pricing_type="regular",
    )
    free = SubscriberFactory(project=project, phone="+4915112340003")
    row(free, pricing_category="utility", pricing_type="free_customer_service", billable=False)
    failed = SubscriberFactory(project=project, phone="+4915112340004")
    Message.objects.create(project=project, subscriber=failed, campaign=campaign, status=MessageStatus.FAILED)

    total, currency = pricing.actual_cost(campaign)

    assert currency == "USD"
    assert total == Decimal("0.1365") + Decimal("0.0107") + Decimal("0.1597")


def test_estimate_of_queued_rows(account):
    project = account.project
    campaign = make_campaign(account, purpose=CampaignPurpose.TRANSACTIONAL)
    for phone in ("+4915112340011", "+4915112340012", "+5511987654321"):
        Message.objects.create(
            project=project,
            subscriber=SubscriberFactory(project=project, phone=phone, country=""),
            campaign=campaign,
        )
    Message.objects.create(
        project=project, subscriber=SubscriberFactory(project=project), campaign=campaign, status="skipped"
    )
    assert pricing.estimate_queued(campaign) == (2 * Decimal("0.0550") + Decimal("0.0068"), "USD")
