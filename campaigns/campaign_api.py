"""The /api/v1/campaigns endpoints: create a draft, launch, pause, resume, cancel, watch it.

Thin: a draft is written by ``drafts.create_campaign`` / ``update_campaign`` (the validation the
panel uses too), every status change by ``lifecycle``, the figures come from ``stats``,
``pricing`` and ``preflight``. The API's own work is the JSON shape: it resolves the ids in the
body (sending number, segment) within the API key's project, turns ``phones`` and ``values``
into the draft's given recipients, and names the API's field when the draft refuses one.

Status codes: 201 created; 200 for reads and status changes; 404 for an id not in the project;
409 when the campaign's state does not allow the change (``invalid_transition``, or resuming on
a stopped number); 422 for bad input, and for a launch that is refused (``not_launchable``, every
reason in ``problems``).
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from django.core import signing
from django.utils import timezone
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict

from controlpanel.api import ApiError, ErrorOut
from controlpanel.models import Project
from controlpanel.wording import mid_sentence
from subscribers import tags
from subscribers.errors import InvalidInput
from subscribers.models import Segment
from subscribers.segments.text import RuleSyntaxError, parse_rule, rule_to_text
from whatsapp.models import WhatsAppAccount

from . import drafts, lifecycle, pricing, stats
from .drafts import CampaignInput
from .models import AudienceKind, Campaign, CampaignStatus, ScheduleKind
from .preflight import EXCLUSIONS
from .preflight import preflight as run_preflight

router = Router(tags=["campaigns"])

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_PHONES = 100_000  # per request body; larger lists are uploaded in the panel
MAX_VALUE_KEYS = 100_000
MAX_BODY_BYTES = 20 * 1024 * 1024
_CURSOR_SALT = "campaigns.api.list"

CampaignStatusName = Literal["draft", "scheduled", "running", "paused", "completed", "cancelled"]
PurposeName = Literal["promotion", "transactional", "reminder", "verification"]


class StrictSchema(Schema):
    model_config = ConfigDict(extra="forbid")


# --- request -------------------------------------------------------------------------------------


class CampaignTemplateIn(StrictSchema):
    name: str = Field(examples=["winter_sale"], json_schema_extra={"maxLength": 512})
    language: str | None = Field(
        None,
        description="One language, exactly as in GET /templates. Leave out (with `languages`) when the "
        "template has a single language.",
        examples=["de"],
        json_schema_extra={"maxLength": 16},
    )
    languages: list[str] | None = Field(
        None,
        description="A language group: the same template in several languages; each recipient gets the "
        "one matching their language (exact, then the base language), else `fallback_language`.",
        examples=[["de", "en_US", "fr"]],
        json_schema_extra={"maxItems": 50},
    )
    fallback_language: str | None = Field(
        None, description="One of `languages`; default: the first.", examples=["en_US"]
    )


class ScheduleIn(StrictSchema):
    kind: Literal["now", "at", "local_time"] = Field(
        "now",
        description="`now`: at launch. `at`: at `at`. `local_time`: at `local_time` in each subscriber's "
        "time zone (`time_zone` for subscribers without one).",
    )
    at: datetime | None = Field(
        None,
        description="With `at`. Without an offset it is the project's local time.",
        examples=["2026-12-24T09:00:00+01:00"],
    )
    local_time: str | None = Field(None, description="With `local_time`: HH:MM.", examples=["09:30"])
    time_zone: str | None = Field(
        None,
        description="With `local_time`: the zone of subscribers without one (default: the project's).",
        examples=["Europe/Berlin"],
    )
    passed_local_time: Literal["send_now", "next_day", "skip"] = Field(
        "next_day",
        description="With `local_time`, for zones where that time has passed at launch: send at once, at "
        "that time the next day, or skip those subscribers.",
    )


class CampaignIn(StrictSchema):
    name: str = Field(examples=["Winter sale"], json_schema_extra={"minLength": 1, "maxLength": 200})
    purpose: PurposeName = Field(
        "promotion",
        description="Ties the campaign to Meta's template category: promotion -> MARKETING, "
        "transactional and reminder -> UTILITY, verification -> AUTHENTICATION. Promotions respect "
        "opt-in, frequency caps and quiet hours; the others bypass caps and quiet hours.",
    )
    template: CampaignTemplateIn | None = Field(
        None, description="The approved template (a draft may leave it out until launch)."
    )
    bindings: dict[str, dict[str, str]] | None = Field(
        None,
        description="Liquid per placeholder, keyed like the template's `placeholders` (GET /templates). "
        "Context: `subscriber` (name, phone, email, language, country, time_zone, external_id), `tags`, "
        "`values` (from `values` below). A binding that renders empty for a recipient without a "
        "`default` filter skips that recipient, with the reason.",
        examples=[{"body": {"1": "{{ subscriber.name | default: 'Kunde' }}", "2": "{{ values.code }}"}}],
    )
    header_media_url: str | None = Field(
        None,
        description="For a template whose header is an image, video or document: its https URL.",
        json_schema_extra={"maxLength": 2000},
    )
    segment_id: UUID | None = Field(None, description="Audience: a saved segment (GET /segments).")
    rule: str | None = Field(
        None,
        description="Audience: a rule in the segments' text form.",
        examples=['T("city", eq, "Berlin") * R(whatsapp)'],
        json_schema_extra={"maxLength": 10_000},
    )
    everyone: bool = Field(False, description="Audience: every subscriber opted in to WhatsApp.")
    phones: list[str] | None = Field(
        None,
        description="Audience: these phones (subscribers of the project; unknown numbers are left out). "
        "Give exactly one of `segment_id`, `rule`, `everyone` and `phones`.",
        examples=[["+4915112345678", "+4915187654321"]],
        json_schema_extra={"maxItems": MAX_PHONES},
    )
    values: dict[str, dict[str, Any]] | None = Field(
        None,
        description="Per-recipient values for `{{ values.<name> }}`, keyed by phone (with +) or by "
        "external id; recipients without an entry get none.",
        examples=[{"+4915112345678": {"code": "WINTER-17"}, "crm-4711": {"code": "WINTER-18"}}],
        json_schema_extra={"maxProperties": MAX_VALUE_KEYS},
    )
    schedule: ScheduleIn | None = Field(None, description="When to send; default: at launch.")
    throttle_mps: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Messages per second, at most the number's limit; default: its limit.",
    )
    phone_number_id: str | None = Field(
        None, description="The sending number, when the project has several (default: the first connected)."
    )


class TestSendIn(StrictSchema):
    phone: str = Field(
        description="A subscriber's phone (the simulator's handsets are subscribers).",
        examples=["+4915112345678"],
        json_schema_extra={"maxLength": 40},
    )


class ListFilters(Schema):
    status: CampaignStatusName | None = Field(None, description="Only campaigns in this status.")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Campaigns per page.")
    cursor: str | None = Field(
        None,
        description="`next_cursor` of the previous page; leave out for the first page.",
        json_schema_extra={"maxLength": 200},
    )


# --- response ------------------------------------------------------------------------------------


class MoneyOut(Schema):
    amount: str = Field(description='A decimal number as text, e.g. "12.3400".', examples=["12.3400"])
    currency: str = Field(examples=["USD"])


class CountsOut(Schema):
    total: int = Field(description="Recipients written at launch (the audience snapshot).")
    queued: int
    sending: int
    sent: int = Field(description="Reached Meta (sent, delivered or read).")
    delivered: int = Field(description="Reached the phone (delivered or read).")
    read: int
    replied: int = Field(description="Wrote back within 72 h of the send.")
    clicked: int = Field(description="Tapped a quick-reply button.")
    failed: int
    skipped: int = Field(description="Never sent, with a reason (see `skips` in GET /campaigns/{id}).")
    unknown: int = Field(description="Sent or not after a crash; a status from Meta settles it.")
    delivery_rate: float | None = Field(description="Delivered of sent, in percent.")
    read_rate: float | None = Field(description="Read of delivered, in percent.")


class FailureOut(Schema):
    code: int | None = Field(description="Meta's error code; null when it failed before reaching Meta.")
    count: int
    explanation: str
    what_to_do: str
    kind: str = Field(description="transient, retry_later, permanent or account.")


class SkipOut(Schema):
    reason: str
    count: int


class StatsOut(CountsOut):
    failures: list[FailureOut] = Field(description="Failed recipients by Meta error code, biggest first.")
    skips: list[SkipOut] = Field(description="Skipped recipients by reason, biggest first.")


class CampaignTemplateOut(Schema):
    name: str
    languages: list[str]
    fallback_language: str


class AudienceOut(Schema):
    kind: Literal["segment", "rule", "everyone", "list"]
    segment_id: UUID | None = Field(description="With `segment`; null when the segment was deleted.")
    rule: str = Field(description="The rule's text form (for a segment: as it was at launch).")
    size: int | None = Field(description="Recipients written at launch; null before.")


class ScheduleOut(Schema):
    kind: Literal["now", "at", "local_time"]
    at: datetime | None
    local_time: str | None
    time_zone: str
    passed_local_time: Literal["send_now", "next_day", "skip"]


class CampaignSummaryOut(Schema):
    id: UUID
    name: str
    purpose: PurposeName
    status: CampaignStatusName
    status_reason: str = Field(description="Why it paused itself, in plain words; empty otherwise.")
    template: CampaignTemplateOut
    audience: AudienceOut
    schedule: ScheduleOut
    throttle_mps: int | None
    phone_number_id: str | None
    estimated_cost: MoneyOut | None = Field(description="At launch, from the rate card; null before.")
    created_at: datetime
    launched_at: datetime | None
    started_at: datetime | None = Field(description="When the audience was snapshotted and sending began.")
    paused_at: datetime | None
    finished_at: datetime | None
    stats: CountsOut


class CampaignOut(CampaignSummaryOut):
    bindings: dict[str, dict[str, str]]
    header_media_url: str
    launch_problems: list[str] = Field(
        description="For a draft: what still stands in the way of a launch, in plain words ([] = ready)."
    )
    stats: StatsOut
    cost: MoneyOut = Field(description="What Meta charges so far: billable messages x the rate card.")


class CampaignPageOut(Schema):
    items: list[CampaignSummaryOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class LaunchRefusedOut(ErrorOut):
    problems: list[str] = Field(description="Every reason the launch was refused.")


class ExcludedOut(Schema):
    reason: Literal[tuple(EXCLUSIONS)]  # type: ignore[valid-type]
    label: str
    count: int


class CostLineOut(Schema):
    category: str
    country: str = Field(description='ISO country code; "other" for the rest of the world.')
    recipients: int
    price: str
    cost: str


class EstimateOut(MoneyOut):
    rates_effective: str = Field(description="The date of Meta's published rates the card was seeded with.")
    by_market: list[CostLineOut]


class PreflightOut(Schema):
    audience: int = Field(description="Subscribers the audience matches now.")
    sendable: int = Field(description="Of those, who would be sent to.")
    excluded: list[ExcludedOut] = Field(description="Who is left out and why, as counts.")
    estimated_cost: EstimateOut
    throughput_mps: int | None
    estimated_seconds: int | None = Field(description="At the number's throughput (or the throttle).")
    messaging_tier: str
    messaging_limit: int | None = Field(description="Unique users per 24 hours; null when unlimited.")
    warnings: list[str]


class TestSendOut(Schema):
    message_id: UUID = Field(description="GET /messages/{id} follows it.")
    status: str


# --- mapping -------------------------------------------------------------------------------------


def _money(amount: Decimal | None, currency: str) -> dict[str, str] | None:
    if amount is None:
        return None
    return {"amount": str(amount), "currency": currency or pricing.RATES_CURRENCY}


def _rule_text(rule: Any) -> str:
    if not rule or not isinstance(rule, dict):
        return ""
    try:
        return rule_to_text(rule)
    except ValueError:
        return ""


def _counts(figures: stats.CampaignStats) -> dict[str, Any]:
    data = figures.as_dict()
    return {name: data[name] for name in CountsOut.model_fields}


def summary_out(campaign: Campaign, figures: stats.CampaignStats) -> dict[str, Any]:
    rule = campaign.rule
    if not rule and campaign.audience_kind == AudienceKind.SEGMENT and campaign.segment is not None:
        rule = campaign.segment.rule
    return {
        "id": campaign.public_id,
        "name": campaign.name,
        "purpose": campaign.purpose,
        "status": campaign.status,
        "status_reason": campaign.status_reason,
        "template": {
            "name": campaign.template_name,
            "languages": list(campaign.languages or []),
            "fallback_language": campaign.fallback_language,
        },
        "audience": {
            "kind": campaign.audience_kind,
            "segment_id": campaign.segment.public_id if campaign.segment is not None else None,
            "rule": _rule_text(rule)
            if campaign.audience_kind in (AudienceKind.SEGMENT, AudienceKind.RULE)
            else "",
            "size": campaign.audience_size,
        },
        "schedule": {
            "kind": campaign.schedule_kind,
            "at": campaign.scheduled_at,
            "local_time": campaign.local_time.strftime("%H:%M") if campaign.local_time else None,
            "time_zone": campaign.fallback_time_zone,
            "passed_local_time": campaign.passed_local_time,
        },
        "throttle_mps": campaign.throttle_mps,
        "phone_number_id": campaign.account.phone_number_id if campaign.account is not None else None,
        "estimated_cost": _money(campaign.estimated_cost, campaign.currency),
        "created_at": campaign.created_at,
        "launched_at": campaign.launched_at,
        "started_at": campaign.snapshot_at,
        "paused_at": campaign.paused_at,
        "finished_at": campaign.finished_at,
        "stats": _counts(figures),
    }


def campaign_out(campaign: Campaign) -> dict[str, Any]:
    figures = stats.campaign_stats(campaign)
    cost, currency = pricing.actual_cost(campaign)
    data = summary_out(campaign, figures)
    data["stats"] = {
        **_counts(figures),
        "failures": [vars(f) for f in figures.failures],
        "skips": [vars(s) for s in figures.skips],
    }
    return {
        **data,
        "bindings": campaign.bindings or {},
        "header_media_url": campaign.header_media_url,
        "launch_problems": drafts.launch_problems(campaign)
        if campaign.status == CampaignStatus.DRAFT
        else [],
        "cost": _money(cost, currency),
    }


# --- input ---------------------------------------------------------------------------------------

# The draft's field names, as the API spells them.
FIELDS = {
    "template_name": "template.name",
    "languages": "template.languages",
    "fallback_language": "template.fallback_language",
    "segment": "segment_id",
    "account": "phone_number_id",
    "audience_kind": "segment_id",
    "schedule_kind": "schedule.kind",
    "scheduled_at": "schedule.at",
    "local_time": "schedule.local_time",
    "fallback_time_zone": "schedule.time_zone",
    "passed_local_time": "schedule.passed_local_time",
}


def _campaigns(project: Project):
    return Campaign.objects.for_project(project).select_related("account", "segment")


def get_campaign(project: Project, campaign_id: UUID) -> Campaign:
    campaign = _campaigns(project).filter(public_id=campaign_id).first()
    if campaign is None:
        raise ApiError(
            404,
            "campaign_not_found",
            _("No campaign %(id)s in this project.") % {"id": campaign_id},
            field="id",
        )
    return campaign


def _audience(project: Project, payload: CampaignIn) -> tuple[str, Segment | None, dict | None]:
    given = [
        name
        for name, present in (
            ("segment_id", payload.segment_id is not None),
            ("rule", payload.rule is not None),
            ("everyone", payload.everyone),
            ("phones", payload.phones is not None),
        )
        if present
    ]
    if len(given) > 1:
        raise InvalidInput(
            _("Give one audience: segment_id, rule, everyone or phones, not %(given)s.")
            % {"given": _(" and ").join(given)},
            field=given[1],
        )
    if payload.segment_id is not None:
        segment = Segment.objects.for_project(project).filter(public_id=payload.segment_id).first()
        if segment is None:
            raise ApiError(
                404,
                "segment_not_found",
                _("No segment %(id)s in this project.") % {"id": payload.segment_id},
                field="segment_id",
            )
        return AudienceKind.SEGMENT, segment, None
    if payload.rule is not None:
        try:
            return AudienceKind.RULE, None, parse_rule(payload.rule)
        except RuleSyntaxError as exc:
            raise InvalidInput(
                _("The rule is not valid: %(problem)s.") % {"problem": exc.message},
                field="rule",
                code="rule_syntax_error",
            ) from None
    if payload.everyone:
        return AudienceKind.EVERYONE, None, None
    if payload.phones is not None:
        return AudienceKind.LIST, None, None
    # A draft may be saved before its audience is chosen; launch_problems asks for it.
    return AudienceKind.SEGMENT, None, None


def _recipients(payload: CampaignIn) -> tuple[list[tuple[str, dict]], list[str]]:
    """The draft's given recipients, and the API field each one came from (same order)."""
    values = payload.values or {}
    recipients: list[tuple[str, dict]] = []
    origins: list[str] = []
    listed = set()
    for index, phone in enumerate(payload.phones or []):
        recipients.append((phone, values.get(phone) or {}))
        origins.append(f"phones.{index}")
        listed.add(phone)
    for key, item in values.items():
        if key not in listed:
            recipients.append((key, item))
            origins.append(f"values.{key}")
    return recipients, origins


