"""The "new template" form: HTML input in, a templates_lint.Draft out.

Field checks live in templates_lint (so the live preview and the submit show the same words);
this module only reads the request. Buttons and body samples are repeated inputs whose number
depends on the text, so they are read from the raw query dict rather than declared as fields.
"""

from __future__ import annotations

from django import forms
from django.http import QueryDict
from django.utils.functional import lazy
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from . import templates_lint as lint

# Meta's template languages (WhatsApp Manager's list), code -> name.
LANGUAGES = [
    ("af", "Afrikaans"), ("sq", "Albanian"), ("ar", "Arabic"), ("az", "Azerbaijani"), ("bn", "Bengali"),
    ("bg", "Bulgarian"), ("ca", "Catalan"), ("zh_CN", "Chinese (China)"), ("zh_HK", "Chinese (Hong Kong)"),
    ("zh_TW", "Chinese (Taiwan)"), ("hr", "Croatian"), ("cs", "Czech"), ("da", "Danish"), ("nl", "Dutch"),
    ("en", "English"), ("en_GB", "English (UK)"), ("en_US", "English (US)"), ("et", "Estonian"),
    ("fil", "Filipino"), ("fi", "Finnish"), ("fr", "French"), ("ka", "Georgian"), ("de", "German"),
    ("el", "Greek"), ("gu", "Gujarati"), ("ha", "Hausa"), ("he", "Hebrew"), ("hi", "Hindi"),
    ("hu", "Hungarian"), ("id", "Indonesian"), ("ga", "Irish"), ("it", "Italian"), ("ja", "Japanese"),
    ("kn", "Kannada"), ("kk", "Kazakh"), ("rw_RW", "Kinyarwanda"), ("ko", "Korean"),
    ("ky_KG", "Kyrgyz"), ("lo", "Lao"), ("lv", "Latvian"), ("lt", "Lithuanian"), ("mk", "Macedonian"),
    ("ms", "Malay"), ("ml", "Malayalam"), ("mr", "Marathi"), ("nb", "Norwegian"), ("fa", "Persian"),
    ("pl", "Polish"), ("pt_BR", "Portuguese (Brazil)"), ("pt_PT", "Portuguese (Portugal)"),
    ("pa", "Punjabi"), ("ro", "Romanian"), ("ru", "Russian"), ("sr", "Serbian"), ("sk", "Slovak"),
    ("sl", "Slovenian"), ("es", "Spanish"), ("es_AR", "Spanish (Argentina)"), ("es_ES", "Spanish (Spain)"),
    ("es_MX", "Spanish (Mexico)"), ("sw", "Swahili"), ("sv", "Swedish"), ("ta", "Tamil"), ("te", "Telugu"),
    ("th", "Thai"), ("tr", "Turkish"), ("uk", "Ukrainian"), ("ur", "Urdu"), ("uz", "Uzbek"),
    ("vi", "Vietnamese"), ("zu", "Zulu"),
]  # fmt: skip


def language_choices() -> list[tuple[str, str]]:
    """Meta's languages named in the panel's language (babel), English names as they are."""
    current = (get_language() or "en").split("-")[0]
    if current == "en":
        return LANGUAGES
    from babel import Locale, UnknownLocaleError

    try:
        locale = Locale.parse(current)
    except (UnknownLocaleError, ValueError):
        return LANGUAGES
    named = []
    for code, name in LANGUAGES:
        try:
            shown = Locale.parse(code).get_display_name(locale) or name
        except (UnknownLocaleError, ValueError):
            shown = name
        named.append((code, shown[:1].upper() + shown[1:]))
    return named


