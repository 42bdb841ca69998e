"""A subscriber without a time zone: the journey's fallback zone when it sets one, else the
project's (as campaigns fall back), the same for waits as for segment entries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from journeys import engine
from journeys.definition import parse
from journeys.segment_entry import journey_zone
from tests.factories import ProjectFactory, SubscriberFactory
from tests.journeys.test_engine import T0, make_journey, start

pytestmark = pytest.mark.django_db

# T0 is Monday 2 March 2026, 12:00 UTC: 13:00 in Berlin, 07:00 in New York.
BERLIN_9 = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)  # 09:00 CET the next morning
NEW_YORK_9 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 09:00 EST the same day


def _wake(journey, **subscriber) -> datetime:
    (run,) = start(journey, [SubscriberFactory(project=journey.project, **subscriber)], now=T0)
    engine.tick(now=T0)
    run.refresh_from_db()
    return run.wake_at


@pytest.mark.parametrize("zone", ["", "Mars/Olympus_Mons"])  # none, or one that is not a zone
def test_wait_until_nine_wakes_at_nine_in_the_projects_zone(zone):
    project = ProjectFactory(time_zone="Europe/Berlin")
    journey = make_journey(project, [{"id": "w", "type": "wait", "until_time": "09:00", "next": None}])
    assert _wake(journey, time_zone=zone) == BERLIN_9
    # The zone segment entries fire in for this journey: one fallback for both.
    assert journey_zone(journey, parse(journey.definition)).key == "Europe/Berlin"


def test_a_journeys_own_fallback_zone_beats_the_projects():
    project = ProjectFactory(time_zone="Europe/Berlin")
    journey = make_journey(
        project,
        [{"id": "w", "type": "wait", "until_time": "09:00", "next": None}],
        fallback_time_zone="America/New_York",
    )
    assert _wake(journey, time_zone="") == NEW_YORK_9
    assert _wake(journey, time_zone="Europe/Berlin") == BERLIN_9  # a subscriber's own zone first


def test_a_date_without_an_offset_is_read_in_the_projects_zone():
    project = ProjectFactory(time_zone="Europe/Berlin")
    journey = make_journey(project, [{"id": "w", "type": "wait", "until_date": "2026-04-01T10:00:00"}])
    assert _wake(journey, time_zone="") == datetime(2026, 4, 1, 8, 0, tzinfo=UTC)  # 10:00 CEST


def test_silent_hours_of_a_subscriber_without_a_zone_end_in_the_projects_zone():
    from campaigns.models import Message
    from push.models import PushTemplate
    from tests.journeys.helpers import make_run
    from tests.journeys.test_omnichannel import _subscriber

    project = ProjectFactory(time_zone="Europe/Berlin")
    PushTemplate.objects.create(project=project, name="push", title="Hi", body="there", marketing=False)
    journey = make_journey(
        project,
        [{"id": "push", "type": "send_push", "template": "push", "next": None}],
        silent_hours={"start": "21:00", "end": "08:00"},
    )
    sub = _subscriber(project, device=True, time_zone="")
    # 07:30 UTC is 08:30 in Berlin: the night is over there (in UTC it would still be silent).
    morning = datetime(2026, 3, 3, 7, 30, tzinfo=UTC)
    run = make_run(journey, sub, now=morning)
    engine.tick(now=morning)
    run.refresh_from_db()
    assert Message.objects.filter(subscriber=sub).count() == 1
    assert run.wake_at is None or run.wake_at <= morning
