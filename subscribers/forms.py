"""HTML input of the subscriber pages. Validation of the data itself lives in services and tags."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from controlpanel.models import COUNTRY_CHOICES, TIME_ZONE_CHOICES, country_choices

from .errors import InvalidInput
from .models import ConsentChannel, ConsentState, TagType

# InvalidInput.field (API names) -> form field names.
SERVICE_FIELDS = {
    "timezone": "time_zone",
    "time_zone": "time_zone",
    "whatsapp_opt_in.evidence": "opt_in_evidence",
    "evidence": "opt_in_evidence",
}


class SubscriberForm(forms.Form):
    """Add and edit. The fields are checked by services.clean_subscriber_data, not here."""

    phone = forms.CharField(
        label=gettext_lazy("Phone"),
        max_length=40,
        required=False,
        help_text=gettext_lazy("With +country code, or national format for the project's default country."),
    )
    external_id = forms.CharField(
        label=gettext_lazy("External id"),
        max_length=200,
        required=False,
        help_text=gettext_lazy("Your own system's id for this person."),
    )
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200, required=False)
    email = forms.CharField(label=gettext_lazy("Email"), max_length=254, required=False)
    language = forms.CharField(
        label=gettext_lazy("Language"),
        max_length=16,
        required=False,
        help_text=gettext_lazy("A code like de, en or pt_BR."),
    )
    country = forms.ChoiceField(
        label=gettext_lazy("Country"), choices=[("", "—"), *COUNTRY_CHOICES], required=False
    )
    time_zone = forms.ChoiceField(
        label=gettext_lazy("Time zone"), choices=[("", "—"), *TIME_ZONE_CHOICES], required=False
    )
    opt_in = forms.BooleanField(label=gettext_lazy("Opted in to WhatsApp marketing"), required=False)
    opt_in_evidence = forms.CharField(
        label=gettext_lazy("Opt-in evidence"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=gettext_lazy(
            "How and when the person agreed, e.g. “checkbox on the checkout page, 2026-03-01”."
        ),
    )

    def __init__(self, *args, phone_required: bool = True, offer_opt_in: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        # Countries in the reader's language and alphabet order ("Deutschland" among the D's).
        self.fields["country"].choices = [("", "—"), *country_choices()]
        self.fields["phone"].required = phone_required
        if not offer_opt_in:
            del self.fields["opt_in"]
            del self.fields["opt_in_evidence"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("opt_in") and not (cleaned.get("opt_in_evidence") or "").strip():
            self.add_error("opt_in_evidence", _("Opting in needs evidence: how and when the person agreed."))
        return cleaned

    def raw(self) -> dict[str, Any]:
        """The API-shaped dict that clean_subscriber_data expects."""
        data = self.cleaned_data
        raw: dict[str, Any] = {
            "phone": data["phone"].strip() or None,
            "external_id": data["external_id"].strip() or None,
            "name": data["name"],
            "email": data["email"],
            "language": data["language"],
            "country": data["country"],
            "timezone": data["time_zone"],
        }
        if data.get("opt_in"):
            raw["whatsapp_opt_in"] = {"evidence": data["opt_in_evidence"]}
        return raw

    def add_service_error(self, exc: InvalidInput) -> None:
        name = SERVICE_FIELDS.get(exc.field or "", exc.field)
        self.add_error(name if name in self.fields else None, exc.message)


class ConsentForm(forms.Form):
    # The panel's forms name their channel; a form without one is WhatsApp's (as it always was).
    channel = forms.ChoiceField(label=gettext_lazy("Channel"), choices=ConsentChannel.choices, required=False)
    state = forms.ChoiceField(
        label=gettext_lazy("State"),
        choices=[
            (ConsentState.OPTED_IN, gettext_lazy("Opt in")),
            (ConsentState.OPTED_OUT, gettext_lazy("Opt out")),
        ],
    )
    evidence = forms.CharField(
        label=gettext_lazy("Evidence"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("state") == ConsentState.OPTED_IN and not (cleaned.get("evidence") or "").strip():
            self.add_error("evidence", _("Opting in needs evidence: how and when the person agreed."))
        cleaned["channel"] = ConsentChannel(cleaned.get("channel") or ConsentChannel.WHATSAPP)
        return cleaned


class TagAddForm(forms.Form):
    name = forms.CharField(max_length=64, label=pgettext_lazy("noun", "Tag"))
    value = forms.CharField(label=gettext_lazy("Value"), max_length=2000, required=False)


class EraseForm(forms.Form):
    confirmation = forms.CharField(label=gettext_lazy("Confirmation"), max_length=200)

    def __init__(self, *args, expected: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.expected = expected

    def clean_confirmation(self) -> str:
        typed = self.cleaned_data["confirmation"].replace(" ", "")
        if typed != self.expected.replace(" ", ""):
            raise forms.ValidationError(
                _("Type %(expected)s exactly to confirm.") % {"expected": self.expected}
            )
        return typed


class TagDefinitionForm(forms.Form):
    """The tags page's "new tag" form; services.create_tag checks the name and the limits."""

    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=64,
        help_text=gettext_lazy("Letters, digits, spaces and _ . : / - (up to 64)."),
    )
    type = forms.ChoiceField(label=gettext_lazy("Type"), choices=TagType.choices)
    description = forms.CharField(label=gettext_lazy("Description"), max_length=255, required=False)

    def add_service_error(self, exc: InvalidInput) -> None:
        self.add_error(exc.field if exc.field in self.fields else "name", exc.message)


