"""The operators' admin for journeys: read-only rows, status changes only through the services."""

from __future__ import annotations

import pytest
from django.urls import reverse

from controlpanel.models import AuditEntry, User
from journeys import services
from journeys.models import Journey, JourneyStartRequest, JourneyStatus, RunState
from tests.journeys.test_definition import PROMO
from tests.journeys.test_services import (
    ACTOR,
    approved_template,
    keyword_journey,
    live_run,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, db):
    user = User.objects.create_superuser(email="ops@example.com", password="pw-for-tests-123")
    client.force_login(user)
    return client


def _act(client, action: str, *journeys):
    url = reverse("admin:journeys_journey_changelist")
    return client.post(url, {"action": action, "_selected_action": [j.pk for j in journeys]}, follow=True)


def test_journey_pages_show_the_definition_pretty_printed_and_read_only(operator, project):
    approved_template(project)
    journey = services.create_journey(project=project, data=PROMO, actor=ACTOR)
    listing = operator.get(reverse("admin:journeys_journey_changelist"), {"status__exact": "draft"})
    assert listing.status_code == 200 and "PROMO keyword" in listing.content.decode()
    page = operator.get(reverse("admin:journeys_journey_change", args=[journey.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "<pre" in html and "&quot;id&quot;: &quot;reply&quot;" in html and "\n  &quot;steps&quot;" in html
    assert 'name="definition"' not in html and 'name="status"' not in html  # nothing to edit
    assert (
        operator.post(reverse("admin:journeys_journey_change", args=[journey.pk]), {"name": "x"}).status_code
        == 403
    )


def test_status_actions_go_through_the_services(operator, project):
    approved_template(project)
    journey = services.create_journey(project=project, data=PROMO, actor=ACTOR)
    _act(operator, "activate_journeys", journey)
    assert Journey.objects.get().status == JourneyStatus.ACTIVE
    run = live_run(Journey.objects.get(), "wait")
    _act(operator, "pause_journeys", journey)
    assert Journey.objects.get().status == JourneyStatus.PAUSED
    _act(operator, "stop_journeys", journey)
    assert Journey.objects.get().status == JourneyStatus.STOPPED
    run.refresh_from_db()
    assert run.state == RunState.DONE  # the service's stop, not a bare status edit
    labels = set(
        AuditEntry.objects.filter(action__startswith="journey.").values_list("action", "actor_label")
    )
    assert ("journey.stop", "ops@example.com") in labels and ("journey.activate", "ops@example.com") in labels


def test_a_refused_action_is_reported_not_forced(operator, project):
    approved_template(project)
    first = services.activate(
        journey=services.create_journey(
            project=project, data=keyword_journey("Promo 2", "promo"), actor=ACTOR
        ),
        actor=ACTOR,
    )
    second = services.create_journey(project=project, data=keyword_journey("Mine", "PROMO"), actor=ACTOR)
    response = _act(operator, "activate_journeys", second)
    assert "PROMO is already claimed by journey &#x27;Promo 2&#x27;" in response.content.decode()
    assert Journey.objects.get(pk=second.pk).status == JourneyStatus.DRAFT
    response = _act(operator, "resume_journeys", first)
    assert "Only a paused journey can be resumed." in response.content.decode()


def test_runs_and_start_requests_are_read_only(operator, project):
    journey = Journey.objects.create(project=project, name="J", definition=PROMO, version=1)
    run = live_run(journey, "wait")
    request = JourneyStartRequest.objects.create(
        project=project, journey=journey, payload={"subscribers": []}
    )
    runs = operator.get(reverse("admin:journeys_journeyrun_changelist"), {"state__exact": "waiting"})
    assert runs.status_code == 200 and str(run.public_id) in runs.content.decode()
    detail = operator.get(reverse("admin:journeys_journeyrun_change", args=[run.pk]))
    assert detail.status_code == 200 and 'name="state"' not in detail.content.decode()
    assert operator.get(reverse("admin:journeys_journeyrun_add")).status_code == 403
    assert operator.get(reverse("admin:journeys_journeystartrequest_changelist")).status_code == 200
    assert (
        operator.get(reverse("admin:journeys_journeystartrequest_change", args=[request.pk])).status_code
        == 200
    )
    assert (
        operator.get(reverse("admin:journeys_journeystartrequest_delete", args=[request.pk])).status_code
        == 403
    )