def _account(project: Project, phone_number_id: str | None) -> WhatsAppAccount | None:
    if phone_number_id is None:
        return None
    account = (
        WhatsAppAccount.objects.for_project(project).filter(phone_number_id=phone_number_id.strip()).first()
    )
    if account is None:
        raise ApiError(
            404,
            "account_not_found",
            _("No WhatsApp number %(id)s is connected.") % {"id": phone_number_id},
            field="phone_number_id",
        )
    return account


def campaign_input(project: Project, payload: CampaignIn) -> tuple[CampaignInput, list[str]]:
    kind, segment, rule = _audience(project, payload)
    recipients, origins = _recipients(payload)
    template = payload.template
    languages: list[str] = []
    if template is not None:
        if template.language is not None and template.languages is not None:
            raise InvalidInput(_("Give language or languages, not both."), field="template.languages")
        languages = [template.language] if template.language is not None else list(template.languages or [])
    schedule = payload.schedule or ScheduleIn()
    data = CampaignInput(
        name=payload.name,
        purpose=payload.purpose,
        account=_account(project, payload.phone_number_id),
        template_name=template.name if template is not None else "",
        languages=languages,
        fallback_language=(template.fallback_language or "") if template is not None else "",
        bindings=payload.bindings or {},
        header_media_url=payload.header_media_url or "",
        audience_kind=kind,
        segment=segment,
        rule=rule,
        recipients=recipients,
        schedule_kind=schedule.kind,
        scheduled_at=schedule.at,
        local_time=schedule.local_time,
        fallback_time_zone=schedule.time_zone or "",
        passed_local_time=schedule.passed_local_time,
        throttle_mps=payload.throttle_mps,
    )
    return data, origins


