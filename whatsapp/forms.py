from __future__ import annotations

from django import forms
from django.conf import settings

from .endpoints import allowed_base_url
from .models import DEFAULT_OPT_IN_KEYWORDS, DEFAULT_OPT_OUT_KEYWORDS, META_GRAPH_URL, WhatsAppAccount


def _keywords_field(label: str, effect: str, defaults: list[str]) -> forms.CharField:
    """Keywords as comma-separated text; empty means the defaults, which the field names."""
    shown = ", ".join(defaults)
    return forms.CharField(
        label=label,
        required=False,
        help_text=f"Comma-separated; a message that is exactly one of these {effect}. "
        f"Empty: the defaults {shown}.",
        widget=forms.TextInput(attrs={"placeholder": shown}),
    )


class ConnectionForm(forms.ModelForm):
    """Connect or update a WhatsApp number. Secrets are write-only: empty keeps the stored value."""

    access_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="A system-user token with whatsapp_business_messaging and whatsapp_business_management.",
    )
    app_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="From the Meta app's Settings → Basic; it signs the webhooks.",
    )
    opt_out_keywords = _keywords_field("Opt-out keywords", "opts out", DEFAULT_OPT_OUT_KEYWORDS)
    opt_in_keywords = _keywords_field("Opt-in keywords", "opts back in", DEFAULT_OPT_IN_KEYWORDS)

    class Meta:
        model = WhatsAppAccount
        fields = [
            "waba_id",
            "phone_number_id",
            "display_phone_number",
            "graph_version",
            "base_url",
            "throughput_mps",
            "opt_out_confirmation",
            "opt_in_confirmation",
        ]
        labels = {
            "waba_id": "WhatsApp Business Account id",
            "phone_number_id": "Phone number id",
            "display_phone_number": "Phone number",
            "graph_version": "Graph API version",
            "base_url": "Base URL",
            "throughput_mps": "Throughput (messages per second)",
            "opt_out_confirmation": "Opt-out confirmation",
            "opt_in_confirmation": "Opt-in confirmation",
        }
        help_texts = {
            "waba_id": "WABA id, in WhatsApp Manager → Account tools.",
            "display_phone_number": "As people see it, e.g. +1 555 078 3881.",
            "base_url": "Meta's Graph API, or the simulator's.",
            "throughput_mps": "80 by default; Meta raises it up to 1,000 for some numbers.",
            "phone_number_id": "Not the phone number itself: the id shown next to it in the API setup.",
            "graph_version": "e.g. v23.0; Meta supports each version for about two years.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        creating = self.instance.pk is None
        self.fields["access_token"].required = creating
        self.fields["app_secret"].required = creating
        if not creating:
            self.fields["access_token"].help_text = "Stored encrypted; leave empty to keep it."
            self.fields["app_secret"].help_text = "Stored encrypted; leave empty to keep it."
            self.initial["opt_out_keywords"] = ", ".join(self.instance.opt_out_keywords or [])
            self.initial["opt_in_keywords"] = ", ".join(self.instance.opt_in_keywords or [])

    def clean_base_url(self) -> str:
        url = self.cleaned_data["base_url"].strip().rstrip("/")
        if not allowed_base_url(url):
            raise forms.ValidationError(
                f"Use Meta's Graph API ({META_GRAPH_URL})"
                + (
                    " or this panel's simulator (http://127.0.0.1:<port>/simulator/graph)"
                    if settings.SIMULATOR_ENABLED
                    else ""
                )
                + "; other hosts need WHATSAPP_EXTRA_BASE_URLS."
            )
        return url

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is not None:
            moved = [
                name
                for name in ("base_url", "phone_number_id", "waba_id")
                if name in cleaned and cleaned[name] != getattr(self.instance, name)
            ]
            # The stored token must not follow the connection to another endpoint or account.
            if moved:
                for secret in ("access_token", "app_secret"):
                    if not cleaned.get(secret):
                        self.add_error(secret, "Enter it again: the endpoint or account changed.")
        return cleaned

    def clean_graph_version(self) -> str:
        version = self.cleaned_data["graph_version"].strip()
        if not version.startswith("v") or not version[1:].replace(".", "").isdigit():
            raise forms.ValidationError("Use the form v23.0.")
        return version

    def clean_throughput_mps(self) -> int:
        value = self.cleaned_data["throughput_mps"]
        if not 1 <= value <= 1000:
            raise forms.ValidationError("Meta allows 80 (default) up to 1,000 messages per second.")
        return value

    def clean_phone_number_id(self) -> str:
        value = self.cleaned_data["phone_number_id"].strip()
        if not value.isdigit():
            raise forms.ValidationError("The phone number id is digits only.")
        taken = WhatsAppAccount.objects.filter(phone_number_id=value).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(
                "This phone number id is already connected (maybe in another project)."
            )
        return value

    @staticmethod
    def _words(text: str) -> list[str]:
        return [w.strip().upper() for w in (text or "").split(",") if w.strip()]

    def clean_opt_out_keywords(self) -> list[str]:
        return self._words(self.cleaned_data.get("opt_out_keywords", ""))

    def clean_opt_in_keywords(self) -> list[str]:
        return self._words(self.cleaned_data.get("opt_in_keywords", ""))
