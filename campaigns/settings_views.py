"""Settings -> Sending: the frequency cap, quiet hours and the editable rate card.

One page, one URL, three forms (cap and quiet hours, the rate card, a reset), told apart by
their ``form`` field; each posts and redirects back (the page works without JavaScript), and an
invalid form re-renders the page with its errors. Every write goes through
``policy_settings`` (its limits, its audit entry). Members see the page; admins change it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from controlpanel import countries
from controlpanel.countries import NAMES as COUNTRY_NAMES
from controlpanel.models import Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from subscribers.errors import InvalidInput

from . import policy_settings, pricing
from .models import RateCardEntry

PAGE = "campaigns/settings_sending.html"
CATEGORIES = pricing.CATEGORIES


def _actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user)


class PolicyForm(forms.Form):
    cap_messages = forms.IntegerField(
        label=gettext_lazy("At most this many marketing messages per subscriber"),
        required=False,
        min_value=1,
        max_value=policy_settings.MAX_CAP_MESSAGES,
        help_text=gettext_lazy(
            "Empty: no frequency cap. Counts campaigns and journeys; transactional and "
            "verification messages do not count and are never capped."
        ),
    )
    cap_days = forms.IntegerField(
        label=gettext_lazy("... in this many days"),
        min_value=1,
        max_value=policy_settings.MAX_CAP_DAYS,
        initial=7,
    )
    quiet_start = forms.TimeField(
        label=gettext_lazy("Quiet hours start"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text=gettext_lazy("In each subscriber's time zone (the project's for those without one)."),
    )
    quiet_end = forms.TimeField(
        label=gettext_lazy("Quiet hours end"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text=gettext_lazy(
            "Marketing messages due in quiet hours are held until then, not dropped. "
            "A start after the end spans midnight (e.g. 21:00 to 08:00)."
        ),
    )


def _price_field(required: bool) -> forms.DecimalField:
    return forms.DecimalField(
        required=required, min_value=0, max_value=policy_settings.MAX_PRICE, max_digits=10, decimal_places=4
    )


def _key(category: str, country: str) -> str:
    return f"price-{category}-{country or 'other'}"


class RateCardForm(forms.Form):
    """The whole card as one grid: a price per category and country; an empty price removes it."""

    currency = forms.CharField(
        max_length=3,
        min_length=3,
        label=gettext_lazy("Currency"),
        help_text=gettext_lazy("One currency for the whole card."),
    )
    new_country = forms.ChoiceField(label=gettext_lazy("Add a country"), required=False)

    def __init__(self, *args, entries: dict[tuple[str, str], RateCardEntry], **kwargs):
        super().__init__(*args, **kwargs)
        self.entries = entries
        self.countries = sorted({country for _, country in entries}, key=lambda c: (c == "", c))
        for country in self.countries:
            for category in CATEGORIES:
                entry = entries.get((category, country))
                field = _price_field(required=not country)
                field.initial = entry.price if entry else None
                self.fields[_key(category, country)] = field
            if country:
                self.fields[f"remove-{country}"] = forms.BooleanField(required=False)
        for category in CATEGORIES:
            self.fields[f"new-{category}"] = _price_field(required=False)
        taken = set(self.countries)
        self.fields["new_country"].choices = [("", "—")] + [
            (code, f"{name} ({code})")
            for code, name in sorted(
                ((code, countries.name(code)) for code in COUNTRY_NAMES),
                key=lambda item: countries.sort_key(item[1]),
            )
            if code not in taken
        ]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("new_country") and not any(cleaned.get(f"new-{c}") is not None for c in CATEGORIES):
            self.add_error("new_country", _("Give at least one price for the new country."))
        return cleaned

    def prices(self) -> dict[tuple[str, str], Decimal | None]:
        """What changed, for policy_settings.update_rate_card: None removes a price."""
        data = self.cleaned_data
        changes: dict[tuple[str, str], Decimal | None] = {}
        for country in self.countries:
            removed = bool(country) and data.get(f"remove-{country}")
            for category in CATEGORIES:
                price = None if removed else data.get(_key(category, country))
                entry = self.entries.get((category, country))
                if entry is None and price is None:
                    continue
                if entry is None or entry.price != price:
                    changes[(category, country)] = price
        new_country = data.get("new_country")
        if new_country:
            for category in CATEGORIES:
                price = data.get(f"new-{category}")
                if price is not None:
                    changes[(category, new_country)] = price
        return changes

    def rows(self) -> list[dict[str, Any]]:
        """Per country: its name, the bound price fields, and whether a price differs from Meta's seed."""
        rows = []
        for country in self.countries:
            cells = []
            for category in CATEGORIES:
                entry = self.entries.get((category, country))
                seeded = policy_settings.seeded_price(category, country)
                cells.append(
                    {
                        "field": self[_key(category, country)],
                        "seeded": seeded,
                        "edited": entry is not None and seeded is not None and entry.price != seeded,
                    }
                )
            rows.append(
                {
                    "country": country,
                    "name": countries.name(country) if country else _("Every other country"),
                    "cells": cells,
                    "remove": self[f"remove-{country}"] if country else None,
                    "seeded": country in pricing.RATES,
                }
            )
        return rows

    def new_fields(self) -> list[forms.BoundField]:
        return [self[f"new-{category}"] for category in CATEGORIES]