def api_field(field: str | None, origins: list[str]) -> str | None:
    """The API's name for a field the draft names (``recipients.3.values.x`` -> ``values.+49...x``)."""
    if not field:
        return field
    head, _, rest = field.partition(".")
    if head == "recipients" and rest:
        index, _, tail = rest.partition(".")
        if index.isdigit() and int(index) < len(origins):
            origin = origins[int(index)]
            if tail.startswith("values.") and origin.startswith("phones."):
                return f"values.{tail.removeprefix('values.')}"
            if tail.startswith("values.") and origin.startswith("values."):
                return f"{origin}.{tail.removeprefix('values.')}"
            return origin
    if head in FIELDS:
        return FIELDS[head] + (f".{rest}" if rest else "")
    return field


def _check_schedule(project: Project, payload: CampaignIn) -> None:
    schedule = payload.schedule
    if schedule is None:
        return
    if schedule.at is not None:
        at = schedule.at
        try:
            # What the database stores: UTC. At the ends of the calendar the shift overflows.
            (
                at if timezone.is_aware(at) else timezone.make_aware(at, ZoneInfo(project.time_zone))
            ).astimezone(UTC)
        except (OverflowError, ValueError):
            raise InvalidInput(_("The send time is out of range."), field="schedule.at") from None
    if schedule.kind == ScheduleKind.AT and schedule.at is None:
        raise InvalidInput(_("Give the date and time to send (schedule.at)."), field="schedule.at")
    if schedule.kind == ScheduleKind.LOCAL_TIME and not schedule.local_time:
        raise InvalidInput(
            _("Give the local time to send at (schedule.local_time)."), field="schedule.local_time"
        )
    if schedule.local_time is not None:
        try:
            time.fromisoformat(schedule.local_time.strip())
        except ValueError:
            raise InvalidInput(
                _("The local time is a time of day, e.g. 09:30."), field="schedule.local_time"
            ) from None


