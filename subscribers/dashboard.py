from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count as CountOf
from django.db.models import Q
from django.urls import reverse
from django.utils.translation import gettext as _

from controlpanel import counting
from controlpanel.dashboard import ChecklistStep, Metric
from controlpanel.models import Project

from .models import ConsentState, Subscriber


def audience_provider(project: Project) -> Iterable[Metric | ChecklistStep]:
    subscribers = Subscriber.objects.for_project(project)
    opted_in = Q(whatsapp_consent=ConsentState.OPTED_IN)
    if counting.is_large(subscribers):
        total, reachable = counting.estimate(subscribers), counting.estimate(subscribers.filter(opted_in))
    else:
        exact = subscribers.aggregate(total=CountOf("id"), opted_in=CountOf("id", filter=opted_in))
        total, reachable = counting.Count(exact["total"]), counting.Count(exact["opted_in"])
    url = reverse("subscribers:list", args=[project.slug])
    yield Metric(_("Subscribers"), total, url=url, order=10)
    yield Metric(_("WhatsApp opted in"), reachable, hint=_("may receive marketing"), url=url, order=20)
    yield ChecklistStep(
        title=_("Add subscribers"),
        done=bool(total),
        url=url,
        hint=_("Phone numbers with opt-in: from the panel, a CSV file or the API."),
        order=20,
    )