class UUIDListField(forms.Field):
    """Several UUIDs under one name (checkboxes); the view looks them up inside the project."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[str]:
        out = []
        for item in value or []:
            try:
                out.append(str(uuid.UUID(str(item))))
            except ValueError:
                raise forms.ValidationError(_("A selected subscriber id is malformed.")) from None
        return out


BULK_ACTIONS = [
    ("add_tag", gettext_lazy("Add tag")),
    ("opt_out", gettext_lazy("Opt out of WhatsApp")),
    ("delete", gettext_lazy("Delete (erase)")),
]


class BulkForm(forms.Form):
    action = forms.ChoiceField(choices=BULK_ACTIONS)
    ids = UUIDListField(required=False)
    all_matching = forms.BooleanField(required=False)
    tag_name = forms.CharField(max_length=64, required=False)
    tag_value = forms.CharField(max_length=2000, required=False)
    evidence = forms.CharField(max_length=2000, required=False)

    def clean(self):
        cleaned = super().clean()
        action = cleaned.get("action")
        if not cleaned.get("ids") and not cleaned.get("all_matching"):
            raise forms.ValidationError(_("Select subscribers first, or choose “all matching the filter”."))
        if action == "add_tag" and not (cleaned.get("tag_name") or "").strip():
            self.add_error("tag_name", _("Name the tag to add."))
        if action == "opt_out" and not (cleaned.get("evidence") or "").strip():
            self.add_error("evidence", _("Say why these subscribers are opted out, e.g. “asked by email”."))
        return cleaned


def tag_input(type_: str) -> dict[str, str]:
    """The HTML input for editing a tag of ``type_`` inline."""
    match type_:
        case TagType.INTEGER:
            return {"type": "number", "step": "1"}
        case TagType.DECIMAL:
            return {"type": "number", "step": "any"}
        case TagType.BOOLEAN:
            return {"type": "checkbox"}
        case TagType.DATE:
            return {"type": "date"}
        case TagType.DATETIME:
            return {"type": "datetime-local", "step": "1"}
    return {"type": "text"}


def tag_text_from_input(type_: str, post: dict, tz: zoneinfo.ZoneInfo) -> str:
    """Turn what the inline editor posted into the text that tags.parse_text reads.

    A checkbox sends nothing when unchecked, which means false, not "no value"; typed text
    ("no", "maybe": a list filter) is left to the parser, which refuses what is not yes or no.
    A datetime-local input has no offset: it is a wall-clock time in the project's zone.
    """
    value = (post.get("value") or "").strip()
    if type_ == TagType.BOOLEAN:
        return value or "false"
    if type_ == TagType.DATETIME and value and "T" in value and not value.endswith("Z") and "+" not in value:
        try:
            naive = datetime.fromisoformat(value)
        except ValueError:
            return value
        if timezone.is_naive(naive):
            return timezone.make_aware(naive, tz).isoformat()
    return value