def _check_storable(payload: Schema) -> None:
    """No database stores a lone surrogate ("\\ud800" in JSON): a 422 naming the field, not a 500."""
    for name, value in payload.model_dump().items():
        tags.clean_tree(value, field=name)


def _write(request, payload: CampaignIn, campaign: Campaign | None = None) -> Campaign:
    _check_storable(payload)
    _check_schedule(request.project, payload)
    data, origins = campaign_input(request.project, payload)
    try:
        if campaign is None:
            return drafts.create_campaign(project=request.project, actor=request.actor, data=data)
        return drafts.update_campaign(campaign=campaign, actor=request.actor, data=data)
    except InvalidInput as exc:
        if exc.code == "not_draft":
            raise ApiError(409, "not_draft", exc.message, field="status") from None
        raise InvalidInput(exc.message, field=api_field(exc.field, origins), code=exc.code) from None


# --- endpoints -----------------------------------------------------------------------------------

CREATE_EXAMPLES = {
    "segment": {
        "summary": "A promotion to a saved segment, now",
        "value": {
            "name": "Winter sale",
            "purpose": "promotion",
            "template": {"name": "winter_sale", "language": "de"},
            "bindings": {"body": {"1": "{{ subscriber.name | default: 'Kunde' }}"}},
            "segment_id": "3f0c1a52-6a3e-4b8e-9f43-6b1d2a9c7e10",
            "throttle_mps": 80,
        },
    },
    "language_group": {
        "summary": "A language group to a rule, at 09:30 in each subscriber's time zone",
        "value": {
            "name": "Order reminder",
            "purpose": "reminder",
            "template": {"name": "cart_reminder", "languages": ["de", "en_US"], "fallback_language": "en_US"},
            "bindings": {"body": {"1": "{{ tags.first_name | default: 'there' }}", "2": "{{ values.cart }}"}},
            "rule": 'E("CartAbandoned", gte, 1, 7d) * R(whatsapp)',
            "values": {"+4915112345678": {"cart": "2 items"}, "crm-4711": {"cart": "1 item"}},
            "schedule": {
                "kind": "local_time",
                "local_time": "09:30",
                "time_zone": "Europe/Berlin",
                "passed_local_time": "next_day",
            },
        },
    },
    "phones": {
        "summary": "A service notice to a list of phones at a set time",
        "value": {
            "name": "Maintenance notice",
            "purpose": "transactional",
            "template": {"name": "maintenance", "language": "en_US"},
            "phones": ["+4915112345678", "+4915187654321"],
            "schedule": {"kind": "at", "at": "2026-12-24T09:00:00+01:00"},
        },
    },
}

