"""The one entry path: re-entry rules and deduplication hold for every kind of entry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from journeys import counters
from journeys.definition import DefinitionError, parse, parse_duration
from journeys.entry import Arrival, enter
from journeys.models import Journey, JourneyRun, JourneyStatus, JourneyVersion, RunState
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


def _journey(project, reentry: str = "after_exit", **settings) -> Journey:
    definition = {
        "name": "J",
        "entry": {"type": "api"},
        "settings": {"reentry": reentry, **settings},
        "steps": [{"id": "bye", "type": "exit"}],
    }
    journey = Journey.objects.create(
        project=project, name="J", definition=definition, status=JourneyStatus.ACTIVE, version=1
    )
    JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=definition)
    return journey


def test_after_exit_lets_a_subscriber_in_once_while_a_run_is_live(project):
    journey = _journey(project)
    sub = SubscriberFactory(project=project)
    now = timezone.now()
    first = enter(journey, [Arrival(sub.pk, "event:1"), Arrival(sub.pk, "event:2")], now=now)
    assert len(first) == 1 and first[0].state == RunState.READY and first[0].step_id == "bye"
    assert enter(journey, [Arrival(sub.pk, "event:3")], now=now + timedelta(seconds=1)) == []
    JourneyRun.objects.filter(pk=first[0].pk).update(state=RunState.DONE, exclusive=None)
    assert len(enter(journey, [Arrival(sub.pk, "event:4")], now=now + timedelta(seconds=2))) == 1
    assert counters.read(journey.pk)[("", "entered")] == 2


def test_never_means_never_and_the_same_entry_key_starts_nothing(project):
    journey = _journey(project, reentry="never")
    sub, other = SubscriberFactory(project=project), SubscriberFactory(project=project)
    now = timezone.now()
    assert len(enter(journey, [Arrival(sub.pk, "event:1")], now=now)) == 1
    JourneyRun.objects.update(state=RunState.DONE, exclusive="1")
    assert enter(journey, [Arrival(sub.pk, "event:2")], now=now + timedelta(seconds=1)) == []
    assert enter(journey, [Arrival(other.pk, "event:1")], now=now + timedelta(seconds=2)) == []


def test_any_time_keeps_the_minimum_gap(project):
    journey = _journey(project, reentry="any_time", reentry_gap="PT1H")
    sub = SubscriberFactory(project=project)
    now = timezone.now()
    assert len(enter(journey, [Arrival(sub.pk, "a")], now=now)) == 1
    assert enter(journey, [Arrival(sub.pk, "b")], now=now + timedelta(minutes=30)) == []
    assert len(enter(journey, [Arrival(sub.pk, "c")], now=now + timedelta(minutes=61))) == 1


def test_parse_names_step_and_field():
    with pytest.raises(DefinitionError) as caught:
        parse(
            {
                "name": "x",
                "entry": {"type": "api"},
                "steps": [{"id": "a", "type": "nope"}, {"id": "b", "type": "exit"}],
            }
        )
    assert caught.value.problems[0].as_dict() == {
        "step": "a",
        "field": "type",
        "message": "Unknown step type 'nope'.",
    }
    assert parse_duration("PT1H") == timedelta(hours=1)
    assert parse_duration("P1DT2H") == timedelta(days=1, hours=2)
    assert parse_duration("1 hour") is None
