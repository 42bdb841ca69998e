"""Whether each claimed outbox row may be sent now: consent, frequency cap, quiet hours.

The send path asks ``decide`` for every batch it claimed, so a consent change or a cap reached
after launch still counts. Launch decides what it can in SQL first (fanout.py) with the same
reasons and the same definition of what counts toward the cap (``counts_toward_cap``); this is
the last word. A journey's send step asks ``capped_subscribers`` before it writes its row (so its
visit says "skipped: frequency cap" at once): the same counts and the same ``reached_cap`` as
``decide``, on the run's clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models import Count, Q
from django.utils.translation import gettext_noop

from controlpanel.models import Project
from subscribers.models import ConsentState, Device, Subscriber
from whatsapp.models import TemplateCategory

from . import channel_policy, policy
from .models import PURPOSE_CATEGORY, Campaign, Channel, Message, MessageKind, MessageStatus, SendingPolicy
from .outcomes import Hold, Skip

# Skip reasons, shared with fanout.py (SQL) so that "skipped by reason" groups one way whoever decided.
# The consent ones are policy.consent_refusal's words (tests/campaigns/test_sendpolicy.py holds them equal).
# Stored in English (rows group by them); pages translate them when they show them (policy.for_people).
NO_NUMBER = gettext_noop("The subscriber has no WhatsApp number.")
NEEDS_PHONE = gettext_noop("Authentication templates need a phone number, not a business-scoped user id.")
OPTED_OUT = gettext_noop("The subscriber opted out of WhatsApp messages.")
NO_OPT_IN = gettext_noop("Marketing needs WhatsApp opt-in, and this subscriber has not opted in.")
CAPPED = gettext_noop(
    "Frequency cap reached: the subscriber already got the most marketing messages allowed."
)
LOCAL_TIME_PASSED = gettext_noop("The local send time had already passed in the subscriber's time zone.")
CANCELLED = gettext_noop("The campaign was cancelled.")

# A marketing row in one of these states went (or may have gone) to the person: it counts toward the
# cap. Queued rows have not gone yet; failed and skipped ones never reached anybody.
CAP_STATUSES = (
    MessageStatus.SENDING,
    MessageStatus.UNKNOWN,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.READ,
)


def counts_toward_cap(since: datetime) -> Q:
    """The outbox rows that count toward a subscriber's frequency cap since ``since``.

    The one definition, for fan-out (SQL) and ``decide``: marketing rows of any campaign or
    journey that went out or are in flight, by the time a sender took them (``sending_at``; a row
    sent by an older path without it, by ``sent_at``).
    """
    return Q(marketing=True, status__in=CAP_STATUSES) & (
        Q(sending_at__gte=since) | Q(sending_at__isnull=True, sent_at__gte=since)
    )


def cap_window(sending_policy: SendingPolicy, now: datetime) -> datetime:
    return now - timedelta(days=sending_policy.cap_days)


def reached_cap(sending_policy: SendingPolicy, sent: int) -> bool:
    """Whether a subscriber who got ``sent`` counted messages in the window may get no more
    marketing: the one comparison (fan-out's SQL twin is its ``n >= cap_messages``)."""
    return sending_policy.cap_messages is not None and sent >= sending_policy.cap_messages


def sending_policy_of(project: Project) -> SendingPolicy | None:
    """The project's policy, None without one. Read through the reverse one-to-one, which Django
    caches on the project object (a miss too): a journey batch shares one project object across
    its runs, so it asks once per batch, not once per send visit."""
    try:
        return project.sending_policy
    except SendingPolicy.DoesNotExist:
        return None


def capped_subscribers(
    sending_policy: SendingPolicy | None, subscriber_ids: Collection[int], now: datetime
) -> set[int]:
    """The subscribers among ``subscriber_ids`` who already got the most marketing messages allowed
    in the cap window that ends at ``now`` (a journey's clock, simulated in a dry run).

    The rule ``decide`` applies to a claimed row, asked before a row exists: one grouped query,
    none without a cap.
    """
    if sending_policy is None or sending_policy.cap_messages is None or not subscriber_ids:
        return set()
    counts = cap_counts(sending_policy, subscriber_ids, now)
    return {subscriber_id for subscriber_id, sent in counts.items() if reached_cap(sending_policy, sent)}


def consent_refusal(subscriber: Subscriber, *, marketing: bool, authentication: bool) -> str:
    """Why a campaign template may not go to ``subscriber``, or "": the Python twin of fanout's SQL.

    Same order as the SQL: no number, opted out, no opt-in (marketing only).
    """
    if authentication and not subscriber.phone:
        return NEEDS_PHONE
    if not (subscriber.phone or subscriber.wa_id or subscriber.bsuid):
        return NO_NUMBER
    if subscriber.whatsapp_consent == ConsentState.OPTED_OUT:
        return OPTED_OUT
    if marketing and subscriber.whatsapp_consent != ConsentState.OPTED_IN:
        return NO_OPT_IN
    return ""


def zone(name: str, fallback: tzinfo) -> tzinfo:
    """The subscriber's time zone, or ``fallback`` when empty or unknown."""
    if not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def quiet_until(local_now: datetime, start: time, end: time) -> datetime | None:
    """When quiet hours [start, end) that contain ``local_now`` end, or None when it is not quiet.

    ``start > end`` wraps midnight (22:00-08:00). ``local_now`` is aware; the answer is in its zone.
    """
    if start == end:
        return None
    now_t = local_now.timetz().replace(tzinfo=None)
    quiet = start <= now_t < end if start < end else (now_t >= start or now_t < end)
    if not quiet:
        return None
    day = local_now.date()
    until = datetime.combine(day, end, tzinfo=local_now.tzinfo)
    if until <= local_now:
        until = datetime.combine(day + timedelta(days=1), end, tzinfo=local_now.tzinfo)
    return until


def decide(messages: Sequence[Message], now: datetime) -> dict[int, Hold | Skip]:
    """The rows of ``messages`` that must not go now, by id; every other row is sent.

    ``messages`` come with ``subscriber`` loaded and are already claimed (``sending``). Consent is
    checked for every row, by the rules of its channel (WhatsApp here, email and push in
    ``channel_policy``); frequency caps and quiet hours apply to marketing rows only, of every
    channel alike (transactional and verification messages bypass them, never an opt-out).
    Queries: one counting the active devices of the batch's push recipients, one for the sending
    policies of the batch's projects, one grouped count per project with a cap.
    """
    decisions: dict[int, Hold | Skip] = {}
    marketing: list[Message] = []
    authentication = _authentication_campaigns(messages)
    devices = _active_devices(messages)
    for message in messages:
        reason = _consent_refusal(message, authentication, devices)
        if reason:
            decisions[message.pk] = Skip(reason)
        elif message.marketing and _promotion(message):
            marketing.append(message)
    if not marketing:
        return decisions
    policies = {
        p.project_id: p
        for p in SendingPolicy.objects.filter(
            project_id__in={m.project_id for m in marketing}
        ).select_related("project")
    }
    by_project: dict[int, list[Message]] = defaultdict(list)
    for message in marketing:
        if message.project_id in policies:
            by_project[message.project_id].append(message)
    # The batch's own rows are `sending` already: they are what is being decided, not history.
    batch_ids = [m.pk for m in messages]
    for project_id, rows in by_project.items():
        sending_policy = policies[project_id]
        fallback = zone(sending_policy.project.time_zone, ZoneInfo("UTC"))
        sent = cap_counts(sending_policy, {m.subscriber_id for m in rows}, now, exclude=batch_ids)
        for message in sorted(rows, key=lambda m: m.pk):
            if reached_cap(sending_policy, sent[message.subscriber_id]):
                decisions[message.pk] = Skip(CAPPED)
                continue
            hold = _quiet_hold(sending_policy, message.subscriber, now, fallback)
            if hold is not None:
                decisions[message.pk] = hold
                continue
            # Two rows to one person in one batch: the second sees the first as sent.
            sent[message.subscriber_id] += 1
    return decisions


def cap_counts(
    sending_policy: SendingPolicy,
    subscriber_ids: Collection[int],
    now: datetime,
    *,
    exclude: Collection[int] = (),
) -> defaultdict[int, int]:
    """How many counted messages each subscriber got in the cap window ending at ``now`` (0 when
    none); ``exclude`` are rows being decided, not history. One grouped query, none without a cap."""
    counts: defaultdict[int, int] = defaultdict(int)
    if sending_policy.cap_messages is None:
        return counts
    rows = Message.objects.filter(subscriber_id__in=set(subscriber_ids)).filter(
        counts_toward_cap(cap_window(sending_policy, now))
    )
    if exclude:
        rows = rows.exclude(pk__in=list(exclude))
    grouped = rows.order_by().values("subscriber_id").annotate(n=Count("id"))
    for row in grouped:
        counts[row["subscriber_id"]] = row["n"]
    return counts


def _quiet_hold(
    sending_policy: SendingPolicy, subscriber: Subscriber, now: datetime, fallback: tzinfo
) -> Hold | None:
    start, end = sending_policy.quiet_start, sending_policy.quiet_end
    if start is None or end is None:
        return None
    local_now = now.astimezone(zone(subscriber.time_zone, fallback))
    until = quiet_until(local_now, start, end)
    if until is None:
        return None
    return Hold(
        until=until,
        reason=f"Quiet hours ({start:%H:%M}-{end:%H:%M}, the subscriber's time): held until {end:%H:%M}.",
    )


def _authentication_campaigns(messages: Sequence[Message]) -> set[int]:
    """Ids of the batch's authentication campaigns, asked only when a campaign row lacks a phone
    (authentication needs one; the rest of the consent rules do not depend on the category)."""
    ids = {m.campaign_id for m in messages if m.campaign_id is not None and not m.subscriber.phone}
    if not ids:
        return set()
    purposes = Campaign.objects.filter(pk__in=ids).values_list("pk", "purpose")
    return {pk for pk, purpose in purposes if PURPOSE_CATEGORY[purpose] == TemplateCategory.AUTHENTICATION}


def _promotion(message: Message) -> bool:
    """Free-form WhatsApp text is a reply inside the service window, not a promotion; an email or a
    push marked marketing is one whatever its kind."""
    return message.kind == MessageKind.TEMPLATE or message.channel != Channel.WHATSAPP


def _active_devices(messages: Sequence[Message]) -> dict[int, int]:
    """Active push devices per subscriber of the batch's push rows: one grouped query, or none."""
    push = [m for m in messages if m.channel == Channel.PUSH]
    if not push:
        return {}
    grouped = (
        Device.objects.filter(
            project_id__in={m.project_id for m in push}, subscriber_id__in={m.subscriber_id for m in push}
        )
        .active()
        .order_by()
        .values("subscriber_id")
        .annotate(n=Count("id"))
    )
    return {row["subscriber_id"]: row["n"] for row in grouped}


def _consent_refusal(message: Message, authentication: set[int], devices: dict[int, int]) -> str:
    subscriber = message.subscriber
    if message.channel == Channel.EMAIL:
        return channel_policy.email_refusal(subscriber, marketing=message.marketing)
    if message.channel == Channel.PUSH:
        return channel_policy.push_refusal(subscriber, active_devices=devices.get(message.subscriber_id, 0))
    if message.kind == MessageKind.TEXT:
        return policy.refusal_for_text(subscriber)
    if message.campaign_id is not None:
        return consent_refusal(
            subscriber, marketing=message.marketing, authentication=message.campaign_id in authentication
        )
    if message.marketing:
        return policy.consent_refusal(subscriber, TemplateCategory.MARKETING)
    return policy.consent_refusal(subscriber, TemplateCategory.UTILITY)