WRITE_ERRORS = {404: ErrorOut, 422: ErrorOut}


@router.post(
    "",
    response={201: CampaignOut, **WRITE_ERRORS},
    summary="Create a campaign (a draft)",
    openapi_extra={"requestBody": {"content": {"application/json": {"examples": CREATE_EXAMPLES}}}},
)
def create_campaign(request, payload: CampaignIn):
    """Saves a draft: nothing is sent until `POST /campaigns/{id}/launch`. The same checks as the
    panel's composer; a draft may be unfinished (no template or audience yet), and
    `launch_problems` lists what is still missing. Check the audience and cost with
    `GET /campaigns/{id}/preflight` before launching.
    """
    campaign = _write(request, payload)
    return Status(201, campaign_out(get_campaign(request.project, campaign.public_id)))


@router.put(
    "/{uuid:campaign_id}",
    response={200: CampaignOut, 409: ErrorOut, **WRITE_ERRORS},
    summary="Replace a draft",
)
def update_campaign(request, campaign_id: UUID, payload: CampaignIn):
    """Replaces every setting of a draft (and its `phones` and `values`) with the body; a 409
    `not_draft` once it was launched."""
    campaign = get_campaign(request.project, campaign_id)
    if campaign.status != CampaignStatus.DRAFT:
        # Before the body's checks: no fix to the body makes a launched campaign editable.
        raise ApiError(
            409,
            "not_draft",
            _("This campaign is %(status)s: only drafts can be changed.")
            % {"status": mid_sentence(campaign.get_status_display())},
            field="status",
        )
    _write(request, payload, campaign)
    return campaign_out(get_campaign(request.project, campaign_id))


