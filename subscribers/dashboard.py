from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Q
from django.urls import reverse

from controlpanel.dashboard import ChecklistStep, Metric
from controlpanel.models import Project

from .models import ConsentState, Subscriber


def audience_provider(project: Project) -> Iterable[Metric | ChecklistStep]:
    counts = Subscriber.objects.for_project(project).aggregate(
        total=Count("id"), opted_in=Count("id", filter=Q(whatsapp_consent=ConsentState.OPTED_IN))
    )
    url = reverse("subscribers:list", args=[project.slug])
    yield Metric("Subscribers", counts["total"], url=url, order=10)
    yield Metric("WhatsApp opted in", counts["opted_in"], hint="may receive marketing", url=url, order=20)
    yield ChecklistStep(
        title="Add subscribers",
        done=counts["total"] > 0,
        url=url,
        hint="Phone numbers with opt-in: from the panel, a CSV file or the API.",
        order=20,
    )
