"""Journey statistics from counters and indexed counts: what the statistics page and the API show."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from journeys import counters, stats
from journeys.models import Journey, JourneyRun, JourneyStatus, JourneyVersion, RunState
from journeys.stats import journey_stats, step_counts
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

DEFINITION = {
    "name": "PROMO",
    "entry": {"type": "event", "event": "WhatsAppReceived"},
    "settings": {"goal": {"event": "OrderPlaced", "window": "P7D"}},
    "steps": [
        {"id": "reply", "type": "whatsapp_text", "text": "Hi", "next": "wait"},
        {"id": "wait", "type": "wait", "duration": "PT1H", "next": "offer"},
        {
            "id": "offer",
            "type": "whatsapp_template",
            "template": {"name": "o", "language": "de"},
            "next": None,
        },
    ],
}


@pytest.fixture(autouse=True)
def _clean():
    cache.clear()


def _journey(project) -> Journey:
    journey = Journey.objects.create(
        project=project, name="PROMO", definition=DEFINITION, status=JourneyStatus.ACTIVE, version=1
    )
    JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=DEFINITION)
    return journey


def _run(
    journey, subscriber, *, state=RunState.WAITING, step="wait", dry=False, entered=None, converted=None
):
    n = JourneyRun.objects.count()
    return JourneyRun.objects.create(
        project=journey.project,
        journey=journey,
        version=1,
        subscriber=subscriber,
        state=state,
        step_id=step,
        entry_key=f"k{n}",
        dry_run=dry,
        entered_at=entered or timezone.now(),
        converted_at=converted,
    )


def test_journey_figures_come_from_counters_and_live_runs(project):
    journey = _journey(project)
    ana, ben = SubscriberFactory(project=project), SubscriberFactory(project=project)
    _run(journey, ana, state=RunState.DONE, step="offer")
    _run(journey, ana)
    _run(journey, ben)
    _run(journey, ben, step="reply", dry=True)  # dry runs never count
    counters.bump(
        project.pk,
        journey.pk,
        {
            ("", "entered"): 4,
            ("", "converted"): 1,
            ("", "exited:completed"): 1,
            ("", "exited:goal"): 2,
            ("reply", "entered"): 4,
            ("reply", "sent"): 3,
            ("reply", "skipped"): 1,
            ("reply", "delivered"): 3,
            ("reply", "read"): 2,
            ("reply", "passed:next"): 4,
            ("wait", "entered"): 4,
            ("offer", "entered"): 2,
            ("offer", "sent"): 2,
            ("offer", "delivered"): 1,
            ("offer", "clicked"): 1,
            ("offer", "converted"): 1,
        },
    )
    stats = journey_stats(journey)
    assert stats["entered"] == 4
    assert stats["unique_subscribers"] == 2
    assert stats["in_journey"] == 2
    assert stats["converted"] == 1 and stats["conversion_rate"] == 25.0
    assert stats["goal"] == "OrderPlaced"
    assert [(e["reason"], e["count"]) for e in stats["exits"]] == [("goal", 2), ("completed", 1)]
    assert stats["exited"] == 3
    (whatsapp,) = stats["channels"]
    assert whatsapp["channel"] == "whatsapp"
    assert (whatsapp["sent"], whatsapp["delivered"], whatsapp["read"], whatsapp["clicked"]) == (5, 4, 2, 1)
    assert whatsapp["skipped"] == 1 and whatsapp["delivery_rate"] == 80.0 and whatsapp["read_rate"] == 50.0
    steps = {s["id"]: s for s in stats["steps"]}
    assert [s["id"] for s in stats["steps"]] == ["reply", "wait", "offer"]
    assert steps["wait"]["waiting"] == 2 and steps["wait"]["channel"] == ""
    assert steps["reply"]["passed"] == {"next": 4} and steps["offer"]["converted"] == 1
    assert steps["offer"]["share"] == 50.0


def test_a_step_of_an_older_version_with_counts_stays_visible(project):
    journey = _journey(project)
    counters.bump(project.pk, journey.pk, {("old_step", "entered"): 3, ("", "entered"): 3})
    steps = {s["id"]: s for s in journey_stats(journey)["steps"]}
    assert steps["old_step"]["removed"] and steps["old_step"]["entered"] == 3
    assert not steps["reply"]["removed"]


def test_a_draft_shows_its_own_steps_and_no_rate(project):
    journey = Journey.objects.create(project=project, name="D", definition=DEFINITION)
    stats = journey_stats(journey)
    assert [s["id"] for s in stats["steps"]] == ["reply", "wait", "offer"]
    assert stats["entered"] == 0 and stats["conversion_rate"] is None and stats["exits"] == []


def test_daily_series_counts_entries_and_conversions_per_local_day(project, monkeypatch):
    monkeypatch.setattr(stats, "TODAY_TTL", 0)  # today's bar uncached here; closed days stay cached
    journey = _journey(project)
    sub = SubscriberFactory(project=project)
    now = timezone.now()
    _run(journey, sub, entered=now, converted=now)
    _run(journey, sub, state=RunState.DONE, entered=now - timedelta(days=1))
    _run(
        journey, sub, state=RunState.DONE, entered=now - timedelta(days=1), converted=now - timedelta(days=1)
    )
    _run(journey, sub, state=RunState.DONE, entered=now - timedelta(days=30))  # outside the window
    _run(journey, sub, entered=now, dry=True)
    daily = journey_stats(journey)["daily"]
    assert len(daily["labels"]) == 14 and daily["labels"][-1] == timezone.localdate().strftime("%m-%d")
    # ISO days beside the labels: the page's chart writes them in the reader's language.
    assert daily["days"][-1] == timezone.localdate().isoformat() and len(daily["days"]) == 14
    assert daily["entered"][-2:] == [2, 1] and sum(daily["entered"]) == 3
    assert daily["converted"][-2:] == [1, 1]
    # Today is counted live; closed days come from the cache.
    _run(journey, sub, entered=now)
    JourneyRun.objects.filter(entered_at__lt=now - timedelta(hours=23)).delete()
    cache.delete(f"journeys:unique:{journey.public_id}")
    again = journey_stats(journey)["daily"]
    assert again["entered"][-1] == 2 and again["entered"][-2] == 2


def test_todays_bar_is_counted_at_most_once_a_minute(project):
    journey = _journey(project)
    sub = SubscriberFactory(project=project)
    _run(journey, sub)
    assert stats.daily_series(journey)["entered"][-1] == 1
    _run(journey, sub)
    assert stats.daily_series(journey)["entered"][-1] == 1
    cache.clear()
    assert stats.daily_series(journey)["entered"][-1] == 2


def test_stats_take_a_fixed_number_of_queries(project, django_assert_max_num_queries):
    journey = _journey(project)
    for _ in range(20):
        _run(journey, SubscriberFactory(project=project))
    with django_assert_max_num_queries(9):
        journey_stats(journey)


def test_step_counts_keeps_its_shape(project):
    journey = _journey(project)
    _run(journey, SubscriberFactory(project=project))
    counters.bump(project.pk, journey.pk, {("reply", "sent"): 2})
    assert step_counts(journey) == {"reply": {"sent": 2}, "wait": {"waiting": 1}}
