"""Input of the phone pages."""

from __future__ import annotations

import phonenumbers
from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .handsets import KINDS

ACTIONS = ["text", "button", "button_reply", "list_reply", "reaction", "kind", "stop", "resume"]


class HandsetForm(forms.Form):
    phone = forms.CharField(
        label=gettext_lazy("Phone number"),
        max_length=32,
        help_text=gettext_lazy("International format, e.g. +49 151 12345678"),
    )
    name = forms.CharField(label=gettext_lazy("Profile name"), max_length=100, required=False)

    def clean_phone(self) -> str:
        raw = self.cleaned_data["phone"].strip()
        try:
            number = phonenumbers.parse(raw if raw.startswith("+") else "+" + raw)
        except phonenumbers.NumberParseException:
            raise forms.ValidationError(
                _("Enter the number with its country code, e.g. +49 151 12345678.")
            ) from None
        if not phonenumbers.is_possible_number(number):
            raise forms.ValidationError(_("This is not a possible phone number."))
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


class InboundForm(forms.Form):
    action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS])
    kind = forms.ChoiceField(choices=list(KINDS.items()), required=False)
    text = forms.CharField(max_length=4096, required=False, strip=False)
    payload = forms.CharField(max_length=256, required=False)
    title = forms.CharField(max_length=100, required=False)
    description = forms.CharField(max_length=100, required=False)
    context = forms.CharField(max_length=200, required=False)
    emoji = forms.CharField(max_length=16, required=False)

    def clean(self) -> dict:
        data = super().clean()
        action = data.get("action")
        if action == "text" and not (data.get("text") or "").strip():
            raise forms.ValidationError(_("Type a message first."))
        if action == "kind" and not data.get("kind"):
            raise forms.ValidationError(_("Choose what to send."))
        if action in ("button", "button_reply", "list_reply") and not (
            data.get("payload") or data.get("text")
        ):
            raise forms.ValidationError(_("The button has no payload."))
        if action in ("button", "button_reply", "list_reply", "reaction") and not data.get("context"):
            raise forms.ValidationError(_("Which message was tapped is missing."))
        return data
