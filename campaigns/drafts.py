"""Writing a campaign before launch: one validation for the panel and the API, and a preview.

``build_campaign`` turns input into an unsaved, validated Campaign (InvalidInput naming the
field otherwise). A draft may be unfinished (no template yet, a binding missing):
``launch_problems`` lists, in plain words, everything that still stands in the way of a launch.
``preview`` renders the message for real recipients of the audience, on a saved draft or on
the unsaved one the panel's live preview builds on every change.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from controlpanel.models import Project
from controlpanel.services import Actor, record_audit
from controlpanel.wording import mid_sentence
from subscribers.errors import InvalidInput
from subscribers.models import Segment, Subscriber
from subscribers.phones import normalize_phone
from subscribers.segments import compiler
from subscribers.segments.text import RuleSyntaxError, parse_rule
from subscribers.segments.validate import validate_rule
from whatsapp.models import AccountStatus, MessageTemplate, TemplateStatus, WhatsAppAccount

from . import policy
from .bindings import MEDIA_PARAMETERS, check_bindings, compile_bindings, contexts_for, shape_bindings
from .languages import normalize
from .models import (
    PURPOSE_CATEGORY,
    AudienceKind,
    Campaign,
    CampaignPurpose,
    CampaignRecipient,
    CampaignStatus,
    PassedLocalTime,
    ScheduleKind,
)
from .outcomes import Skip
from .rendering import CampaignRendering

MAX_NAME = 200
MAX_RECIPIENTS = 1_000_000
MAX_VALUES = 50  # per recipient
MAX_VALUE_TEXT = 1_000
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$")
_VALUE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_URL = URLValidator(schemes=["http", "https"])


@dataclass
class CampaignInput:
    """What a person (panel) or a program (API) says a campaign is."""

    name: str = ""
    purpose: str = CampaignPurpose.PROMOTION
    account: WhatsAppAccount | None = None  # None: the project's first number
    template_name: str = ""
    languages: list[str] = field(default_factory=list)  # empty: the template's only language
    fallback_language: str = ""  # empty: the first language
    bindings: dict[str, dict[str, str]] = field(default_factory=dict)
    header_media_url: str = ""
    audience_kind: str = AudienceKind.SEGMENT
    segment: Segment | None = None
    rule: str | dict | None = None  # the text language ("tag city = Berlin") or a rule tree
    # Phones (the LIST audience) or, with any audience, per-recipient values by phone or external id.
    recipients: list[tuple[str, dict]] = field(default_factory=list)
    schedule_kind: str = ScheduleKind.NOW
    scheduled_at: datetime | None = None
    local_time: time | str | None = None
    fallback_time_zone: str = ""  # empty: the project's zone
    passed_local_time: str = PassedLocalTime.NEXT_DAY
    throttle_mps: int | None = None


def _choice(value: Any, choices: type, field_name: str, what: str) -> str:
    if value not in choices.values:
        allowed = ", ".join(choices.values)
        raise InvalidInput(
            _("%(what)s must be one of %(allowed)s, not %(value)s.")
            % {"what": what, "allowed": allowed, "value": repr(value)},
            field=field_name,
        )
    return str(value)


def default_account(project: Project) -> WhatsAppAccount | None:
    return WhatsAppAccount.objects.for_project(project).order_by("created_at").first()


def _languages(
    project: Project, data: CampaignInput, account: WhatsAppAccount | None
) -> tuple[list[str], str]:
    """The languages as the template spells them (Meta wants the exact code), and the fallback."""
    given = data.languages if isinstance(data.languages, list | tuple) else None
    if given is None or not all(isinstance(code, str) for code in given):
        raise InvalidInput(_('Languages are a list of codes, e.g. ["de", "en_US"].'), field="languages")
    codes: dict[str, str] = {}
    for code in given:
        code = code.strip()
        if not _LANGUAGE.match(code):
            raise InvalidInput(
                _("%(code)s is not a language code (e.g. de, en_US, pt_BR).") % {"code": repr(code)},
                field="languages",
            )
        codes.setdefault(normalize(code), code)
    template_name = (data.template_name or "").strip()
    if account is not None and template_name:
        existing = {
            normalize(code): code
            for code in MessageTemplate.objects.for_project(project)
            .filter(account=account, name=template_name)
            .values_list("language", flat=True)
        }
        if not existing:
            raise InvalidInput(
                _("There is no template named %(name)s on %(account)s. Create it or sync the templates.")
                % {"name": template_name, "account": account},
                field="template_name",
            )
        for key, code in codes.items():
            if key not in existing:
                raise InvalidInput(
                    _("Template %(name)s has no %(code)s version; it has %(codes)s.")
                    % {"name": template_name, "code": code, "codes": ", ".join(sorted(existing.values()))},
                    field="languages",
                )
            codes[key] = existing[key]
        if not codes and len(existing) == 1:
            codes = dict(existing)
    languages = list(codes.values())
    fallback = (data.fallback_language or "").strip()
    if not fallback:
        return languages, languages[0] if languages else ""
    if normalize(fallback) not in codes:
        raise InvalidInput(
            _("The fallback language %(code)s is not one of the campaign's languages.") % {"code": fallback},
            field="fallback_language",
        )
    return languages, codes[normalize(fallback)]


def _bindings(
    data: CampaignInput, project: Project, account: WhatsAppAccount | None, languages: list[str]
) -> dict[str, dict[str, str]]:
    bindings = data.bindings or {}
    templates = _templates_by_language(
        project, account, (data.template_name or "").strip(), languages, approved=False
    )
    expected: dict[str, list[str]] = {}
    authentication = False
    for template in templates.values():
        authentication = authentication or template.category == "AUTHENTICATION"
        for component, names in policy.template_parameters(template).items():
            expected.setdefault(component, [])
            expected[component] += [n for n in names if n not in expected[component]]
    if templates:
        check_bindings(bindings, expected, partial=True)
    else:  # no template chosen yet: the syntax at least
        compile_bindings(bindings)
    cleaned = _clean_bindings(shape_bindings(bindings))
    if authentication and (code := cleaned.get("body", {}).get("1")):
        # The code goes in the body and in the copy-code button; one binding says it once.
        for component in expected:
            if component.startswith("button:") and not cleaned.get(component, {}).get("1"):
                cleaned.setdefault(component, {})["1"] = code
    return cleaned


def _clean_bindings(bindings: dict) -> dict[str, dict[str, str]]:
    return {
        str(component): {str(name): source for name, source in names.items() if str(source).strip()}
        for component, names in bindings.items()
        if any(str(source).strip() for source in names.values())
    }


def _rule(project: Project, data: CampaignInput) -> dict:
    rule = data.rule
    if rule in (None, "", {}):
        return {}
    if isinstance(rule, str):
        try:
            rule = parse_rule(rule)
        except RuleSyntaxError as err:
            raise InvalidInput(
                _("The audience rule is not valid: %(problem)s.") % {"problem": err.message}, field="rule"
            ) from None
    try:
        return validate_rule(project, rule)
    except InvalidInput as err:
        raise InvalidInput(err.message, field="rule", code=err.code) from None


def _recipients(project: Project, data: CampaignInput) -> list[tuple[str, dict]]:
    """Recipients keyed by E.164 phone or external id, each once (later values win)."""
    if not isinstance(data.recipients, list | tuple):
        raise InvalidInput(
            _("Recipients are a list of phones or external ids with values."), field="recipients"
        )
    if len(data.recipients) > MAX_RECIPIENTS:
        raise InvalidInput(
            _("At most %(limit)s recipients per campaign.")
            % {"limit": number_format(MAX_RECIPIENTS, force_grouping=True)},
            field="recipients",
        )
    found: dict[str, dict] = {}
    phones_only = data.audience_kind == AudienceKind.LIST
    for index, item in enumerate(data.recipients):
        field_name = f"recipients.{index}"
        key, values = (item, {}) if isinstance(item, str) else (*tuple(item), {})[:2]
        if not isinstance(key, str) or not key.strip():
            raise InvalidInput(_("Give a phone number or an external id."), field=field_name)
        key = key.strip()
        # An uploaded list is phones, written as people write them; values by API name a
        # phone with its + (or 00), anything else is an external id.
        if phones_only or key.startswith(("+", "00")):
            key = normalize_phone(key, project.default_country, field=field_name)
        elif len(key) > 200:
            raise InvalidInput(_("An external id has at most 200 characters."), field=field_name)
        found[key] = {**found.get(key, {}), **_values(values, field_name)}
    return list(found.items())


def _values(values: Any, field_name: str) -> dict:
    if values in (None, ""):
        return {}
    if not isinstance(values, dict):
        raise InvalidInput(
            _('Values are an object, e.g. {"order_id": "A-17"}.'), field=f"{field_name}.values"
        )
    if len(values) > MAX_VALUES:
        raise InvalidInput(
            _("At most %(limit)s values per recipient.") % {"limit": MAX_VALUES}, field=f"{field_name}.values"
        )
    for name, value in values.items():
        where = f"{field_name}.values.{name}"
        if not isinstance(name, str) or not _VALUE_NAME.match(name):
            raise InvalidInput(
                _(
                    "%(name)s cannot be a value name: use letters, digits and _ "
                    "(it is written {{ values.name }})."
                )
                % {"name": repr(name)},
                field=where,
            )
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is not None and not isinstance(item, str | int | float | bool):
                raise InvalidInput(_("A value is text, a number, true/false or a list of them."), field=where)
            if isinstance(item, str) and len(item) > MAX_VALUE_TEXT:
                raise InvalidInput(
                    _("A value has at most %(limit)s characters.")
                    % {"limit": number_format(MAX_VALUE_TEXT, force_grouping=True)},
                    field=where,
                )
    return dict(values)


def _local_time(value: Any) -> time | None:
    if value in (None, ""):
        return None
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        try:
            return time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidInput(_("The local time is a time of day, e.g. 09:30."), field="local_time")


def _zone(name: str, field_name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            _("%(name)s is not a time zone (e.g. Europe/Berlin).") % {"name": repr(name)}, field=field_name
        ) from None
    return name


def build_campaign(*, project: Project, data: CampaignInput) -> Campaign:
    """An unsaved Campaign from ``data``, validated; InvalidInput (with ``field``) on bad input.

    Given recipients (a phone list, per-recipient values) are on ``campaign.pending_recipients``
    until create/update saves them. Nothing is read but the project's own rows.
    """
    name = (data.name or "").strip()
    if not name:
        raise InvalidInput(_("Give the campaign a name."), field="name")
    if len(name) > MAX_NAME:
        raise InvalidInput(
            _("A campaign name has at most %(limit)s characters.") % {"limit": MAX_NAME}, field="name"
        )
    purpose = _choice(data.purpose, CampaignPurpose, "purpose", _("The purpose"))
    account = data.account or default_account(project)
    if account is not None and account.project_id != project.pk:
        raise InvalidInput(_("No such WhatsApp number in this project."), field="account")
    template_name = (data.template_name or "").strip()
    if len(template_name) > 512:
        raise InvalidInput(_("A template name has at most 512 characters."), field="template_name")
    languages, fallback = _languages(project, data, account)
    bindings = _bindings(data, project, account, languages)
    header_media_url = (data.header_media_url or "").strip()
    if header_media_url:
        try:
            _URL(header_media_url)
        except ValidationError:
            raise InvalidInput(
                _("The header media URL is a full link starting with https://."), field="header_media_url"
            ) from None
        if len(header_media_url) > 2000:
            raise InvalidInput(
                _("The header media URL has at most 2,000 characters."), field="header_media_url"
            )
    audience_kind = _choice(data.audience_kind, AudienceKind, "audience_kind", _("The audience"))
    segment = data.segment if audience_kind == AudienceKind.SEGMENT else None
    if segment is not None and segment.project_id != project.pk:
        raise InvalidInput(_("No such segment in this project."), field="segment")
    rule = _rule(project, data) if audience_kind == AudienceKind.RULE else {}
    recipients = _recipients(project, data)
    schedule_kind = _choice(data.schedule_kind, ScheduleKind, "schedule_kind", _("The schedule"))
    scheduled_at = data.scheduled_at if schedule_kind == ScheduleKind.AT else None
    if scheduled_at is not None:
        if not isinstance(scheduled_at, datetime):
            raise InvalidInput(_("The send time is a date and time."), field="scheduled_at")
        if timezone.is_naive(scheduled_at):
            scheduled_at = timezone.make_aware(scheduled_at, zoneinfo.ZoneInfo(project.time_zone))
    local_time = _local_time(data.local_time) if schedule_kind == ScheduleKind.LOCAL_TIME else None
    fallback_zone = (data.fallback_time_zone or "").strip()
    if schedule_kind == ScheduleKind.LOCAL_TIME:
        fallback_zone = _zone(fallback_zone or project.time_zone, "fallback_time_zone")
    passed = _choice(
        data.passed_local_time, PassedLocalTime, "passed_local_time", _("What happens where the time passed")
    )
    throttle = data.throttle_mps
    if throttle is not None and (
        isinstance(throttle, bool) or not isinstance(throttle, int) or not 1 <= throttle <= 1000
    ):
        raise InvalidInput(
            _("The throttle is a number of messages per second from 1 to 1,000."), field="throttle_mps"
        )
    campaign = Campaign(
        project=project,
        name=name,
        purpose=purpose,
        account=account,
        template_name=template_name,
        languages=languages,
        fallback_language=fallback,
        bindings=bindings,
        header_media_url=header_media_url,
        audience_kind=audience_kind,
        segment=segment,
        rule=rule,
        schedule_kind=schedule_kind,
        scheduled_at=scheduled_at,
        local_time=local_time,
        fallback_time_zone=fallback_zone,
        passed_local_time=passed,
        throttle_mps=throttle,
    )
    campaign.pending_recipients = recipients
    return campaign


# Fields a draft's edit may change (what build_campaign sets).
EDITABLE = (
    "name",
    "purpose",
    "account",
    "template_name",
    "languages",
    "fallback_language",
    "bindings",
    "header_media_url",
    "audience_kind",
    "segment",
    "rule",
    "schedule_kind",
    "scheduled_at",
    "local_time",
    "fallback_time_zone",
    "passed_local_time",
    "throttle_mps",
)


def _save_recipients(campaign: Campaign, recipients: list[tuple[str, dict]]) -> None:
    CampaignRecipient.objects.filter(campaign=campaign).delete()
    CampaignRecipient.objects.bulk_create(
        (CampaignRecipient(campaign=campaign, key=key, values=values) for key, values in recipients),
        batch_size=1_000,
    )


def _audit_value(value: Any) -> Any:
    if hasattr(value, "pk"):
        return str(getattr(value, "public_id", value.pk))
    if isinstance(value, datetime | time):
        return value.isoformat()
    return value


@transaction.atomic
def create_campaign(*, project: Project, actor: Actor, data: CampaignInput) -> Campaign:
    """Save a new draft with its given recipients; audited as ``campaign.create``. Not idempotent."""
    campaign = build_campaign(project=project, data=data)
    campaign.created_by = actor.user
    campaign.save()
    _save_recipients(campaign, campaign.pending_recipients)
    record_audit(
        project=project,
        actor=actor,
        action="campaign.create",
        obj=campaign,
        changes={"name": campaign.name, "purpose": campaign.purpose, "template": campaign.template_name},
    )
    return campaign


@transaction.atomic
def update_campaign(*, campaign: Campaign, actor: Actor, data: CampaignInput) -> Campaign:
    """Replace a draft's settings and given recipients with ``data``; audited as ``campaign.update``.

    Only drafts: a launched campaign keeps what it was launched with (InvalidInput otherwise).
    Running it twice with the same data changes nothing the second time (but audits it).
    """
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if locked.status != CampaignStatus.DRAFT:
        raise InvalidInput(
            _("This campaign is %(status)s: only drafts can be changed.")
            % {"status": mid_sentence(locked.get_status_display())},
            field="status",
            code="not_draft",
        )
    built = build_campaign(project=locked.project, data=data)
    changes = {}
    for name in EDITABLE:
        old, new = getattr(locked, name), getattr(built, name)
        if old != new:
            changes[name] = {"from": _audit_value(old), "to": _audit_value(new)}
            setattr(locked, name, new)
    locked.save()
    _save_recipients(locked, built.pending_recipients)
    record_audit(project=locked.project, actor=actor, action="campaign.update", obj=locked, changes=changes)
    return locked


# --- templates --------------------------------------------------------------------------------


def _templates_by_language(
    project: Project | int,
    account: WhatsAppAccount | None,
    name: str,
    languages: list[str],
    *,
    approved: bool,
) -> dict[str, MessageTemplate]:
    if account is None or not name or not languages:
        return {}
    templates = MessageTemplate.objects.for_project(project).filter(account=account, name=name)
    if approved:
        templates = templates.filter(status=TemplateStatus.APPROVED)
    by_code = {normalize(t.language): t for t in templates}
    return {code: by_code[normalize(code)] for code in languages if normalize(code) in by_code}


def snapshot_entry(template: MessageTemplate) -> dict[str, Any]:
    return {
        "id": template.pk,
        "name": template.name,
        "language": template.language,
        "category": template.category,
        "parameter_format": template.parameter_format,
        "components": template.components,
    }


def snapshot_templates(campaign: Campaign) -> dict[str, dict[str, Any]]:
    """What ``Campaign.templates_snapshot`` holds: per language the approved template's id, name,
    language, category, parameter format and components. Sending reads this, never the live row,
    so a template edited or deleted later does not change a running campaign.

    InvalidInput when a language has no approved template (launch_problems says so first).
    """
    templates = _templates_by_language(
        campaign.project_id, campaign.account, campaign.template_name, list(campaign.languages), approved=True
    )
    missing = [code for code in campaign.languages if code not in templates]
    if missing or not templates:
        raise InvalidInput(
            _("Template %(name)s is not approved in %(languages)s.")
            % {"name": campaign.template_name, "languages": ", ".join(missing) or _("any language")},
            field="languages",
            code="template_not_approved",
        )
    return {code: snapshot_entry(template) for code, template in templates.items()}


def _campaign_templates(campaign: Campaign) -> dict[str, dict[str, Any]]:
    """The snapshot once launched; before that, the approved templates as they are now."""
    if campaign.templates_snapshot:
        return campaign.templates_snapshot
    templates = _templates_by_language(
        campaign.project_id, campaign.account, campaign.template_name, list(campaign.languages), approved=True
    )
    return {code: snapshot_entry(t) for code, t in templates.items()}


# --- launch problems -----------------------------------------------------------------------------


def _given_recipients(campaign: Campaign) -> list[tuple[str, dict]]:
    pending = getattr(campaign, "pending_recipients", None)
    if pending is not None:
        return pending
    if campaign.pk is None:
        return []
    return list(
        CampaignRecipient.objects.filter(campaign=campaign).order_by("id").values_list("key", "values")
    )


def launch_problems(campaign: Campaign) -> list[str]:
    """Why this campaign cannot be launched now, in plain words; [] when it can."""
    problems: list[str] = []
    if campaign.status != CampaignStatus.DRAFT:
        problems.append(
            _("The campaign is %(status)s; only a draft can be launched.")
            % {"status": mid_sentence(campaign.get_status_display())}
        )
    account = campaign.account
    if account is None:
        problems.append(_("Choose the WhatsApp number to send from."))
    elif not account.access_token:
        problems.append(
            _("The WhatsApp number %(account)s is not connected: add its access token.")
            % {"account": account}
        )
    elif account.status != AccountStatus.ACTIVE:
        problems.append(
            _("Sending from %(account)s is stopped: %(reason)s.")
            % {"account": account, "reason": account.status_reason or _("see the number page")}
        )
    problems += _template_problems(campaign)
    problems += _audience_problems(campaign)
    problems += _schedule_problems(campaign)
    if account is not None and campaign.throttle_mps and campaign.throttle_mps > account.throughput_mps:
        problems.append(
            _("The throttle of %(throttle)s messages per second is above the number's limit of %(limit)s.")
            % {"throttle": campaign.throttle_mps, "limit": account.throughput_mps}
        )
    return problems


def _template_problems(campaign: Campaign) -> list[str]:
    if not campaign.template_name:
        return [_("Choose a template.")]
    if not campaign.languages:
        return [_("Choose the template's language (or languages).")]
    if campaign.account is None:
        return []
    problems: list[str] = []
    all_versions = _templates_by_language(
        campaign.project_id,
        campaign.account,
        campaign.template_name,
        list(campaign.languages),
        approved=False,
    )
    wanted = PURPOSE_CATEGORY[CampaignPurpose(campaign.purpose)]
    purpose = mid_sentence(CampaignPurpose(campaign.purpose).label)
    for code in campaign.languages:
        template = all_versions.get(code)
        if template is None:
            problems.append(
                _("Template %(name)s does not exist in %(code)s.")
                % {"name": campaign.template_name, "code": code}
            )
            continue
        if template.status != TemplateStatus.APPROVED:
            problems.append(
                _("Template %(name)s (%(code)s) is %(status)s, not approved by Meta.")
                % {"name": campaign.template_name, "code": code, "status": _status_label(template.status)}
            )
            continue
        if template.category != wanted:
            problems.append(
                _(
                    "Template %(name)s (%(code)s) is a %(category)s template; "
                    "a %(purpose)s needs a %(wanted)s template."
                )
                % {
                    "name": campaign.template_name,
                    "code": code,
                    "category": template.category.lower(),
                    "purpose": purpose,
                    "wanted": wanted.lower(),
                }
            )
        expected = policy.template_parameters(template)
        try:
            check_bindings(campaign.bindings or {}, expected)
        except InvalidInput as err:
            problems.append(f"{err.message}" + (f" ({code})" if len(campaign.languages) > 1 else ""))
        media = [n for n in expected.get("header", []) if n in MEDIA_PARAMETERS]
        if media and not campaign.header_media_url:
            problems.append(
                {
                    "image": _("The template's header shows an image: give the header media URL."),
                    "video": _("The template's header shows a video: give the header media URL."),
                    "document": _("The template's header shows a document: give the header media URL."),
                }.get(
                    media[0],
                    _("The template's header shows a %(media)s: give the header media URL.")
                    % {"media": media[0]},
                )
            )
    return list(dict.fromkeys(problems))


def _status_label(status: str) -> str:
    return mid_sentence(TemplateStatus.label_of(status))


def _audience_problems(campaign: Campaign) -> list[str]:
    kind = campaign.audience_kind
    if kind == AudienceKind.SEGMENT:
        if campaign.segment_id is None:
            return [_("Choose a segment (or another audience).")]
        try:
            validate_rule(campaign.project, campaign.segment.rule, segment=campaign.segment)
        except InvalidInput as err:
            return [
                _("The segment %(name)s no longer works: %(problem)s")
                % {"name": campaign.segment.name, "problem": err.message}
            ]
    elif kind == AudienceKind.RULE:
        if not campaign.rule:
            return [_("Write the audience rule.")]
        try:
            validate_rule(campaign.project, campaign.rule)
        except InvalidInput as err:
            return [_("The audience rule is not valid: %(problem)s") % {"problem": err.message}]
    elif kind == AudienceKind.LIST and not _given_recipients(campaign):
        return [_("Upload the list of phone numbers to send to.")]
    return []


def _schedule_problems(campaign: Campaign) -> list[str]:
    if campaign.schedule_kind == ScheduleKind.AT:
        if campaign.scheduled_at is None:
            return [_("Choose the date and time to send.")]
        if campaign.scheduled_at <= timezone.now():
            return [_("The send time has passed: choose a time in the future (or send now).")]
    elif campaign.schedule_kind == ScheduleKind.LOCAL_TIME:
        if campaign.local_time is None:
            return [_("Choose the local time to send at.")]
        try:
            _zone(campaign.fallback_time_zone, "fallback_time_zone")
        except InvalidInput:
            return [_("Choose the time zone for subscribers without one.")]
    return []


# --- preview -------------------------------------------------------------------------------------


@dataclass
class PreviewRecipient:
    subscriber: Subscriber
    language: str = ""
    header: str = ""
    header_media: str = ""  # image | video | document | location
    header_link: str = ""
    body: str = ""
    footer: str = ""
    buttons: list[str] = field(default_factory=list)
    skip_reason: str = ""


def _sample(campaign: Campaign, count: int) -> tuple[list[Subscriber], dict[int, dict]]:
    """Up to ``count`` real recipients of the audience (newest first) and their given values."""
    project = campaign.project
    given = _given_recipients(campaign)
    kind = campaign.audience_kind
    subscribers = Subscriber.objects.for_project(project)
    if kind == AudienceKind.SEGMENT and campaign.segment_id is not None:
        found, _more = compiler.sample(project, campaign.segment.rule, limit=count)
    elif kind == AudienceKind.RULE and campaign.rule:
        found, _more = compiler.sample(project, campaign.rule, limit=count)
    elif kind == AudienceKind.EVERYONE:
        found = list(subscribers.whatsapp_opted_in().order_by("-created_at", "-id")[:count])
    elif kind == AudienceKind.LIST:
        keys = [key for key, _ in given[: count * 3]]  # a few listed phones may be unknown
        by_phone = {s.phone: s for s in subscribers.filter(phone__in=keys)}
        found = [by_phone[k] for k in keys if k in by_phone][:count]
    else:
        found = []
    values: dict[int, dict] = {}
    if given and found:
        by_key = dict(given)
        for subscriber in found:
            for key in (subscriber.phone, subscriber.external_id):
                if key and key in by_key:
                    values[subscriber.pk] = by_key[key]
                    break
    return found, values


def preview(campaign: Campaign, *, count: int = 3) -> list[PreviewRecipient]:
    """The message as ``count`` real recipients of the audience would see it, with the reason
    when one would be skipped. Works on an unsaved campaign from build_campaign."""
    subscribers, values = _sample(campaign, count)
    if not subscribers:
        return []
    rendering = CampaignRendering(campaign, _campaign_templates(campaign))
    contexts = contexts_for(campaign.project, [s.pk for s in subscribers], values=values)
    category = PURPOSE_CATEGORY[CampaignPurpose(campaign.purpose)]
    previews = []
    for subscriber in subscribers:
        item = PreviewRecipient(subscriber=subscriber)
        context = contexts.get(subscriber.pk)
        if context is None:
            continue
        item.language = rendering.pick(subscriber.language or "")
        refusal = policy.for_people(policy.consent_refusal(subscriber, category)) or (
            "" if subscriber.phone else _("The subscriber has no phone number.")
        )
        outcome = rendering.values(context)
        if isinstance(outcome, Skip):
            item.skip_reason = refusal or outcome.reason
        else:
            plan, filled = outcome
            shown = plan.display(filled)
            item.header, item.header_media, item.header_link = (
                shown.header,
                shown.header_media,
                shown.header_link,
            )
            item.body, item.footer, item.buttons = shown.body, shown.footer, shown.buttons
            components = plan.components(filled)
            item.skip_reason = refusal or (components.reason if isinstance(components, Skip) else "")
        previews.append(item)
    return previews
