"""Dry runs: a simulated clock, events fired by hand, nothing real written, nothing counted."""

from __future__ import annotations

from datetime import timedelta

import pytest

from journeys import counters, dryrun, engine
from journeys.definition import DefinitionError
from journeys.models import JourneyRun, JourneyStatus, RunState
from subscribers.services import tags_of
from tests.factories import SubscriberFactory
from tests.journeys.test_engine import make_journey

pytestmark = pytest.mark.django_db

FLOW = [
    {"id": "tag", "type": "update_tags", "set": {"vip": "yes"}, "next": "wait"},
    {"id": "wait", "type": "wait", "duration": "PT1H", "next": "ask"},
    {
        "id": "ask",
        "type": "wait_event",
        "events": [{"event": "Clicked", "next": "thanks"}],
        "timeout": "P1D",
        "timeout_next": None,
    },
    {"id": "thanks", "type": "exit"},
]


def test_a_dry_run_walks_on_its_own_clock_and_writes_nothing_real(project):
    journey = make_journey(project, FLOW)
    sub = SubscriberFactory(project=project)
    run = dryrun.start(journey=journey, subscriber=sub)
    assert run.dry_run and (run.state, run.step_id) == (RunState.WAITING, "wait")
    started = dryrun.clock(run)
    assert run.wake_at == started + timedelta(hours=1)
    assert "vip" not in tags_of(sub)  # the tag step only said what it would set
    (tag_visit, _wait) = dryrun.timeline(run)
    assert tag_visit.detail == {"tags": {"vip": "yes"}, "dry_run": True}
    # The tick never claims it, even when due.
    assert engine.tick(now=started + timedelta(days=2)) == 0

    moved = dryrun.fast_forward(run)
    assert [v.step_id for v in moved] == ["wait", "ask"]
    run.refresh_from_db()
    assert dryrun.clock(run) == started + timedelta(hours=1)
    assert (run.step_id, run.waiting_events) == ("ask", ["Clicked"])

    assert dryrun.fire(run, "Nope", {}) == []
    moved = dryrun.fire(run, "Clicked", {"button": "Yes"})
    assert [(v.step_id, v.outlet) for v in moved] == [("ask", "event1"), ("thanks", "")]
    run.refresh_from_db()
    assert (run.state, run.exit_reason) == (RunState.DONE, "exit_step")
    assert [v.step_id for v in dryrun.timeline(run)] == ["tag", "wait", "ask", "thanks"]
    assert dryrun.fast_forward(run) == []
    assert counters.read(journey.pk) == {}


def test_fast_forward_to_a_timeout(project):
    journey = make_journey(project, FLOW)
    run = dryrun.start(journey=journey, subscriber=SubscriberFactory(project=project))
    dryrun.fast_forward(run)
    run.refresh_from_db()
    dryrun.fast_forward(run)
    run.refresh_from_db()
    assert (run.state, run.exit_reason) == (RunState.DONE, "completed")
    assert dryrun.timeline(run)[-1].outlet == "timeout"


def test_a_draft_is_dry_run_from_the_definition_given(project):
    journey = make_journey(project, FLOW, status=JourneyStatus.DRAFT)
    draft = {
        **journey.definition,
        "steps": [{"id": "only", "type": "wait", "duration": "PT5M", "next": None}],
    }
    run = dryrun.start(journey=journey, subscriber=SubscriberFactory(project=project), definition=draft)
    assert (run.step_id, run.context["definition"]) == ("only", draft)
    dryrun.fast_forward(run)
    run.refresh_from_db()
    assert run.exit_reason == "completed"
    with pytest.raises(DefinitionError):
        dryrun.start(journey=journey, subscriber=SubscriberFactory(project=project), definition={"steps": 1})


def test_a_subscriber_in_the_journey_can_still_be_dry_run(project):
    journey = make_journey(project, FLOW)
    sub = SubscriberFactory(project=project)
    from tests.journeys.test_engine import start

    start(journey, [sub])  # a real, live run: the re-entry rule would refuse a second one
    run = dryrun.start(journey=journey, subscriber=sub)
    assert run.dry_run and run.step_id == "wait"
    assert JourneyRun.objects.filter(dry_run=False).count() == 1


def test_a_subscriber_of_another_project_is_refused(project):
    journey = make_journey(project, FLOW)
    with pytest.raises(ValueError):
        dryrun.start(journey=journey, subscriber=SubscriberFactory())
