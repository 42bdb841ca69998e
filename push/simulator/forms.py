"""Input of the push simulator's device page."""

from __future__ import annotations

import contextlib

from django import forms
from django.db.models import Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from controlpanel.models import Project
from subscribers.errors import InvalidInput
from subscribers.models import DevicePlatform, Subscriber
from subscribers.phones import normalize_phone


class DeviceForm(forms.Form):
    subscriber = forms.CharField(
        label=_("Subscriber"), max_length=200, help_text=_("Their phone number, email or external id.")
    )
    platform = forms.ChoiceField(
        label=_("Platform"), choices=DevicePlatform.choices, initial=DevicePlatform.ANDROID
    )

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["subscriber"].widget.attrs["list"] = "push-sim-subscribers"

    def clean_subscriber(self) -> Subscriber:
        raw = self.cleaned_data["subscriber"].strip()
        which = Q(external_id=raw) | Q(email=raw.lower())
        with contextlib.suppress(InvalidInput):  # not a phone number: an email or external id
            which |= Q(phone=normalize_phone(raw, self.project.default_country))
        found = Subscriber.objects.for_project(self.project).filter(which).order_by("pk").first()
        if found is None:
            raise forms.ValidationError(
                gettext("No subscriber with this phone, email or external id in %(project)s.")
                % {"project": self.project}
            )
        return found