CATEGORY_CHOICES = [
    (lint.MARKETING, _("Marketing: offers, news, invitations")),
    (lint.UTILITY, _("Utility: about an order, booking or account")),
    (lint.AUTHENTICATION, _("Authentication: one-time passwords")),
]
FORMAT_CHOICES = [(lint.POSITIONAL, _("Numbered {{1}}")), (lint.NAMED, _("Named {{first_name}}"))]
HEADER_CHOICES = [
    ("", _("None")),
    ("TEXT", _("Text")),
    ("IMAGE", _("Image")),
    ("VIDEO", _("Video")),
    ("DOCUMENT", _("Document")),
]
BUTTON_CHOICES = [
    ("QUICK_REPLY", _("Quick reply")),
    ("URL", _("Link")),
    ("PHONE_NUMBER", _("Call")),
    ("COPY_CODE", _("Copy code")),
]
OTP_CHOICES = [("COPY_CODE", _("Copy code")), ("ONE_TAP", _("One-tap autofill (Android)"))]
BUTTON_INPUTS = ("type", "text", "url", "example", "phone_number")
# A translated text with named values, translated when shown (form classes are built at import).
_format = lazy(lambda text, values: str(text) % values, str)
EXAMPLE_PREFIX = "example:"


class TemplateForm(forms.Form):
    """Everything is optional here: templates_lint says what is missing, next to each field."""

    account = forms.ChoiceField(label=_("WhatsApp number"), required=False)
    name = forms.CharField(
        label=_("Name"),
        required=False,
        max_length=lint.MAX_NAME,
        help_text=_("Lowercase letters, digits and underscores, e.g. order_shipped."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    language = forms.ChoiceField(label=_("Language"), choices=LANGUAGES, initial="en_US", required=False)
    category = forms.ChoiceField(
        label=_("Category"), choices=CATEGORY_CHOICES, initial=lint.MARKETING, required=False
    )
    parameter_format = forms.ChoiceField(
        label=_("Parameters"), choices=FORMAT_CHOICES, initial=lint.POSITIONAL, required=False
    )
    header_format = forms.ChoiceField(label=_("Header"), choices=HEADER_CHOICES, required=False)
    header_text = forms.CharField(
        label=_("Header text"),
        required=False,
        help_text=_format(_("Up to %(limit)s characters and one parameter."), {"limit": lint.MAX_HEADER}),
    )
    header_example = forms.CharField(label=_("Sample for the header's parameter"), required=False)
    header_media = forms.CharField(
        label=_("Sample file"),
        required=False,
        help_text=_("An upload handle from Meta's resumable upload (4::…) or a link to the file."),
    )
    body = forms.CharField(
        label=_("Body"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_format(
            _("Up to %(limit)s characters. *bold*, _italic_, ~strikethrough~ work as in WhatsApp."),
            {"limit": lint.MAX_BODY},
        ),
    )
    footer = forms.CharField(
        label=_("Footer"),
        required=False,
        help_text=_format(_("Optional, up to %(limit)s characters."), {"limit": lint.MAX_FOOTER}),
    )
    otp_type = forms.ChoiceField(label=_("Code button"), choices=OTP_CHOICES, required=False)
    otp_button_text = forms.CharField(
        label=_("Button label"), required=False, help_text=_("Optional; Meta's default is “Copy code”.")
    )
    autofill_text = forms.CharField(
        label=_("Autofill label"), required=False, help_text=_("Optional; Meta's default is “Autofill”.")
    )
    package_name = forms.CharField(label=_("Android package name"), required=False)
    signature_hash = forms.CharField(label=_("App signature hash"), required=False)
    add_security_recommendation = forms.BooleanField(
        label=_("Add “For your security, do not share this code.”"), required=False, initial=True
    )
    code_expiration_minutes = forms.IntegerField(
        label=_("Code expires after (minutes)"),
        required=False,
        help_text=_format(
            _("Optional, 1 to %(limit)s; adds “This code expires in N minutes.”"),
            {"limit": lint.MAX_EXPIRATION_MINUTES},
        ),
    )

    def __init__(self, data=None, *, accounts=(), **kwargs):
        super().__init__(data, **kwargs)
        self.accounts = list(accounts)
        self.fields["account"].choices = [(str(a.public_id), str(a)) for a in self.accounts]
        if len(self.accounts) < 2:
            del self.fields["account"]
        self.fields["language"].choices = language_choices()

    def mark_problems(self, problems: dict) -> None:
        """Tabler classes on every widget, marked invalid where a check found an error."""
        for name, form_field in self.fields.items():
            widget = form_field.widget
            if isinstance(widget, forms.CheckboxInput):
                css = "form-check-input"
            elif isinstance(widget, forms.Select):
                css = "form-select"
            else:
                css = "form-control"
            if any(p.is_error for p in problems.get(name, [])):
                css += " is-invalid"
            elif problems.get(name):
                css += " is-warning"
            widget.attrs["class"] = css

    def selected_account(self):
        if len(self.accounts) < 2:
            return self.accounts[0] if self.accounts else None
        chosen = self.cleaned_data.get("account")
        return next((a for a in self.accounts if str(a.public_id) == chosen), None)

    def draft(self) -> lint.Draft:
        """The draft as typed, after is_valid(). Inputs that belong to another choice
        (a URL on a quick reply, header text on an image header) are left out."""
        data = self.cleaned_data
        header_format = data.get("header_format") or ""
        body = data.get("body") or ""
        examples = self.examples()
        return lint.Draft(
            name=(data.get("name") or "").strip(),
            language=data.get("language") or "",
            category=data.get("category") or "",
            parameter_format=data.get("parameter_format") or lint.POSITIONAL,
            header_format=header_format,
            header_text=(data.get("header_text") or "").strip() if header_format == "TEXT" else "",
            header_example=(data.get("header_example") or "") if header_format == "TEXT" else "",
            header_media=(data.get("header_media") or "") if header_format in lint.MEDIA_FORMATS else "",
            body=body.strip(),
            examples={name: examples.get(name, "") for name in lint.parameters(body)},
            footer=(data.get("footer") or "").strip(),
            buttons=self.buttons(),
            otp_type=(data.get("otp_type") or "") if data.get("category") == lint.AUTHENTICATION else "",
            otp_button_text=data.get("otp_button_text") or "",
            autofill_text=data.get("autofill_text") or "",
            package_name=data.get("package_name") or "",
            signature_hash=data.get("signature_hash") or "",
            add_security_recommendation=bool(data.get("add_security_recommendation")),
            code_expiration_minutes=data.get("code_expiration_minutes"),
        )

    # --- repeated inputs ---------------------------------------------------------------------
    def _data(self) -> QueryDict:
        return self.data if isinstance(self.data, QueryDict) else QueryDict()

    def examples(self) -> dict[str, str]:
        return {
            key.removeprefix(EXAMPLE_PREFIX): value
            for key, value in self._data().items()
            if key.startswith(EXAMPLE_PREFIX)
        }

    def button_rows(self) -> list[dict[str, str]]:
        """The button inputs as typed, one dict per row (rows are parallel lists of inputs)."""
        data = self._data()
        columns = {name: data.getlist(f"button_{name}") for name in BUTTON_INPUTS}
        rows = []
        for index, kind in enumerate(columns["type"]):
            row = {name: (values[index] if index < len(values) else "") for name, values in columns.items()}
            row["type"] = kind
            rows.append(row)
        return rows

    def buttons(self) -> list[lint.Button]:
        buttons = []
        for row in self.button_rows():
            kind = row["type"]
            buttons.append(
                lint.Button(
                    type=kind,
                    text=row["text"].strip() if kind != "COPY_CODE" else "",
                    url=row["url"].strip() if kind == "URL" else "",
                    example=row["example"].strip() if kind in ("URL", "COPY_CODE") else "",
                    phone_number=row["phone_number"].strip() if kind == "PHONE_NUMBER" else "",
                )
            )
        return buttons
