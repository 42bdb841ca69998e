"""What the dashboard shows, contributed by the apps below controlpanel.

controlpanel may not import subscribers, campaigns or whatsapp, yet the
dashboard shows their numbers: each app registers a provider in its
``AppConfig.ready()``. A provider answers with real numbers from the database,
never placeholders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

from .counting import Count
from .models import Project


@dataclass(frozen=True)
class Metric:
    label: str
    value: int | str | Count  # a Count says whether it is an estimate ("about")
    hint: str = ""
    url: str = ""
    order: int = 100


@dataclass(frozen=True)
class Series:
    """A daily series for the dashboard chart."""

    label: str
    points: list[tuple[date, int]]


@dataclass(frozen=True)
class ChecklistStep:
    """A prerequisite a new project must fulfil, shown until it is done."""

    title: str
    done: bool
    url: str = ""
    hint: str = ""
    order: int = 100


@dataclass(frozen=True)
class Alert:
    """Something that needs a person now (a campaign paused by an account error), shown at the top."""

    title: str
    text: str
    url: str = ""


@dataclass
class Dashboard:
    metrics: list[Metric] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    checklist: list[ChecklistStep] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


Provider = Callable[[Project], Iterable[Metric | Series | ChecklistStep | Alert]]
_providers: list[Provider] = []


def register(provider: Provider) -> Provider:
    if provider not in _providers:
        _providers.append(provider)
    return provider


def build(project: Project) -> Dashboard:
    board = Dashboard()
    for provider in _providers:
        for item in provider(project):
            match item:
                case Metric():
                    board.metrics.append(item)
                case Series():
                    board.series.append(item)
                case ChecklistStep():
                    board.checklist.append(item)
                case Alert():
                    board.alerts.append(item)
    board.metrics.sort(key=lambda m: m.order)
    board.checklist.sort(key=lambda s: s.order)
    return board


def tenancy_provider(project: Project) -> Iterable[Metric | Series | ChecklistStep]:
    from django.urls import reverse
    from django.utils.translation import gettext as _

    from .models import ApiKey, Membership

    yield ChecklistStep(
        title=_("Invite your team"),
        done=Membership.objects.filter(project=project).count() > 1,
        url=reverse("controlpanel:members", args=[project.slug]),
        hint=_("Marketers build segments and campaigns; viewers only look."),
        order=40,
    )
    yield ChecklistStep(
        title=_("Create an API key for your backend"),
        done=ApiKey.objects.for_project(project).active().exists(),
        url=reverse("controlpanel:api_keys", args=[project.slug]),
        hint=_("Your app sends subscribers and events through %(path)s.") % {"path": "/api/v1/"},
        order=50,
    )