@router.get("", response={200: CampaignPageOut, 422: ErrorOut}, summary="List campaigns")
def list_campaigns(request, filters: Query[ListFilters]):
    """The project's campaigns, newest first, with their counts; a page of `limit` at a time
    (follow `next_cursor`). One grouped count for the whole page."""
    campaigns = _campaigns(request.project)
    if filters.status:
        campaigns = campaigns.filter(status=filters.status)
    if filters.cursor:
        try:
            before = signing.loads(filters.cursor, salt=_CURSOR_SALT)
        except signing.BadSignature:
            before = None
        if not isinstance(before, int) or isinstance(before, bool):
            raise InvalidInput(_("This cursor is not one a page of this list returned."), field="cursor")
        campaigns = campaigns.filter(pk__lt=before)
    page = list(campaigns.order_by("-pk")[: filters.limit + 1])
    rows = page[: filters.limit]
    counts = stats.status_counts(rows)
    return {
        "items": [summary_out(c, counts[c.pk]) for c in rows],
        "next_cursor": signing.dumps(rows[-1].pk, salt=_CURSOR_SALT) if len(page) > filters.limit else None,
    }


@router.get("/{uuid:campaign_id}", response={200: CampaignOut}, summary="A campaign with its figures")
def get_campaign_detail(request, campaign_id: UUID):
    """Status (and why it paused itself), settings, counts per state (cumulative: a read message
    was also delivered and sent), failures by Meta error code with what to do, skips by reason,
    the estimated cost at launch and the actual cost so far."""
    return campaign_out(get_campaign(request.project, campaign_id))


