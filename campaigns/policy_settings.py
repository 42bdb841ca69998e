"""Settings -> Sending: the one write path of a project's sending policy and rate card.

The panel's settings page and the Django admin both write through these functions, so the same
limits hold everywhere and every change leaves an audit entry. Readers (fanout, sendpolicy,
preflight, pricing) read the rows directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from controlpanel.countries import NAMES as COUNTRY_NAMES
from controlpanel.models import Project
from controlpanel.services import Actor, record_audit
from subscribers.errors import InvalidInput

from . import pricing
from .models import RateCardEntry, SendingPolicy

MAX_CAP_MESSAGES = 1_000
MAX_CAP_DAYS = 365
# Categories a price can be given for: Meta's three, and the pricing categories of status webhooks
# that otherwise fall back to one of them (pricing.CATEGORY_FALLBACK).
RATE_CATEGORIES = (*pricing.CATEGORIES, *pricing.CATEGORY_FALLBACK)
MAX_PRICE = Decimal("999999.9999")  # RateCardEntry.price: 10 digits, 4 after the point
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def sending_policy(project: Project) -> SendingPolicy:
    """The project's policy; an unsaved one without cap or quiet hours when none was ever set."""
    found = SendingPolicy.objects.filter(project=project).first()
    return found if found is not None else SendingPolicy(project=project)


def _count(value: Any, field: str, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(
            _("%(what)s is a whole number from %(low)s to %(high)s.")
            % {"what": what, "low": low, "high": number_format(high, force_grouping=True)},
            field=field,
        )
    return value


@transaction.atomic
def update_sending_policy(
    *,
    project: Project,
    actor: Actor,
    cap_messages: int | None,
    cap_days: int,
    quiet_start: time | None,
    quiet_end: time | None,
) -> SendingPolicy:
    """Set the frequency cap (at most ``cap_messages`` marketing messages per subscriber in
    ``cap_days`` days; None: no cap) and quiet hours (both times or neither, in each subscriber's
    time zone; a start after the end spans midnight). Audited as ``sending_policy.update`` with
    what changed; running it again with the same values writes nothing. InvalidInput per field.
    """
    if cap_messages is not None:
        cap_messages = _count(cap_messages, "cap_messages", 1, MAX_CAP_MESSAGES, _("The cap"))
    cap_days = _count(cap_days, "cap_days", 1, MAX_CAP_DAYS, _("The number of days"))
    if (quiet_start is None) != (quiet_end is None):
        missing = "quiet_end" if quiet_end is None else "quiet_start"
        raise InvalidInput(_("Quiet hours need a start and an end (or neither)."), field=missing)
    for name, value in (("quiet_start", quiet_start), ("quiet_end", quiet_end)):
        if value is not None and not isinstance(value, time):
            raise InvalidInput(_("A time of day, e.g. 21:00."), field=name)
    if quiet_start is not None and quiet_start == quiet_end:
        raise InvalidInput(_("Quiet hours must end at another time than they start."), field="quiet_end")
    policy, _created = SendingPolicy.objects.select_for_update().get_or_create(project=project)
    new = {
        "cap_messages": cap_messages,
        "cap_days": cap_days,
        "quiet_start": quiet_start,
        "quiet_end": quiet_end,
    }
    changes = {}
    for name, value in new.items():
        old = getattr(policy, name)
        if old != value:
            changes[name] = {"from": _plain(old), "to": _plain(value)}
            setattr(policy, name, value)
    if changes:
        policy.save()
        record_audit(
            project=project, actor=actor, action="sending_policy.update", obj=policy, changes=changes
        )
    return policy


def _plain(value: Any) -> Any:
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, Decimal):
        return str(value)
    return value


# --- rate card ------------------------------------------------------------------------------------


def clean_price(value: Any, field: str) -> Decimal:
    try:
        price = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise InvalidInput(_("A price is a number, e.g. 0.0250."), field=field) from None
    if not price.is_finite() or price < 0 or price > MAX_PRICE:
        raise InvalidInput(_("A price is from 0 to %(max)s.") % {"max": MAX_PRICE}, field=field)
    if price != price.quantize(Decimal("0.0001")):
        raise InvalidInput(_("A price has at most 4 digits after the point."), field=field)
    return price.quantize(Decimal("0.0001"))


