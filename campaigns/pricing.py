"""Meta's price list (the rate card) and what a campaign costs: estimated before, actual after.

Meta charges per delivered template message, by template category and the recipient's market
(whatsapp-cloud-api.md section 7). Each project has an editable rate card (``RateCardEntry``,
the admin edits it); it is seeded lazily, the first time a project needs a price, from ``RATES``
below: no data migration, and a project that edited its card keeps its edits. Rates change every
quarter: the seed is dated (``RATES_EFFECTIVE``) and meant to be checked against Meta's rate-card
CSV, not trusted forever.

A recipient's market is ``Subscriber.country``, else the country of the phone's calling code
(phonenumbers); a market without its own row pays the "rest of world" row (country "").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import phonenumbers
from django.db.models import Count, Q
from django.db.models.functions import Substr

from controlpanel.models import Project

from .models import AudienceRow, Campaign, Message, MessageStatus, RateCardEntry

RATES_EFFECTIVE = date(2025, 7, 1)
RATES_CURRENCY = "USD"
CATEGORIES = ("marketing", "utility", "authentication")
# USD per delivered template message (marketing, utility, authentication), from Meta's per-message
# rate card effective 2025-07-01 (per-message pricing). Markets Meta prices as a region share its
# rate: US and CA are "North America". "" is the rest of the world ("Other").
RATES: dict[str, tuple[str, str, str]] = {
    "AE": ("0.0499", "0.0157", "0.0157"),
    "BR": ("0.0625", "0.0068", "0.0068"),
    "CA": ("0.0250", "0.0034", "0.0034"),
    "DE": ("0.1365", "0.0550", "0.0550"),
    "EG": ("0.1073", "0.0036", "0.0036"),
    "ES": ("0.0615", "0.0200", "0.0200"),
    "FR": ("0.0859", "0.0300", "0.0300"),
    "GB": ("0.0529", "0.0220", "0.0220"),
    "ID": ("0.0411", "0.0250", "0.0250"),
    "IN": ("0.0107", "0.0014", "0.0014"),
    "IT": ("0.0691", "0.0300", "0.0300"),
    "MX": ("0.0305", "0.0085", "0.0085"),
    "NG": ("0.0516", "0.0067", "0.0067"),
    "NL": ("0.1597", "0.0500", "0.0500"),
    "SA": ("0.0455", "0.0107", "0.0107"),
    "TR": ("0.0109", "0.0053", "0.0053"),
    "US": ("0.0250", "0.0034", "0.0034"),
    "ZA": ("0.0379", "0.0076", "0.0076"),
    "": ("0.0604", "0.0077", "0.0077"),
}
# Pricing categories of status webhooks priced at another category's row when the card has none.
CATEGORY_FALLBACK = {"authentication_international": "authentication", "marketing_lite": "marketing"}
# A billable row: Meta's pricing type "regular" (newer webhooks), or billable=true (older ones).
BILLABLE = Q(pricing_type="regular") | Q(pricing_type="", billable=True)


def seed_rate_card(project: Project) -> int:
    """Give ``project`` the seed rates it does not have yet; returns how many rows were added.

    Idempotent, and never overwrites a row: an edited price stays.
    """
    entries = [
        RateCardEntry(
            project=project, category=category, country=country, price=Decimal(price), currency=RATES_CURRENCY
        )
        for country, prices in RATES.items()
        for category, price in zip(CATEGORIES, prices, strict=True)
    ]
    before = RateCardEntry.objects.filter(project=project).count()
    RateCardEntry.objects.bulk_create(entries, ignore_conflicts=True)
    return RateCardEntry.objects.filter(project=project).count() - before


@dataclass(frozen=True)
class RateCard:
    entries: dict[tuple[str, str], RateCardEntry]

    @property
    def currency(self) -> str:
        other = self.entries.get(("marketing", ""))
        if other is not None:
            return other.currency
        return next(iter(self.entries.values())).currency if self.entries else RATES_CURRENCY

    def price(self, category: str, country: str) -> Decimal:
        category = category.lower()
        for cat in (category, CATEGORY_FALLBACK.get(category)):
            if cat is None:
                continue
            for market in (country, ""):
                entry = self.entries.get((cat, market))
                if entry is not None:
                    return entry.price
        return Decimal(0)


def rate_card(project: Project) -> RateCard:
    """The project's rate card, seeded on first use."""
    entries = {(e.category, e.country): e for e in RateCardEntry.objects.filter(project=project)}
    if not entries:
        seed_rate_card(project)
        entries = {(e.category, e.country): e for e in RateCardEntry.objects.filter(project=project)}
    return RateCard(entries)


def country_of(country: str, phone_prefix: str | None) -> str:
    """The recipient's market: their country, else the country of their phone's calling code.

    ``phone_prefix`` is the first digits after the "+" (3 are enough: calling codes are 1-3 digits
    and none is a prefix of another). "" when neither tells.
    """
    if country:
        return country.upper()
    digits = (phone_prefix or "").lstrip("+")
    for length in (1, 2, 3):
        code = digits[:length]
        if len(code) == length and code.isdigit():
            regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(code))
            if regions:
                region = regions[0]
                return "" if region == "001" else region  # 001: non-geographic numbers
    return ""


@dataclass(frozen=True)
class CostLine:
    category: str
    country: str  # "" = rest of world / unknown
    recipients: int
    price: Decimal
    cost: Decimal


def cost_of(card: RateCard, counts: Iterable[tuple[str, str, int]]) -> tuple[Decimal, list[CostLine]]:
    """Sum (category, country, recipients) groups at the card's prices; lines by market, costliest first."""
    merged: dict[tuple[str, str], int] = defaultdict(int)
    for category, country, n in counts:
        merged[(category.lower(), country)] += n
    lines = []
    for (category, country), n in merged.items():
        price = card.price(category, country)
        lines.append(CostLine(category, country, n, price, price * n))
    lines.sort(key=lambda line: (-line.cost, line.country))
    return sum((line.cost for line in lines), Decimal(0)), lines


def _market_counts(messages, category: str | None = None) -> list[tuple[str, str, int]]:
    """(category, market, count) of outbox or audience rows: one grouped query by country and calling code."""
    fields = ["subscriber__country"] if category else ["pricing_category", "subscriber__country"]
    grouped = (
        messages.order_by()
        .annotate(prefix=Substr("subscriber__phone", 2, 3))
        .values(*fields, "prefix")
        .annotate(n=Count("*"))
    )
    return [
        (category or row["pricing_category"], country_of(row["subscriber__country"], row["prefix"]), row["n"])
        for row in grouped
    ]


def estimate_queued(campaign: Campaign) -> tuple[Decimal, str]:
    """What the campaign's queued rows will cost if all are delivered (written at the snapshot)."""
    card = rate_card(campaign.project)
    category = campaign.category.lower()
    rows = Message.objects.filter(campaign=campaign, status=MessageStatus.QUEUED)
    # With the recipients whose outbox row is not written yet (materialize.py).
    waiting = AudienceRow.objects.filter(campaign=campaign, reason="")
    total, _ = cost_of(card, [*_market_counts(rows, category), *_market_counts(waiting, category)])
    return total, card.currency


def actual_cost(campaign: Campaign) -> tuple[Decimal, str]:
    """What Meta charges for the campaign so far: billable rows (status webhooks' pricing) x the card."""
    card = rate_card(campaign.project)
    rows = Message.objects.filter(campaign=campaign).exclude(pricing_category="").filter(BILLABLE)
    total, _ = cost_of(card, _market_counts(rows))
    return total, card.currency