@router.get(
    "/{uuid:campaign_id}/preflight",
    response={200: PreflightOut, 422: ErrorOut},
    summary="What a launch now would do",
)
def preflight(request, campaign_id: UUID):
    """Audience size now; who is left out and why (no opt-in, opted out, capped, no number, missing a
    value a binding needs); the estimated cost from the rate card per market; the duration at the
    number's throughput; a warning when the audience exceeds the number's messaging limit."""
    campaign = get_campaign(request.project, campaign_id)
    return run_preflight(campaign).as_dict()


LIFECYCLE_ERRORS = {409: ErrorOut}


def _transition(request, campaign_id: UUID, action: str) -> dict[str, Any]:
    campaign = get_campaign(request.project, campaign_id)
    try:
        getattr(lifecycle, action)(campaign=campaign, actor=request.actor)
    except InvalidInput as exc:
        raise ApiError(409, exc.code, exc.message, field=exc.field) from None
    return campaign_out(get_campaign(request.project, campaign_id))


@router.post(
    "/{uuid:campaign_id}/launch",
    response={200: CampaignOut, 409: ErrorOut, 422: LaunchRefusedOut},
    summary="Launch a draft",
)
def launch(request, campaign_id: UUID):
    """Draft -> scheduled; the audience is snapshotted at the scheduled time (at once for `now`) and
    the campaign runs. Recorded in the audit log. Refused with every reason (422 `not_launchable`,
    `problems`) when something is missing; 409 when it is not a draft."""
    campaign = get_campaign(request.project, campaign_id)
    try:
        lifecycle.launch(campaign=campaign, actor=request.actor)
    except InvalidInput as exc:
        if exc.code != "not_launchable":
            raise ApiError(409, exc.code, exc.message, field=exc.field) from None
        problems = drafts.launch_problems(get_campaign(request.project, campaign_id))
        body = {"code": "not_launchable", "message": exc.message, "problems": problems or [exc.message]}
        return Status(422, body)
    return campaign_out(get_campaign(request.project, campaign_id))


