from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.functional import lazy
from django.utils.text import slugify
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from . import automatic_texts
from .endpoints import allowed_base_url
from .keywords import fold as fold_keyword
from .models import DEFAULT_OPT_IN_KEYWORDS, DEFAULT_OPT_OUT_KEYWORDS, META_GRAPH_URL, WhatsAppAccount


def _keywords_help(effect: str, shown: str) -> str:
    return gettext(
        "Comma-separated; a message that is exactly one of these %(effect)s. "
        "Empty: the defaults %(defaults)s."
    ) % {
        "effect": effect,
        "defaults": shown,
    }


_keywords_help_lazy = lazy(_keywords_help, str)


def _keywords_field(label: str, effect: str, defaults: list[str]) -> forms.CharField:
    """Keywords as comma-separated text; empty means the defaults, which the field names."""
    shown = ", ".join(defaults)
    return forms.CharField(
        label=label,
        required=False,
        help_text=_keywords_help_lazy(effect, shown),
        widget=forms.TextInput(attrs={"placeholder": shown}),
    )


class ConnectionForm(forms.ModelForm):
    """Connect or update a WhatsApp number. Secrets are write-only: empty keeps the stored value."""

    access_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        label=_("Access token"),
        help_text=_("A system-user token with whatsapp_business_messaging and whatsapp_business_management."),
    )
    app_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        label=_("App secret"),
        help_text=_("From the Meta app's Settings → Basic; it signs the webhooks."),
    )
    opt_out_keywords = _keywords_field(_("Opt-out keywords"), _("opts out"), DEFAULT_OPT_OUT_KEYWORDS)
    opt_in_keywords = _keywords_field(_("Opt-in keywords"), _("opts back in"), DEFAULT_OPT_IN_KEYWORDS)

    class Meta:
        model = WhatsAppAccount
        fields = [
            "waba_id",
            "phone_number_id",
            "display_phone_number",
            "graph_version",
            "base_url",
            "throughput_mps",
        ]
        labels = {
            "waba_id": _("WhatsApp Business Account id"),
            "phone_number_id": _("Phone number id"),
            "display_phone_number": _("Phone number"),
            "graph_version": _("Graph API version"),
            "base_url": _("Base URL"),
            "throughput_mps": _("Throughput (messages per second)"),
        }
        help_texts = {
            "waba_id": _("WABA id, in WhatsApp Manager → Account tools."),
            "display_phone_number": _("As people see it, e.g. +1 555 078 3881."),
            "base_url": _("Meta's Graph API, or the simulator's."),
            "throughput_mps": _("80 by default; Meta raises it up to 1,000 for some numbers."),
            "phone_number_id": _("Not the phone number itself: the id shown next to it in the API setup."),
            "graph_version": _("e.g. v23.0; Meta supports each version for about two years."),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        creating = self.instance.pk is None
        self.fields["access_token"].required = creating
        self.fields["app_secret"].required = creating
        if not creating:
            self.fields["access_token"].help_text = gettext("Stored encrypted; leave empty to keep it.")
            self.fields["app_secret"].help_text = gettext("Stored encrypted; leave empty to keep it.")
            self.initial["opt_out_keywords"] = ", ".join(self.instance.opt_out_keywords or [])
            self.initial["opt_in_keywords"] = ", ".join(self.instance.opt_in_keywords or [])

    def clean_base_url(self) -> str:
        url = self.cleaned_data["base_url"].strip().rstrip("/")
        if not allowed_base_url(url):
            if settings.SIMULATOR_ENABLED:
                text = gettext(
                    "Use Meta's Graph API (%(url)s) or this panel's simulator "
                    "(http://127.0.0.1:<port>/simulator/graph); other hosts need WHATSAPP_EXTRA_BASE_URLS."
                )
            else:
                text = gettext("Use Meta's Graph API (%(url)s); other hosts need WHATSAPP_EXTRA_BASE_URLS.")
            raise forms.ValidationError(text % {"url": META_GRAPH_URL})
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
                        self.add_error(secret, gettext("Enter it again: the endpoint or account changed."))
        out, back_in = cleaned.get("opt_out_keywords"), cleaned.get("opt_in_keywords")
        if out and back_in:
            # Opt-out is checked first: a word in both lists would never opt anyone back in.
            both = sorted({fold_keyword(w) for w in out} & {fold_keyword(w) for w in back_in})
            if both:
                self.add_error(
                    "opt_in_keywords",
                    gettext("%(words)s is also an opt-out keyword: it would opt people out.")
                    % {"words": ", ".join(w.upper() for w in both)},
                )
        return cleaned

    def clean_graph_version(self) -> str:
        version = self.cleaned_data["graph_version"].strip()
        if not version.startswith("v") or not version[1:].replace(".", "").isdigit():
            raise forms.ValidationError(gettext("Use the form v23.0."))
        return version

    def clean_throughput_mps(self) -> int:
        value = self.cleaned_data["throughput_mps"]
        if not 1 <= value <= 1000:
            raise forms.ValidationError(gettext("Meta allows 80 (default) up to 1,000 messages per second."))
        return value

    def clean_phone_number_id(self) -> str:
        value = self.cleaned_data["phone_number_id"].strip()
        if not value.isdigit():
            raise forms.ValidationError(gettext("The phone number id is digits only."))
        taken = WhatsAppAccount.objects.filter(phone_number_id=value).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(
                gettext("This phone number id is already connected (maybe in another project).")
            )
        return value

    @staticmethod
    def _words(text: str) -> list[str]:
        words = [w.strip().upper() for w in (text or "").split(",") if w.strip()]
        # Inbound texts are compared folded (whatsapp.keywords): a word of punctuation alone folds
        # to nothing and would never match, however often a subscriber sends it.
        unmatched = [w for w in words if not fold_keyword(w)]
        if unmatched:
            raise forms.ValidationError(
                gettext("%(words)s cannot match a message: a keyword needs a letter or a digit.")
                % {"words": ", ".join(unmatched)}
            )
        return words

    def clean_opt_out_keywords(self) -> list[str]:
        return self._words(self.cleaned_data.get("opt_out_keywords", ""))

    def clean_opt_in_keywords(self) -> list[str]:
        return self._words(self.cleaned_data.get("opt_in_keywords", ""))


class AutomaticTextsForm(forms.Form):
    """One language's automatic texts; ``language`` is asked only when adding a language."""

    language = forms.CharField(
        label=_("Language"),
        max_length=16,
        help_text=_("A language code as in the subscribers' Language tag, e.g. fr or pt_BR."),
    )
    opt_out_confirmation = forms.CharField(
        label=_("Opt-out confirmation"),
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Sent after an opt-out keyword or stop button; empty sends nothing."),
    )
    opt_in_confirmation = forms.CharField(
        label=_("Opt-in confirmation"),
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Sent after an opt-in keyword; empty sends nothing."),
    )

    def __init__(self, *args, adding: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        # One form per language on the page: ids must differ.
        language = self.data.get("language") or self.initial.get("language") or ""
        self.auto_id = "id_new_%s" if adding else f"id_{slugify(language)}_%s"
        if not adding:
            self.fields["language"].widget = forms.HiddenInput()

    def clean_language(self) -> str:
        try:
            return automatic_texts.clean_language(self.cleaned_data["language"])
        except ValueError:
            raise forms.ValidationError(gettext("Use a language code such as fr, pt or pt_BR.")) from None

    def texts(self) -> dict[str, str]:
        return {name: self.cleaned_data[name] for name in ("opt_out_confirmation", "opt_in_confirmation")}
