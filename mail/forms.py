"""Email panel forms: a template, a test send, the project's settings."""

from __future__ import annotations

from django import forms

from controlpanel.forms import SecretTextarea

from . import services
from .models import EmailBackend, EmailSettings, EmailTemplate, SmtpSecurity

CODE = {"class": "form-control font-monospace", "spellcheck": "false"}


class TemplateForm(forms.ModelForm):
    class Meta:
        model = EmailTemplate
        fields = ["name", "subject", "preheader", "html", "text", "marketing"]
        labels = {"html": "HTML body", "text": "Text body", "marketing": "Marketing email"}
        help_texts = {
            "subject": "Liquid: {{ subscriber.name }}, {{ tags.first_name | default: 'there' }}, "
            "{{ values.order_id }}, {{ event.total }}.",
            "preheader": "The line the inbox shows after the subject (hidden in the email).",
            "html": "Liquid with every output escaped. A marketing email needs "
            '<code>&lt;a href="{{ unsubscribe_url }}"&gt;Unsubscribe&lt;/a&gt;</code>.',
            "text": "Empty: a plain-text version of the HTML is sent.",
            "marketing": "Needs email opt-in, carries the unsubscribe link and headers, counts toward "
            "the frequency cap and waits for quiet hours. Off: transactional (receipts, notices).",
        }
        widgets = {
            "html": forms.Textarea(attrs={**CODE, "rows": 16}),
            "text": forms.Textarea(attrs={**CODE, "rows": 8}),
        }

    def clean(self):
        cleaned = super().clean()
        parts = {name: cleaned.get(name) or "" for name in services.PARTS}
        for field, message in services.template_errors(
            **parts, marketing=bool(cleaned.get("marketing"))
        ).items():
            if field not in self.errors:
                self.add_error(field, message)
        return cleaned


class TestSendForm(forms.Form):
    SUBSCRIBER, ADDRESS = "subscriber", "address"
    to = forms.ChoiceField(
        label="Send to",
        choices=[
            (SUBSCRIBER, "A subscriber: through the outbox, consent rules apply, tracked"),
            (ADDRESS, "Any address: sent at once, marked as a test, not tracked"),
        ],
        initial=SUBSCRIBER,
        widget=forms.RadioSelect,
    )
    subscriber = forms.CharField(
        label="Subscriber's email address",
        required=False,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    address = forms.EmailField(label="Any address", required=False)

    def clean(self):
        cleaned = super().clean()
        which = cleaned.get("to")
        if which == self.SUBSCRIBER and not cleaned.get("subscriber"):
            self.add_error("subscriber", "Enter the email address of a subscriber of this project.")
        if which == self.ADDRESS and not cleaned.get("address") and "address" not in self.errors:
            self.add_error("address", "Enter the address to send the test to.")
        return cleaned


class SettingsForm(forms.ModelForm):
    smtp_password = forms.CharField(
        label="SMTP password",
        required=False,
        max_length=1_000,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted, never shown again. Empty: keep the stored one.",
    )
    provider_settings = forms.CharField(
        label="Provider settings (JSON)",
        required=False,
        max_length=10_000,
        # Never rendered back: a rejected paste of API keys is not echoed into the page.
        widget=SecretTextarea(attrs={**CODE, "rows": 4, "autocomplete": "off"}),
        help_text='For an ESP, e.g. {"api_key": "...", "sender_domain": "mg.example.com"} (see '
        "docs/email.md for each provider's keys). Stored encrypted, never shown again. "
        "Empty: keep the stored ones.",
    )

    class Meta:
        model = EmailSettings
        fields = [
            "backend",
            "from_email",
            "from_name",
            "reply_to",
            "smtp_host",
            "smtp_port",
            "smtp_security",
            "smtp_username",
        ]
        labels = {
            "backend": "Send with",
            "from_email": "From address",
            "from_name": "From name",
            "reply_to": "Reply-To address",
            "smtp_host": "SMTP host",
            "smtp_port": "SMTP port",
            "smtp_security": "SMTP security",
            "smtp_username": "SMTP user name",
        }
        help_texts = {"from_email": "Empty: the server's DEFAULT_FROM_EMAIL."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["backend"].choices = EmailBackend.choices
        self.fields["smtp_security"].choices = SmtpSecurity.choices
        self.fields["smtp_port"].validators.append(_port)

    def settings_fields(self) -> dict:
        data = self.cleaned_data
        return {name: data[name] for name in (*self.Meta.fields, "smtp_password", "provider_settings")}


def _port(value: int) -> None:
    if not 1 <= value <= 65535:
        raise forms.ValidationError("A port is between 1 and 65535.")


class SettingsTestForm(forms.Form):
    to = forms.EmailField(label="Send a test email to")
