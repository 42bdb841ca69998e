"""Email panel forms: a template, a test send, the project's settings."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from controlpanel.forms import SecretTextarea

from . import services
from .models import EmailBackend, EmailSettings, EmailTemplate, SmtpSecurity

CODE = {"class": "form-control font-monospace", "spellcheck": "false"}


class TemplateForm(forms.ModelForm):
    class Meta:
        model = EmailTemplate
        fields = ["name", "subject", "preheader", "html", "text", "marketing"]
        labels = {"html": _("HTML body"), "text": _("Text body"), "marketing": _("Marketing email")}
        help_texts = {
            "subject": _(
                "Liquid: {{ subscriber.name }}, {{ tags.first_name | default: 'there' }}, "
                "{{ values.order_id }}, {{ event.total }}."
            ),
            "preheader": _("The line the inbox shows after the subject (hidden in the email)."),
            "html": _(
                "Liquid with every output escaped. A marketing email needs "
                '<code>&lt;a href="{{ unsubscribe_url }}"&gt;Unsubscribe&lt;/a&gt;</code>.'
            ),
            "text": _("Empty: a plain-text version of the HTML is sent."),
            "marketing": _(
                "Needs email opt-in, carries the unsubscribe link and headers, counts toward "
                "the frequency cap and waits for quiet hours. Off: transactional (receipts, notices)."
            ),
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
        label=_("Send to"),
        choices=[
            (SUBSCRIBER, _("A subscriber: through the outbox, consent rules apply, tracked")),
            (ADDRESS, _("Any address: sent at once, marked as a test, not tracked")),
        ],
        initial=SUBSCRIBER,
        widget=forms.RadioSelect,
    )
    subscriber = forms.CharField(
        label=_("Subscriber's email address"),
        required=False,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    address = forms.EmailField(label=_("Any address"), required=False)

    def clean(self):
        cleaned = super().clean()
        which = cleaned.get("to")
        if which == self.SUBSCRIBER and not cleaned.get("subscriber"):
            self.add_error("subscriber", gettext("Enter the email address of a subscriber of this project."))
        if which == self.ADDRESS and not cleaned.get("address") and "address" not in self.errors:
            self.add_error("address", gettext("Enter the address to send the test to."))
        return cleaned


class SettingsForm(forms.ModelForm):
    smtp_password = forms.CharField(
        label=_("SMTP password"),
        required=False,
        max_length=1_000,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Stored encrypted, never shown again. Empty: keep the stored one."),
    )
    provider_settings = forms.CharField(
        label=_("Provider settings (JSON)"),
        required=False,
        max_length=10_000,
        # Never rendered back: a rejected paste of API keys is not echoed into the page.
        widget=SecretTextarea(attrs={**CODE, "rows": 4, "autocomplete": "off"}),
        help_text=_(
            'For an ESP, e.g. {"api_key": "...", "sender_domain": "mg.example.com"} (see '
            "docs/email.md for each provider's keys). Stored encrypted, never shown again. "
            "Empty: keep the stored ones."
        ),
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
            "backend": _("Send with"),
            "from_email": _("From address"),
            "from_name": _("From name"),
            "reply_to": _("Reply-To address"),
            "smtp_host": _("SMTP host"),
            "smtp_port": _("SMTP port"),
            "smtp_security": _("SMTP security"),
            "smtp_username": _("SMTP user name"),
        }
        help_texts = {"from_email": _("Empty: the server's DEFAULT_FROM_EMAIL.")}

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
        raise forms.ValidationError(gettext("A port is between 1 and 65535."))


class SettingsTestForm(forms.Form):
    to = forms.EmailField(label=_("Send a test email to"))
