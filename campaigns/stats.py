"""What a campaign did so far: counts per state, the funnel, failures and skips, sends per minute.

Read-only, a fixed number of small queries whatever the audience size:

- counts per state, replies, clicks and billable messages per pricing category: the campaign's
  ``CampaignCounter`` rows (a few dozen at most), which every writer of its outbox rows keeps in
  the same transaction (counters.py). Counting a million rows on read cost ~0.6 s of CPU per page;
- failures by Meta error code and skips by reason: grouped over the failed / skipped rows only
  (index-only scans of ``message_campaign_failed`` / ``message_campaign_skipped``), a few percent;
- sends per minute: the ``CampaignMinute`` rows of the last hour.

Funnel counts are cumulative: a read message was also delivered and sent, so ``sent`` counts every
row that reached Meta (sent, delivered, read), ``delivered`` every row that reached the phone.
``by_status`` keeps the exact state of each row for the progress bar.

``grouped_counts`` still counts rows, for figures over rows of many campaigns and single sends
(the dashboard's day).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, F, Max
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from whatsapp.errors import ErrorKind, classify, explain

from .counters import minute_of
from .models import Campaign, CampaignCounter, CampaignMinute, Message, MessageStatus

# Rows that will not change state any more (read may still follow delivered, but nothing is sent).
TERMINAL = (MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED, MessageStatus.SKIPPED)
SKIP_GROUPS = 20
FAILURE_GROUPS = 20

WHAT_TO_DO = {
    ErrorKind.TRANSIENT: gettext_lazy(
        "Retried automatically with backoff; nothing to do unless it keeps happening."
    ),
    ErrorKind.RETRY_LATER: gettext_lazy("Retried once automatically after 24 hours."),
    ErrorKind.PERMANENT: gettext_lazy(
        "Not retried. Check these recipients' numbers or the template's parameters."
    ),
    ErrorKind.ACCOUNT: gettext_lazy(
        "The campaign pauses itself. Fix the account or template in Meta, then resume."
    ),
}


@dataclass(frozen=True)
class FailureGroup:
    code: int | None
    count: int
    explanation: str
    what_to_do: str
    kind: str


@dataclass(frozen=True)
class SkipGroup:
    reason: str
    count: int


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


@dataclass
class CampaignStats:
    by_status: dict[str, int] = field(default_factory=dict)
    replied: int = 0
    clicked: int = 0
    failures: list[FailureGroup] = field(default_factory=list)
    skips: list[SkipGroup] = field(default_factory=list)
    # Billable messages per Meta pricing category, from the status webhooks' pricing object.
    billable: dict[str, int] = field(default_factory=dict)

    def _n(self, *states: str) -> int:
        return sum(self.by_status.get(s, 0) for s in states)

    @property
    def queued(self) -> int:
        return self._n(MessageStatus.QUEUED)

    @property
    def sending(self) -> int:
        return self._n(MessageStatus.SENDING)

    @property
    def unknown(self) -> int:
        return self._n(MessageStatus.UNKNOWN)

    @property
    def sent(self) -> int:
        return self._n(MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)

    @property
    def delivered(self) -> int:
        return self._n(MessageStatus.DELIVERED, MessageStatus.READ)

    @property
    def read(self) -> int:
        return self._n(MessageStatus.READ)

    @property
    def failed(self) -> int:
        return self._n(MessageStatus.FAILED)

    @property
    def skipped(self) -> int:
        return self._n(MessageStatus.SKIPPED)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def processed(self) -> int:
        """Rows the send path is done with (sent or beyond, failed, skipped)."""
        return self.sent + self.failed + self.skipped

    @property
    def progress(self) -> float:
        return round(100 * self.processed / self.total, 1) if self.total else 0.0

    @property
    def delivery_rate(self) -> float | None:
        """Delivered of sent, in percent; None before anything was sent."""
        return _rate(self.delivered, self.sent)

    @property
    def read_rate(self) -> float | None:
        """Read of delivered, in percent."""
        return _rate(self.read, self.delivered)

    @property
    def reply_rate(self) -> float | None:
        return _rate(self.replied, self.delivered)

    @property
    def bar(self) -> list[tuple[str, int, float, float]]:
        """(state, count, percent of total, offset percent) for a stacked progress bar, pipeline order."""
        order = ["read", "delivered", "sent", "unknown", "sending", "queued", "failed", "skipped"]
        total, offset, parts = self.total, 0.0, []
        for state in order:
            n = self._n(state)
            if n:
                parts.append((state, n, 100 * n / total, offset))
                offset += 100 * n / total
        return parts

    @property
    def bar_parts(self) -> list[tuple[str, int, float, float, str]]:
        """``bar`` with each state's label in the reader's language, for the bar's tooltips."""
        return [(state, n, pct, offset, MessageStatus(state).label) for state, n, pct, offset in self.bar]

    @property
    def funnel(self) -> list[tuple[str, str, int, float]]:
        """(key, step label, count, percent of the audience) from the audience down to replies."""
        total = self.total
        steps = [
            ("audience", _("Audience"), total),
            ("sent", _("Sent"), self.sent),
            ("delivered", _("Delivered"), self.delivered),
            ("read", pgettext("message status", "Read"), self.read),
            ("replied", _("Replied"), self.replied),
        ]
        return [(key, label, n, 100 * n / total if total else 0.0) for key, label, n in steps]

    def as_dict(self) -> dict:
        return {
            "queued": self.queued,
            "sending": self.sending,
            "sent": self.sent,
            "delivered": self.delivered,
            "read": self.read,
            "replied": self.replied,
            "clicked": self.clicked,
            "failed": self.failed,
            "skipped": self.skipped,
            "unknown": self.unknown,
            "total": self.total,
            "delivery_rate": self.delivery_rate,
            "read_rate": self.read_rate,
            "failures": [asdict(f) for f in self.failures],
            "skips": [asdict(s) for s in self.skips],
            "billable": dict(self.billable),
        }