def _entries(project) -> dict[tuple[str, str], RateCardEntry]:
    return dict(pricing.rate_card(project).entries)


def _page(
    request: HttpRequest,
    *,
    policy_form: PolicyForm | None = None,
    rate_form: RateCardForm | None = None,
    status: int = 200,
) -> HttpResponse:
    project = request.project
    if policy_form is None:
        policy = policy_settings.sending_policy(project)
        policy_form = PolicyForm(
            initial={
                "cap_messages": policy.cap_messages,
                "cap_days": policy.cap_days,
                "quiet_start": policy.quiet_start,
                "quiet_end": policy.quiet_end,
            }
        )
    if rate_form is None:
        entries = _entries(project)
        currency = pricing.RateCard(entries).currency
        rate_form = RateCardForm(entries=entries, initial={"currency": currency})
    return render(
        request,
        PAGE,
        {
            "tab": "sending",
            "policy_form": policy_form,
            "rate_form": rate_form,
            "categories": [c.capitalize() for c in CATEGORIES],
            "rates_effective": pricing.RATES_EFFECTIVE,
        },
        status=status,
    )


def _service_error(form: forms.Form, exc: InvalidInput) -> None:
    field = exc.field if exc.field in form.fields else None
    form.add_error(field, exc.message)


@project_view(section="settings", write=Role.ADMIN)
def sending_settings(request: HttpRequest) -> HttpResponse:
    """The page; a POST saves the form its ``form`` field names: the policy, the rates, or a reset."""
    if request.method != "POST":
        return _page(request)
    which = request.POST.get("form", "policy")
    if which == "rates":
        return _save_rates(request)
    if which == "reset":
        policy_settings.reset_rate_card(project=request.project, actor=_actor(request))
        messages.success(
            request,
            _("Rate card reset to Meta's rates of %(date)s.")
            % {"date": date_format(pricing.RATES_EFFECTIVE, "DATE_FORMAT")},
        )
        return redirect("campaigns:settings_sending", request.project.slug)
    form = PolicyForm(request.POST)
    if form.is_valid():
        try:
            policy_settings.update_sending_policy(
                project=request.project, actor=_actor(request), **form.cleaned_data
            )
        except InvalidInput as exc:
            _service_error(form, exc)
        else:
            messages.success(request, _("Frequency cap and quiet hours saved."))
            return redirect("campaigns:settings_sending", request.project.slug)
    return _page(request, policy_form=form, status=422)


def _save_rates(request: HttpRequest) -> HttpResponse:
    entries = _entries(request.project)
    form = RateCardForm(request.POST, entries=entries)
    if form.is_valid():
        try:
            changed = policy_settings.update_rate_card(
                project=request.project,
                actor=_actor(request),
                prices=form.prices(),
                currency=form.cleaned_data["currency"],
            )
        except InvalidInput as exc:
            _service_error(form, exc)
        else:
            messages.success(
                request,
                ngettext(
                    "Rate card saved (%(n)s price changed).",
                    "Rate card saved (%(n)s prices changed).",
                    changed,
                )
                % {"n": changed}
                if changed
                else _("No changes."),
            )
            return redirect("campaigns:settings_sending", request.project.slug)
    return _page(request, rate_form=form, status=422)


urlpatterns = [
    path("settings/sending/", sending_settings, name="settings_sending"),
]
