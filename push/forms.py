"""Push template and settings forms: Liquid checked per field, data as rows or a JSON object."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.utils.formats import number_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from controlpanel.forms import SecretTextarea
from controlpanel.models import Project
from subscribers.models import Subscriber

from . import services
from .models import PushMode, PushTemplate

DATA_HELP = _(
    "Key-value pairs for the app, one <code>key=value</code> per line, or a JSON object of strings. "
    "Values may use Liquid. <code>link</code> and <code>message_id</code> are added for you."
)
MAX_DATA_KEYS = 50
# FCM refuses a message whose data is larger than 4 KB; a template's data is Liquid, which rarely
# renders much longer than it is written.
MAX_DATA_BYTES = 4096


def parse_data(raw: str) -> dict[str, str]:
    """``key=value`` lines or a JSON object of strings; ``ValueError`` naming the bad line or key."""
    raw = raw.strip()
    if not raw:
        return {}
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ValueError(gettext("This is not a JSON object: %(error)s.") % {"error": exc}) from None
        except RecursionError:
            raise ValueError(
                gettext("This is not a JSON object of strings: it is nested too deeply.")
            ) from None
        if not isinstance(data, dict):
            raise ValueError(gettext("Give a JSON object of strings."))
        for key, value in data.items():
            if not isinstance(value, str):
                raise ValueError(
                    gettext("The value of “%(key)s” must be a string (FCM data values are strings).")
                    % {"key": key}
                )
    else:
        data = {}
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(gettext("Line %(number)s has no “=”: write key=value.") % {"number": number})
            key = key.strip()
            if key in data:
                raise ValueError(
                    gettext("Line %(number)s repeats the key “%(key)s”.") % {"number": number, "key": key}
                )
            data[key] = value.strip()
    if len(data) > MAX_DATA_KEYS:
        raise ValueError(gettext("At most %(count)s data keys.") % {"count": MAX_DATA_KEYS})
    size = sum(
        len(key.encode("utf-8", "replace")) + len(value.encode("utf-8", "replace"))
        for key, value in data.items()
    )
    if size > MAX_DATA_BYTES:
        raise ValueError(
            gettext("The data has %(size)s bytes; Firebase takes at most %(limit)s.")
            % {
                "size": number_format(size, force_grouping=True),
                "limit": number_format(MAX_DATA_BYTES, force_grouping=True),
            }
        )
    for key, value in data.items():
        problem = services.data_key_problem(key) or services.liquid_problem(value)
        if problem:
            raise ValueError(f"{key}: {problem}")
    return data


def format_data(data: dict[str, str]) -> str:
    return "\n".join(f"{key}={value}" for key, value in data.items())


class PushTemplateForm(forms.ModelForm):
    image_url = forms.CharField(
        label=_("Image URL"),
        required=False,
        max_length=2000,
        help_text=_("https only; shown large on Android and iOS. May use Liquid."),
    )
    data_text = forms.CharField(
        label=_("Data"), required=False, widget=forms.Textarea(attrs={"rows": 4}), help_text=DATA_HELP
    )

    class Meta:
        model = PushTemplate
        fields = ["name", "title", "body", "image_url", "link", "data_text", "marketing"]
        widgets = {"body": forms.Textarea(attrs={"rows": 3})}
        help_texts = {
            "title": _(
                "Liquid: {{ subscriber.name }}, {{ tags.city }}, {{ values.order_id }}, {{ event.amount }}."
            ),
            "link": _(
                "Opened on tap: a deep link of your app (myapp://orders/{{ values.order_id }}) "
                "or an https URL."
            ),
            "marketing": _(
                "Marketing pushes obey the frequency cap and quiet hours; transactional ones do not."
            ),
        }

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["title"].required = False
        self.fields["body"].required = False
        if self.instance.pk and not self.is_bound:
            self.initial["data_text"] = format_data(self.instance.data or {})

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        taken = PushTemplate.objects.for_project(self.project).filter(name=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(gettext("Another push template has this name."))
        return name

    def clean_data_text(self) -> str:
        try:
            self.cleaned_data["data"] = parse_data(self.cleaned_data["data_text"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        return self.cleaned_data["data_text"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for field in services.FIELDS:
            problem = services.liquid_problem(cleaned.get(field) or "")
            if problem:
                self.add_error(field, problem)
        image = (cleaned.get("image_url") or "").strip()
        if image and not image.startswith(("https://", "{{", "{%")):
            self.add_error("image_url", gettext("The image URL must start with https://."))
        link_problem = services.link_problem(cleaned.get("link") or "")
        if link_problem and "link" not in self.errors:
            self.add_error("link", link_problem)
        if not (cleaned.get("title") or "").strip() and not (cleaned.get("body") or "").strip():
            self.add_error("body", gettext("Write a title or a body."))
        return cleaned

    def save(self, commit: bool = True) -> PushTemplate:
        template = super().save(commit=False)
        template.project = self.project
        template.data = self.cleaned_data.get("data", {})
        if commit:
            template.save()
        return template


def recipients_with_devices(project: Project):
    """Subscribers a test push can reach: those with an active device."""
    return (
        Subscriber.objects.for_project(project)
        .filter(devices__removed_at__isnull=True, devices__push_enabled=True)
        .distinct()
        .order_by("name", "id")
    )


def recipient_label(subscriber: Subscriber) -> str:
    parts = (subscriber.name, subscriber.phone, subscriber.email, subscriber.external_id)
    return " · ".join(part for part in parts if part) or str(subscriber.public_id)


class TestSendForm(forms.Form):
    # Validated against every reachable subscriber of the project (another project's: "not a
    # choice"); the select offers the first CHOICES of them.
    subscriber = forms.ModelChoiceField(
        queryset=Subscriber.objects.none(), to_field_name="public_id", label=_("Send a test to")
    )
    CHOICES = 200

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["subscriber"]
        field.queryset = recipients_with_devices(project)
        field.choices = [("", "—")] + [
            (str(s.public_id), recipient_label(s)) for s in field.queryset[: self.CHOICES]
        ]


class PushSettingsForm(forms.Form):
    mode = forms.ChoiceField(label=_("Mode"), choices=PushMode.choices, widget=forms.RadioSelect)
    service_account_file = forms.FileField(
        label=_("Service-account key (JSON file)"),
        required=False,
        help_text=_("Firebase console → Project settings → Service accounts → Generate new private key."),
    )
    service_account_text = forms.CharField(
        label=_("… or paste it"),
        required=False,
        widget=SecretTextarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
        help_text=_(
            "Stored encrypted; afterwards only its email and project are shown. Leave empty to "
            "keep the stored key."
        ),
    )
    fcm_project_id = forms.CharField(
        label=_("Project ID in simulator mode"),
        required=False,
        max_length=200,
        help_text=_(
            "The simulator's FCM project ID (default “simulator”). In Firebase mode the key's "
            "project is used."
        ),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        upload = cleaned.get("service_account_file")
        raw = cleaned.get("service_account_text") or ""
        if upload is not None:
            if upload.size > 64 * 1024:
                self.add_error(
                    "service_account_file",
                    gettext("A service-account key is a few kilobytes; this file is too large."),
                )
                return cleaned
            try:
                raw = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                self.add_error("service_account_file", gettext("This file is not a JSON text file."))
                return cleaned
        raw = raw.strip()
        if raw:
            try:
                services.parse_service_account(raw)
            except ValueError as exc:
                self.add_error(
                    "service_account_file" if upload is not None else "service_account_text", str(exc)
                )
        cleaned["service_account_json"] = raw
        return cleaned
