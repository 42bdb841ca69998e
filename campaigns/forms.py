"""HTML input of the campaign composer. The campaign itself is validated by drafts.build_campaign.

The form only turns text into types (a date, a number, the chosen segment) and offers choices
scoped to the project: approved templates of the purpose's Meta category, their languages, the
project's segments. Every other rule lives in drafts.py, shared with the API; its InvalidInput
names a field, and ``add_service_error`` puts the message next to the input it is about.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from controlpanel.models import TIME_ZONE_CHOICES, Project
from subscribers.errors import InvalidInput
from subscribers.models import Segment
from subscribers.segments.text import rule_to_text
from whatsapp import templates_lint as lint
from whatsapp.models import MessageTemplate, TemplateStatus, WhatsAppAccount

from .bindings import MEDIA_PARAMETERS
from .drafts import MAX_RECIPIENTS, CampaignInput, default_account
from .models import (
    PURPOSE_CATEGORY,
    AudienceKind,
    Campaign,
    CampaignPurpose,
    CampaignRecipient,
    PassedLocalTime,
    ScheduleKind,
)

BINDING_PREFIX = "bindings."
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # ~1M phones; a bigger list goes through the API
UNTITLED = "(untitled)"
PREVIEW_SAMPLE = 100  # saved phones a live preview reads to find three recipients
# InvalidInput.field of drafts.py -> the input it is about, when the names differ.
SERVICE_FIELDS = {"recipients": "phones", "status": None}


@dataclass
class Placeholder:
    """One input of the bindings: a placeholder of the chosen template."""

    component: str  # "body", "header", "button:0"
    name: str  # "1", "first_name"
    label: str  # "Body {{1}}"
    example: str  # Meta's sample value, as a hint
    value: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{BINDING_PREFIX}{self.component}.{self.name}"


def _datetime_widget() -> forms.DateTimeInput:
    return forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=200, required=False, label=gettext_lazy("Name"))
    account = forms.ModelChoiceField(
        queryset=WhatsAppAccount.objects.none(),
        to_field_name="public_id",
        required=False,
        label=gettext_lazy("Send from"),
        empty_label=None,
    )
    purpose = forms.ChoiceField(
        choices=CampaignPurpose.choices,
        label=gettext_lazy("Purpose"),
        help_text=gettext_lazy(
            "Meta prices and reviews by category: the template list shows only approved templates "
            "of the purpose's category."
        ),
    )
    template_name = forms.ChoiceField(label=gettext_lazy("Template"), required=False)
    languages = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=gettext_lazy("Languages"),
        help_text=gettext_lazy("Tick several for a language group: each recipient gets their own language."),
    )
    fallback_language = forms.ChoiceField(
        required=False,
        label=gettext_lazy("Fallback language"),
        help_text=gettext_lazy("For recipients whose language is none of the ticked ones."),
    )
    header_media_url = forms.CharField(
        max_length=2000,
        required=False,
        label=gettext_lazy("Header media URL"),
        help_text=gettext_lazy("A public https:// link to the image, video or document the header shows."),
    )
    audience_kind = forms.ChoiceField(
        choices=AudienceKind.choices,
        widget=forms.RadioSelect,
        label=gettext_lazy("Audience"),
        initial=AudienceKind.SEGMENT,
    )
    segment = forms.ModelChoiceField(
        queryset=Segment.objects.none(),
        to_field_name="public_id",
        required=False,
        empty_label="—",
        label=gettext_lazy("Segment"),
    )
    rule = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        label=gettext_lazy("Rule"),
        help_text=gettext_lazy(
            "The segment builder's text language, e.g. "
            '<code>tag city = "Berlin" and tag language = "de"</code>.'
        ),
    )
    phones = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        label=gettext_lazy("Phone numbers"),
        help_text=gettext_lazy(
            "One per line, with +country code (or national format for the project's country)."
        ),
    )
    phones_file = forms.FileField(
        required=False,
        label=gettext_lazy("…or upload a CSV or text file"),
        help_text=gettext_lazy("The first column of each row is the phone; a header row is skipped."),
    )
    schedule_kind = forms.ChoiceField(
        choices=ScheduleKind.choices,
        widget=forms.RadioSelect,
        label=gettext_lazy("When"),
        initial=ScheduleKind.NOW,
    )
    scheduled_at = forms.DateTimeField(
        required=False,
        label=gettext_lazy("Date and time"),
        widget=_datetime_widget(),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        help_text=gettext_lazy("In the project's time zone."),
    )
    local_time = forms.TimeField(
        required=False,
        label=gettext_lazy("Local time"),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    fallback_time_zone = forms.ChoiceField(
        choices=TIME_ZONE_CHOICES,
        required=False,
        label=gettext_lazy("Time zone for subscribers without one"),
    )
    passed_local_time = forms.ChoiceField(
        choices=PassedLocalTime.choices,
        required=False,
        initial=PassedLocalTime.NEXT_DAY,
        label=gettext_lazy("Where that time has already passed today"),
    )
    throttle_mps = forms.IntegerField(
        required=False,
        min_value=1,
        label=gettext_lazy("Throttle (messages per second)"),
        widget=forms.NumberInput(attrs={"placeholder": gettext_lazy("the number's limit")}),
    )

    def __init__(self, *args, project: Project, campaign: Campaign | None = None, **kwargs):
        self.project = project
        self.campaign = campaign
        if campaign is not None and not kwargs.get("data") and not (args and args[0]):
            kwargs["initial"] = initial_of(campaign)
        super().__init__(*args, **kwargs)
        self.binding_errors: dict[str, list[str]] = {}
        self.phone_lines: list[tuple[str, int]] = []
        accounts = WhatsAppAccount.objects.for_project(project).order_by("created_at")
        self.accounts = list(accounts)
        self.fields["account"].queryset = accounts
        if len(self.accounts) <= 1:
            # One number (the usual case): nothing to choose, drafts takes the project's first.
            del self.fields["account"]
        self.fields["segment"].queryset = Segment.objects.for_project(project).order_by("name")
        self.fields["fallback_time_zone"].initial = project.time_zone
        self.sending_account = self._chosen_account()
        if self.sending_account is not None:
            self.fields["throttle_mps"].widget.attrs["max"] = self.sending_account.throughput_mps
            limit = self.sending_account.throughput_mps
            self.fields["throttle_mps"].help_text = _(
                "At most %(limit)s, the limit of %(account)s. Empty: %(limit)s."
            ) % {
                "limit": limit,
                "account": self.sending_account,
            }
        purpose = self._raw("purpose")
        if purpose not in CampaignPurpose.values:
            purpose = CampaignPurpose.PROMOTION
        self.category = PURPOSE_CATEGORY[CampaignPurpose(purpose)]
        self.templates = self._approved_templates()
        names = sorted({t.name for t in self.templates})
        self.fields["template_name"].choices = [("", "—"), *((n, n) for n in names)]
        self.fields["template_name"].error_messages["invalid_choice"] = _(
            "Choose an approved %(category)s template; %%(value)s is not one."
        ) % {"category": self.category.lower()}
        chosen = self._raw("template_name")
        codes = sorted({t.language for t in self.templates if t.name == chosen})
        self.fields["languages"].choices = [(c, c) for c in codes]
        self.fields["fallback_language"].choices = [("", _("The first ticked")), *((c, c) for c in codes)]
        self.chosen_templates = [
            t for t in self.templates if t.name == chosen and t.language in self._chosen_languages(codes)
        ]
        self.placeholders, self.media_header = self._placeholders()

    # --- what was chosen, before validation: the choices of other fields depend on it -------------

    def _raw(self, name: str) -> Any:
        if self.is_bound:
            return self.data.get(name, "")
        value = self.initial.get(name, self.fields[name].initial if name in self.fields else "")
        return value or ""

    def _chosen_account(self) -> WhatsAppAccount | None:
        raw = str(self._raw("account")) if "account" in self.fields else ""
        for account in self.accounts:
            if raw and str(account.public_id) == raw:
                return account
        if self.campaign is not None and self.campaign.account_id and not raw:
            return next((a for a in self.accounts if a.pk == self.campaign.account_id), None)
        return self.accounts[0] if self.accounts else default_account(self.project)

    def _chosen_languages(self, codes: list[str]) -> list[str]:
        if self.is_bound:
            ticked = self.data.getlist("languages") if hasattr(self.data, "getlist") else []
        else:
            ticked = list(self.initial.get("languages") or [])
        ticked = [c for c in ticked if c in codes]
        return ticked or (codes[:1] if len(codes) == 1 else [])

    def _approved_templates(self) -> list[MessageTemplate]:
        if self.sending_account is None:
            return []
        return list(
            MessageTemplate.objects.for_project(self.project)
            .filter(account=self.sending_account, status=TemplateStatus.APPROVED, category=self.category)
            .order_by("name", "language")
        )

    def _placeholders(self) -> tuple[list[Placeholder], str]:
        if self.is_bound:
            given = {k: v for k, v in self.data.items() if k.startswith(BINDING_PREFIX)}
        else:
            given = {
                f"{BINDING_PREFIX}{component}.{name}": source
                for component, names in (self.initial.get("bindings") or {}).items()
                for name, source in names.items()
            }
        found: dict[str, Placeholder] = {}
        media = ""
        for template in self.chosen_templates:
            for parameter in lint.template_parameters(
                template.components or [],
                category=template.category,
                parameter_format=template.parameter_format,
            ):
                if parameter.component == "header" and parameter.name in MEDIA_PARAMETERS:
                    media = parameter.name
                    continue
                if parameter.component == "header" and parameter.name == "location":
                    continue
                item = Placeholder(
                    parameter.component,
                    parameter.name,
                    f"{parameter.label} {{{{{parameter.name}}}}}",
                    parameter.example,
                )
                item.value = str(given.get(item.key, ""))
                found.setdefault(item.key, item)
        return list(found.values()), media

    @property
    def fields_key(self) -> str:
        """What the template's inputs were drawn for; the live preview redraws them when it changes."""
        account = self.sending_account.public_id if self.sending_account else ""
        languages = ",".join(sorted(t.language for t in self.chosen_templates))
        return f"{account}|{self.category}|{self._raw('template_name')}|{languages}"

    # --- to the service ------------------------------------------------------------------------

    def clean_throttle_mps(self) -> int | None:
        value = self.cleaned_data.get("throttle_mps")
        if (
            value is not None
            and self.sending_account is not None
            and value > self.sending_account.throughput_mps
        ):
            account = self.sending_account
            raise forms.ValidationError(
                _("At most %(limit)s messages per second: the limit of %(account)s.")
                % {"limit": account.throughput_mps, "account": account}
            )
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("audience_kind") == AudienceKind.LIST:
            cleaned["recipients"] = self._phones(cleaned)
        return cleaned

    def _phones(self, cleaned: dict[str, Any]) -> list[tuple[str, dict]] | None:
        """The typed and uploaded phones (their lines kept for errors); None: keep the saved list."""
        rows: list[tuple[tuple[str, int], str]] = []
        for number, line in enumerate((cleaned.get("phones") or "").splitlines(), start=1):
            if line.strip():
                rows.append((("phones", number), line.strip()))
        upload = cleaned.get("phones_file")
        if upload is not None:
            if upload.size > MAX_UPLOAD_BYTES:
                self.add_error(
                    "phones_file", _("The file is larger than 20 MB: send big lists through the API.")
                )
                return []
            text = upload.read().decode("utf-8-sig", errors="replace")
            for number, row in enumerate(csv.reader(io.StringIO(text), delimiter=_delimiter(text)), start=1):
                cell = (row[0] if row else "").strip()
                if not cell or (number == 1 and not any(ch.isdigit() for ch in cell)):
                    continue  # an empty row, or the header
                rows.append((("phones_file", number), cell))
        if len(rows) > MAX_RECIPIENTS:
            self.add_error(
                "phones",
                _("At most %(limit)s phones per campaign.")
                % {"limit": number_format(MAX_RECIPIENTS, force_grouping=True)},
            )
            return []
        if not rows and self.campaign is not None:
            return None
        self.phone_lines = [where for where, _ in rows]
        return [(phone, {}) for _, phone in rows]

    def to_input(self, *, preview: bool = False) -> CampaignInput:
        """What the form says, for build_campaign. ``preview``: a live preview while the name is
        still empty renders anyway (the name is asked for on save)."""
        data = self.cleaned_data
        recipients = data.get("recipients")
        self.kept_saved_list = recipients is None and self.campaign is not None
        if recipients is None:
            # A preview needs a few of a kept list (the sample), not all of a million phones.
            recipients = self._saved_recipients(limit=PREVIEW_SAMPLE if preview else None)
        bindings: dict[str, dict[str, str]] = {}
        for item in self.placeholders:
            if item.value.strip():
                bindings.setdefault(item.component, {})[item.name] = item.value
        return CampaignInput(
            name=data.get("name") or (UNTITLED if preview else ""),
            purpose=data.get("purpose") or CampaignPurpose.PROMOTION,
            account=self.sending_account,
            template_name=data.get("template_name") or "",
            languages=[t.language for t in self.chosen_templates],
            fallback_language=data.get("fallback_language") or "",
            bindings=bindings,
            header_media_url=(data.get("header_media_url") or "") if self.media_header else "",
            audience_kind=data.get("audience_kind") or AudienceKind.SEGMENT,
            segment=data.get("segment"),
            rule=data.get("rule") or None,
            recipients=recipients,
            schedule_kind=data.get("schedule_kind") or ScheduleKind.NOW,
            scheduled_at=data.get("scheduled_at"),
            local_time=data.get("local_time"),
            fallback_time_zone=data.get("fallback_time_zone") or "",
            passed_local_time=data.get("passed_local_time") or PassedLocalTime.NEXT_DAY,
            throttle_mps=data.get("throttle_mps"),
        )

    def _saved_recipients(self, limit: int | None = None) -> list[tuple[str, dict]]:
        # A draft's list (or values given by API) stays unless a new list is given.
        if self.campaign is None:
            return []
        rows = CampaignRecipient.objects.filter(campaign=self.campaign).order_by("id")
        return list(rows.values_list("key", "values")[:limit])

    def add_service_error(self, err: InvalidInput) -> None:
        """Put a drafts.py error next to its input (or above the form when it has none)."""
        name = err.field or ""
        if name.startswith(BINDING_PREFIX):
            if any(item.key == name for item in self.placeholders):
                self.binding_errors.setdefault(name, []).append(err.message)
                for item in self.placeholders:
                    if item.key == name:
                        item.errors.append(err.message)
                return
            name = ""
        if name.startswith("recipients."):
            index = name.split(".")[1]
            if index.isdigit() and int(index) < len(self.phone_lines):
                where, line = self.phone_lines[int(index)]
                if where == "phones_file":
                    message = _("Row %(row)s: %(problem)s") % {"row": line, "problem": err.message}
                else:
                    message = _("Line %(line)s: %(problem)s") % {"line": line, "problem": err.message}
                self.add_error(where, message)
            else:
                self.add_error("phones", err.message)
            return
        name = SERVICE_FIELDS.get(name, name)
        if name == "languages" and not self.fields["languages"].choices:
            name = "template_name"
        if name and name in self.fields and name not in self.errors:
            self.add_error(name, err.message)
        else:
            self.add_error(None, err.message)

    @property
    def problems(self) -> list[tuple[str, str, str]]:
        """Every error as (input name, label, message), for the live preview's list."""
        found = []
        for name, errors in self.errors.items():
            if name not in self.fields:
                found += [("", "", message) for message in errors]
                continue
            label = str(self.fields[name].label or name.replace("_", " ").capitalize())
            found += [(name, label, message) for message in errors]
        for item in self.placeholders:
            for message in item.errors:
                found.append((item.key, item.label, message))
        return found

    @property
    def problem_fields(self) -> str:
        return " ".join(sorted({name for name, _, _ in self.problems if name}))


def _delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    return max((",", ";", "\t"), key=first.count)


def initial_of(campaign: Campaign) -> dict[str, Any]:
    """A saved draft as the form's initial values."""
    initial: dict[str, Any] = {
        name: getattr(campaign, name)
        for name in (
            "name",
            "purpose",
            "template_name",
            "fallback_language",
            "header_media_url",
            "audience_kind",
            "schedule_kind",
            "local_time",
            "passed_local_time",
            "throttle_mps",
        )
    }
    initial["languages"] = list(campaign.languages or [])
    initial["bindings"] = campaign.bindings or {}
    initial["fallback_time_zone"] = campaign.fallback_time_zone or campaign.project.time_zone
    if campaign.scheduled_at is not None:
        initial["scheduled_at"] = campaign.scheduled_at
    if campaign.segment is not None:
        initial["segment"] = campaign.segment.public_id
    if campaign.account is not None:
        initial["account"] = campaign.account.public_id
    if campaign.rule and campaign.audience_kind == AudienceKind.RULE:
        initial["rule"] = rule_to_text(campaign.rule)
    return initial