BILLED_STATES = {MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ}


def fold(grouped: Iterable[dict], into: Callable[[dict], CampaignStats]) -> None:
    """Add rows of ``grouped_counts`` to the stats ``into(row)`` picks (one per campaign, or one)."""
    for row in grouped:
        stats = into(row)
        status, category = row["status"], row["pricing_category"]
        stats.by_status[status] = stats.by_status.get(status, 0) + row["n"]
        stats.replied += row["replied"]
        stats.clicked += row["clicked"]
        # Meta charges what reached it, with a pricing category, unless the webhook said free.
        if status in BILLED_STATES and category and row["billable"] is not False:
            stats.billable[category] = stats.billable.get(category, 0) + row["n"]


def grouped_counts(rows, *keys: str):
    """One pass over ``rows``: counts per state and pricing category, with replies and clicks.

    The few groups (states x categories) are folded into counts, rates and billable messages in
    Python: one scan of the rows instead of one per figure.
    """
    return (
        rows.values(*keys, "status", "pricing_category", "billable")
        .annotate(n=Count("*"), replied=Count("replied_at"), clicked=Count("clicked_at"))
        .order_by()
    )


def failure_groups(rows) -> list[FailureGroup]:
    """Failed rows grouped by Meta error code (None: failed before reaching Meta), biggest first."""
    grouped = (
        rows.filter(status=MessageStatus.FAILED)
        .values("error_code")
        .annotate(n=Count("*"), title=Max("error_title"), reason=Max("reason"))
        .order_by("-n", F("error_code").asc(nulls_last=True))[:FAILURE_GROUPS]
    )
    groups = []
    for row in grouped:
        code = row["error_code"]
        kind = classify(code) if code is not None else ErrorKind.PERMANENT
        groups.append(
            FailureGroup(
                code=code,
                count=row["n"],
                explanation=explain(code, row["title"] or row["reason"] or "")
                if code is not None
                else (row["reason"] or _("Failed before reaching Meta.")),
                what_to_do=str(WHAT_TO_DO[kind]),
                kind=str(kind),
            )
        )
    return groups


def skip_groups(rows) -> list[SkipGroup]:
    grouped = (
        rows.filter(status=MessageStatus.SKIPPED)
        .values("reason")
        .annotate(n=Count("*"))
        .order_by("-n", "reason")[:SKIP_GROUPS]
    )
    return [SkipGroup(reason=row["reason"] or _("No reason recorded."), count=row["n"]) for row in grouped]


def counter_rows(campaign_ids: Iterable[int]):
    """The counter groups of campaigns, in the shape ``fold`` reads (``billable`` from ``free``)."""
    return (
        {**row, "billable": not row.pop("free")}
        for row in CampaignCounter.objects.filter(campaign_id__in=list(campaign_ids)).values(
            "campaign_id", "status", "pricing_category", "free", "n", "replied", "clicked"
        )
    )


def campaign_stats(campaign: Campaign) -> CampaignStats:
    """Everything the campaign page and the API show about a campaign's rows; three queries."""
    rows = Message.objects.for_project(campaign.project_id).filter(campaign=campaign)
    stats = CampaignStats(failures=failure_groups(rows), skips=skip_groups(rows))
    fold(counter_rows([campaign.pk]), lambda row: stats)
    return stats


def status_counts(campaigns: Iterable[Campaign]) -> dict[int, CampaignStats]:
    """Counts per state and billable messages for a page of campaigns, in one query of counters."""
    ids = [c.pk for c in campaigns]
    found: dict[int, CampaignStats] = {pk: CampaignStats() for pk in ids}
    if ids:
        fold(counter_rows(ids), lambda row: found[row["campaign_id"]])
    return found


def sends_per_minute(
    campaign: Campaign, minutes: int = 60, now: datetime | None = None
) -> list[tuple[datetime, int]]:
    """Messages that reached Meta in each of the last ``minutes`` minutes, oldest first, zeros included.

    Counted by ``sent_at`` (set when Meta accepted the message), so a later delivered or read status
    does not move a send to another minute; from the counters the send path keeps per minute.
    """
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes - 1)
    per_minute = {
        minute_of(minute): n
        for minute, n in CampaignMinute.objects.filter(
            campaign=campaign, minute__gte=start, minute__lte=now
        ).values_list("minute", "n")
    }
    return [
        (start + timedelta(minutes=i), per_minute.get(minute_of(start + timedelta(minutes=i)), 0))
        for i in range(minutes)
    ]
