"""HTML input of the keyword campaign shortcut and the dry run page; choices scoped to the project."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.bindings import MEDIA_PARAMETERS
from controlpanel.models import Project
from subscribers.errors import InvalidInput
from subscribers.events import validate_event_name
from whatsapp import templates_lint as lint
from whatsapp.models import MessageTemplate, TemplateStatus

from .keyword_campaigns import (
    MATCHES,
    MAX_REPLY_LENGTH,
    FollowUp,
    KeywordCampaign,
    ShortcutError,
    parse_keywords,
)

BINDING_PREFIX = "bindings."
# The instant reply per language (the subscriber's Language tag picks; empty: the instant reply).
REPLY_LANGUAGES = {"de": gettext_lazy("Reply in German"), "en": gettext_lazy("Reply in English")}


class KeywordCampaignForm(forms.Form):
    name = forms.CharField(max_length=200, label=gettext_lazy("Name"))
    keywords = forms.CharField(
        max_length=2000,
        label=gettext_lazy("Keywords"),
        help_text=gettext_lazy(
            "Comma separated, e.g. PROMO, Aktion. Case, accents and punctuation around them do not "
            "count: “promo”, “Promo!” and “ PROMO” all match."
        ),
    )
    match = forms.ChoiceField(
        choices=[(key, label) for key, (_op, label) in MATCHES.items()],
        initial="exact",
        label=gettext_lazy("Match"),
    )
    reply = forms.CharField(
        max_length=MAX_REPLY_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        label=gettext_lazy("Instant reply"),
        help_text=gettext_lazy(
            "Sent at once as a text: the inbound message opened the 24-hour window. Liquid works, "
            'e.g. {{ subscriber.name | default: "du" }} or {{ event.text }}.'
        ),
    )
    reply_de = forms.CharField(
        max_length=MAX_REPLY_LENGTH,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label=REPLY_LANGUAGES["de"],
        help_text=gettext_lazy(
            "For subscribers whose Language tag is German (de, de_AT …); empty: the instant reply."
        ),
    )
    reply_en = forms.CharField(
        max_length=MAX_REPLY_LENGTH,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label=REPLY_LANGUAGES["en"],
        help_text=gettext_lazy(
            "For subscribers whose Language tag is English (en, en_GB …); empty: the instant reply."
        ),
    )
    template = forms.ChoiceField(
        required=False,
        label=gettext_lazy("Follow-up template (optional)"),
        help_text=gettext_lazy("An approved template of this project, sent after the delay."),
    )
    delay_amount = forms.IntegerField(
        min_value=1, max_value=365, initial=1, required=False, label=gettext_lazy("After")
    )
    delay_unit = forms.ChoiceField(
        choices=[
            ("minutes", gettext_lazy("minutes")),
            ("hours", gettext_lazy("hours")),
            ("days", gettext_lazy("days")),
        ],
        initial="hours",
        required=False,
        label=gettext_lazy("Unit"),
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.project = project
        self.templates = {
            f"{t.name}|{t.language}": t
            for t in MessageTemplate.objects.for_project(project)
            .filter(status=TemplateStatus.APPROVED)
            .order_by("name", "language")
        }
        self.fields["template"].choices = [("", _("No follow-up"))] + [
            (key, f"{t.name} ({t.language}) · {t.category.lower()}") for key, t in self.templates.items()
        ]

    @property
    def chosen_template(self) -> MessageTemplate | None:
        key = self.data.get("template") if self.is_bound else self.initial.get("template")
        return self.templates.get(key or "")

    def placeholders(self) -> list[dict[str, str]]:
        """One input per text placeholder of the chosen template, with the value typed so far."""
        template = self.chosen_template
        if template is None:
            return []
        found = []
        for parameter in lint.template_parameters(
            template.components or [], category=template.category, parameter_format=template.parameter_format
        ):
            if parameter.component == "header" and parameter.name in (*MEDIA_PARAMETERS, "location"):
                continue
            key = f"{parameter.component}.{parameter.name}"
            found.append(
                {
                    "key": key,
                    "input": BINDING_PREFIX + key,
                    "label": f"{parameter.label} {{{{{parameter.name}}}}}",
                    "example": parameter.example,
                    "value": str(self.data.get(BINDING_PREFIX + key, "")) if self.is_bound else "",
                    "errors": self.binding_errors.get(key, []),
                }
            )
        return found

    @property
    def binding_errors(self) -> dict[str, list[str]]:
        return getattr(self, "_binding_errors", {})

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "keywords" in data and "match" in data:
            try:
                data["keyword_list"] = parse_keywords(data["keywords"], match=data["match"])
            except ShortcutError as exc:
                for message in exc.errors["keywords"]:
                    self.add_error("keywords", message)
        if data.get("template") and data.get("delay_amount") is None:
            self.add_error("delay_amount", _("Say how long after the reply the template is sent."))
        missing = {}
        for item in self.placeholders():
            if not item["value"].strip():
                missing[item["key"]] = [
                    _("Bind %(label)s, e.g. %(example)s.")
                    % {"label": item["label"], "example": item["example"] or _("a fixed text")}
                ]
        if missing:
            self._binding_errors = missing
            self.add_error(None, _("Fill in every placeholder of the follow-up template."))
        return data

    def to_spec(self) -> KeywordCampaign:
        data = self.cleaned_data
        template = self.chosen_template
        follow_up = None
        if template is not None:
            follow_up = FollowUp(
                template=template.name,
                language=template.language,
                bindings={item["key"]: item["value"] for item in self.placeholders()},
                delay_amount=data["delay_amount"],
                delay_unit=data.get("delay_unit") or "hours",
            )
        return KeywordCampaign(
            name=data["name"].strip(),
            keywords=tuple(data["keyword_list"]),
            match=data["match"],
            reply=data["reply"],
            follow_up=follow_up,
            replies={code: data.get(f"reply_{code}") or "" for code in REPLY_LANGUAGES},
        )


def parse_attributes(text: str) -> dict[str, str]:
    """``key=value`` lines -> attributes; ValidationError naming each bad line."""
    attributes: dict[str, str] = {}
    problems = []
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            problems.append(_("Line %(number)s: write name=value, e.g. text=PROMO.") % {"number": number})
            continue
        attributes[key.strip()] = value.strip()
    if len(attributes) > 50:
        problems.append(_("At most 50 attributes."))
    if problems:
        raise forms.ValidationError(problems)
    return attributes


def _event_name(name: str) -> str:
    try:
        return validate_event_name(name)
    except InvalidInput as exc:
        raise forms.ValidationError(exc.message) from None


class StartDryRunForm(forms.Form):
    """Who walks the journey, on which definition, entering with which event (a keyword journey's
    reply needs the inbound message that opened the window)."""

    subscriber = forms.UUIDField(
        error_messages={"required": gettext_lazy("Pick a subscriber of this project to run the journey for.")}
    )
    source = forms.ChoiceField(
        choices=[("draft", gettext_lazy("the saved draft")), ("active", gettext_lazy("the active version"))],
        required=False,
    )
    event_name = forms.CharField(max_length=64, required=False)
    event_attributes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_event_name(self) -> str:
        name = self.cleaned_data.get("event_name", "").strip()
        return _event_name(name) if name else ""

    def clean_event_attributes(self) -> dict[str, str]:
        return parse_attributes(self.cleaned_data.get("event_attributes") or "")

    @property
    def event(self) -> dict[str, object] | None:
        name = self.cleaned_data.get("event_name")
        return {"name": name, "attributes": self.cleaned_data.get("event_attributes") or {}} if name else None


class FireEventForm(forms.Form):
    """An event for a dry run: a name and attributes, one ``key=value`` per line."""

    run = forms.UUIDField(widget=forms.HiddenInput)
    name = forms.CharField(max_length=64, initial="WhatsAppReceived", label=gettext_lazy("Name"))
    attributes = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        label=gettext_lazy("Attributes"),
        help_text=gettext_lazy("One attribute per line: text=PROMO, button_text=Lieferung."),
    )

    def clean_name(self) -> str:
        return _event_name(self.cleaned_data["name"])

    def clean_attributes(self) -> dict[str, str]:
        return parse_attributes(self.cleaned_data.get("attributes") or "")