def clean_country(value: Any, field: str) -> str:
    """ "" (every other country) or an ISO 3166 region code phonenumbers knows."""
    country = str(value or "").strip().upper()
    if country and country not in COUNTRY_NAMES:
        raise InvalidInput(
            _("%(value)r is not a country code (e.g. DE, US, BR).") % {"value": value}, field=field
        )
    return country


def _key_name(category: str, country: str) -> str:
    return f"{category} {country or 'other'}"


@transaction.atomic
def update_rate_card(
    *,
    project: Project,
    actor: Actor,
    prices: Mapping[tuple[str, str], Decimal | str | None],
    currency: str | None = None,
) -> int:
    """Change the project's rate card: ``prices[(category, country)]`` is the new price of one
    delivered message (a new row when the card has none), None removes the row; rows not named
    stay. ``currency`` (one for the whole card, since estimates add prices up) relabels every row.
    Country "" is the "every other country" row and cannot be removed. The card is seeded with
    Meta's rates first, so an edit never leaves a project without them. Audited as
    ``rate_card.update``; returns how many rows changed (0: nothing written, no audit entry).
    """
    pricing.rate_card(project)  # seeds it on first use
    entries = {
        (e.category, e.country): e for e in RateCardEntry.objects.select_for_update().filter(project=project)
    }
    if currency is not None:
        currency = str(currency).strip().upper()
        if not _CURRENCY.match(currency):
            raise InvalidInput(_("The currency is a three-letter code, e.g. USD or EUR."), field="currency")
    changes: dict[str, Any] = {}
    to_save: list[RateCardEntry] = []
    to_delete: list[int] = []
    for (raw_category, raw_country), raw_price in prices.items():
        category = str(raw_category or "").strip().lower()
        if category not in RATE_CATEGORIES:
            raise InvalidInput(
                _("%(value)r is not a pricing category (%(categories)s).")
                % {"value": raw_category, "categories": ", ".join(RATE_CATEGORIES)},
                field="category",
            )
        country = clean_country(raw_country, "country")
        field = f"price.{category}.{country or 'other'}"
        entry = entries.get((category, country))
        if raw_price is None or raw_price == "":
            if not country:
                raise InvalidInput(_("The price for every other country cannot be removed."), field=field)
            if entry is not None:
                to_delete.append(entry.pk)
                changes[_key_name(category, country)] = {"from": str(entry.price), "to": None}
            continue
        price = clean_price(raw_price, field)
        if entry is None:
            entry = RateCardEntry(
                project=project,
                category=category,
                country=country,
                currency=currency or _card_currency(entries),
            )
            entries[(category, country)] = entry
        elif entry.price == price:
            continue
        changes[_key_name(category, country)] = {
            "from": str(entry.price) if entry.pk else None,
            "to": str(price),
        }
        entry.price = price
        to_save.append(entry)
    if currency is not None:
        relabelled = [
            e for e in entries.values() if e.pk and e.currency != currency and e.pk not in to_delete
        ]
        if relabelled:
            changes["currency"] = {"from": relabelled[0].currency, "to": currency}
        for entry in entries.values():
            entry.currency = currency
        to_save += [e for e in relabelled if e not in to_save]
    if not changes:
        return 0
    RateCardEntry.objects.filter(pk__in=to_delete).delete()
    for entry in to_save:
        entry.save()
    record_audit(project=project, actor=actor, action="rate_card.update", changes=changes)
    return len(to_save) + len(to_delete)


def _card_currency(entries: Mapping[tuple[str, str], RateCardEntry]) -> str:
    return pricing.RateCard(dict(entries)).currency


@transaction.atomic
def reset_rate_card(*, project: Project, actor: Actor) -> int:
    """Back to Meta's published rates (pricing.RATES): edited prices, added and removed countries
    are undone. Audited as ``rate_card.reset``; returns the number of rows of the seeded card."""
    removed = RateCardEntry.objects.filter(project=project).delete()[0]
    added = pricing.seed_rate_card(project)
    record_audit(
        project=project,
        actor=actor,
        action="rate_card.reset",
        changes={"removed": removed, "rates_effective": pricing.RATES_EFFECTIVE.isoformat()},
    )
    return added


def seeded_price(category: str, country: str) -> Decimal | None:
    """Meta's published price the card was seeded with; None for a row the seed does not have."""
    prices = pricing.RATES.get(country)
    if prices is None or category not in pricing.CATEGORIES:
        return None
    return Decimal(prices[pricing.CATEGORIES.index(category)])
