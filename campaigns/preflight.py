"""What launching a campaign now would do: who gets it, who is left out and why, cost, duration, limits.

The exclusions are fanout's own skip conditions (``fanout.plan``), so the counts shown before launch
are the rows launch writes, plus recipients missing a value a binding needs without a ``default``
(bindings.required_fields), which rendering would skip at send time. All of it is one grouped
query over the audience (by reason, country and calling code), fast at a million recipients.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import CharField, TextField
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from subscribers.models import Subscriber, TagDefinition, TagValue
from subscribers.tags import BUILTIN_TAGS

from . import fanout, pricing
from .fanout import Condition, q
from .models import Campaign

EXCLUSIONS = {
    "missing_number": gettext_lazy("No WhatsApp number"),
    "opted_out": gettext_lazy("Opted out"),
    "no_opt_in": gettext_lazy("No WhatsApp opt-in"),
    "capped": gettext_lazy("Frequency cap reached"),
    "local_time_passed": gettext_lazy("Local send time already passed"),
    "missing_binding": gettext_lazy("Missing a value a binding needs"),
}
# Meta's messaging limit tiers: unique users reached outside a service window per moving 24 hours
# (whatsapp-cloud-api.md 6.3). Older names (TIER_50, TIER_1K) still come from the phone-number field.
_TIER_RE = re.compile(r"^(?:TIER_)?(\d+)(K|M)?$")


def tier_limit(tier: str) -> tuple[bool, int | None]:
    """(known, limit) of a messaging tier name: ("TIER_10K") -> (True, 10000); unlimited -> (True, None)."""
    name = (tier or "").strip().upper()
    if name in ("TIER_UNLIMITED", "UNLIMITED"):
        return True, None
    match = _TIER_RE.match(name)
    if not match:
        return False, None
    return True, int(match.group(1)) * {"K": 1_000, "M": 1_000_000, None: 1}[match.group(2)]


@dataclass
class Preflight:
    audience: int
    excluded: dict[str, int]
    sendable: int
    cost: Decimal
    currency: str
    cost_lines: list[pricing.CostLine]
    throughput_mps: int | None
    estimated_seconds: int | None
    tier: str
    tier_limit: int | None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "audience": self.audience,
            "sendable": self.sendable,
            "excluded": [
                {"reason": code, "label": str(EXCLUSIONS[code]), "count": self.excluded.get(code, 0)}
                for code in EXCLUSIONS
            ],
            "estimated_cost": {
                "amount": str(self.cost),
                "currency": self.currency,
                "rates_effective": pricing.RATES_EFFECTIVE.isoformat(),
                "by_market": [
                    {
                        "category": line.category,
                        "country": line.country or "other",
                        "recipients": line.recipients,
                        "price": str(line.price),
                        "cost": str(line.cost),
                    }
                    for line in self.cost_lines
                ],
            },
            "throughput_mps": self.throughput_mps,
            "estimated_seconds": self.estimated_seconds,
            "messaging_tier": self.tier,
            "messaging_limit": self.tier_limit,
            "warnings": self.warnings,
        }


def _required_fields(campaign: Campaign):
    """What recipients must have for the bindings without a ``default`` (one place, for tests)."""
    from .bindings import required_fields

    return required_fields(campaign.bindings or {})


def preflight(campaign: Campaign, *, now: datetime | None = None) -> Preflight:
    now = now or timezone.now()
    required = _required_fields(campaign) if campaign.bindings else None
    columns = _required_columns(campaign, required)
    plan = fanout.plan(campaign, now, extra_columns=sorted(columns.values()))
    extra = _binding_conditions(campaign, plan, required, columns)
    labels = {code: code for code in EXCLUSIONS}
    reason_sql, reason_params = plan.reason_case(labels, extra)
    sql = (
        f"SELECT x.reason, x.country, x.prefix, COUNT(*) FROM (SELECT {reason_sql} AS reason,"  # noqa: S608
        f" s.country AS country, SUBSTR(s.phone, 2, 3) AS prefix FROM {plan.from_sql}"
        f") x GROUP BY x.reason, x.country, x.prefix"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*reason_params, *plan.from_params])
        groups = cursor.fetchall()
    excluded = dict.fromkeys(EXCLUSIONS, 0)
    markets: list[tuple[str, str, int]] = []
    category = campaign.category.lower()
    for reason, country, prefix, n in groups:
        if reason is None:
            markets.append((category, pricing.country_of(country or "", prefix), n))
        else:
            excluded[reason] += n
    audience = sum(row[3] for row in groups)
    sendable = audience - sum(excluded.values())
    card = pricing.rate_card(campaign.project)
    cost, lines = pricing.cost_of(card, markets)
    warnings: list[str] = []
    account = campaign.account
    rate = seconds = None
    tier, limit = "", None
    if account is None:
        warnings.append(_("No WhatsApp account is chosen: the duration and the messaging limit are unknown."))
    else:
        rate = min(campaign.throttle_mps or account.throughput_mps, account.throughput_mps) or None
        seconds = math.ceil(sendable / rate) if rate else None
        tier = account.messaging_tier
        known, limit = tier_limit(tier)
        if not known:
            warnings.append(_("The number's messaging limit is not known yet: check the connection."))
        elif limit is not None and sendable > limit:
            warnings.append(
                _(
                    "The audience (%(sendable)s recipients) exceeds the number's messaging limit of "
                    "%(limit)s unique users per 24 hours (%(tier)s): Meta will not deliver to the rest until "
                    "the limit frees up. Split the audience or send over several days."
                )
                % {
                    "sendable": number_format(sendable, force_grouping=True),
                    "limit": number_format(limit, force_grouping=True),
                    "tier": tier,
                }
            )
    return Preflight(
        audience=audience,
        excluded=excluded,
        sendable=sendable,
        cost=cost,
        currency=card.currency,
        cost_lines=lines,
        throughput_mps=rate,
        estimated_seconds=seconds,
        tier=tier,
        tier_limit=limit,
        warnings=warnings,
    )


def _text_fields() -> dict[str, str]:
    return {f.name: f.name for f in Subscriber._meta.concrete_fields if isinstance(f, (CharField, TextField))}


def _required_columns(campaign: Campaign, required) -> dict[str, str]:
    """Subscriber text fields the bindings need, by the name used in the binding (or tag name)."""
    if required is None:
        return {}
    text_fields = _text_fields()
    columns = {name: text_fields[name] for name in required.subscriber_fields if name in text_fields}
    for name in required.tags:
        builtin = BUILTIN_TAGS.get(name.lower())
        if builtin is not None and builtin.field in text_fields:
            columns[f"tag:{name}"] = builtin.field
    return columns


def _binding_conditions(
    campaign: Campaign, plan: fanout.Plan, required, columns: dict[str, str]
) -> list[Condition]:
    """One "missing_binding" condition: any required subscriber field, tag or value is empty."""
    if required is None:
        return []
    parts: list[str] = []
    params: list[Any] = []
    for column in sorted(set(columns.values())):
        parts.append(f"(s.{q(column)} IS NULL OR s.{q(column)} = '')")
    tag_names = sorted(name for name in required.tags if f"tag:{name}" not in columns)
    definitions = {
        d.name.lower(): d.pk
        for d in TagDefinition.objects.for_project(campaign.project).filter(name__in=tag_names)
    }
    for name in tag_names:
        if name.lower() in definitions:
            # NOT IN a hashed set of the tag's subscribers: one scan of its rows, not a probe per recipient.
            table = q(TagValue._meta.db_table)
            parts.append(f"s.id NOT IN (SELECT tv.subscriber_id FROM {table} tv WHERE tv.tag_id = %s)")  # noqa: S608
            params.append(definitions[name.lower()])
        elif BUILTIN_TAGS.get(name.lower()) is None:
            parts.append("1 = 1")  # no such tag: nobody has it
    for name in sorted(required.values):
        if connection.vendor == "postgresql":
            parts.append(f"COALESCE(({plan.values_sql}) ->> %s, '') = ''")
            params += [*plan.values_params, name]
        else:
            parts.append(f"COALESCE(json_extract({plan.values_sql}, %s), '') = ''")
            params += [*plan.values_params, f'$."{name}"']
    if not parts:
        return []
    return [Condition("missing_binding", "(" + " OR ".join(parts) + ")", params)]