@router.post("/{uuid:campaign_id}/pause", response={200: CampaignOut, **LIFECYCLE_ERRORS}, summary="Pause")
def pause(request, campaign_id: UUID):
    """Scheduled or running -> paused: nothing more is sent; resume continues without duplicates."""
    return _transition(request, campaign_id, "pause")


@router.post("/{uuid:campaign_id}/resume", response={200: CampaignOut, **LIFECYCLE_ERRORS}, summary="Resume")
def resume(request, campaign_id: UUID):
    """Paused -> running (or scheduled, when its time has not come). 409 when the sending number is
    stopped (fix it first)."""
    return _transition(request, campaign_id, "resume")


@router.post("/{uuid:campaign_id}/cancel", response={200: CampaignOut, **LIFECYCLE_ERRORS}, summary="Cancel")
def cancel(request, campaign_id: UUID):
    """-> cancelled, for good: recipients not yet sent to are skipped ("campaign cancelled")."""
    return _transition(request, campaign_id, "cancel")


@router.post(
    "/{uuid:campaign_id}/test-send",
    response={201: TestSendOut, 422: ErrorOut},
    summary="Send the campaign's message to one phone now",
)
def test_send(request, campaign_id: UUID, payload: TestSendIn):
    """Renders the campaign for the subscriber with `phone` and sends it as a single message (not
    counted in the campaign's figures). Consent and the template's state are checked as for any
    send; a refusal says why (422)."""
    campaign = get_campaign(request.project, campaign_id)
    _check_storable(payload)
    if not campaign.template_name:
        raise InvalidInput(
            _("Choose the campaign's template first."), field="template.name", code="no_template"
        )
    message = lifecycle.test_send(campaign=campaign, phone=payload.phone, actor=request.actor)
    return Status(201, {"message_id": message.public_id, "status": message.status})
