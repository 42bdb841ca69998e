"""Steps that read per subscriber (segment split, a wait until a tag's date) read once per engine
batch: N runs at such a step cost the queries one run costs, and each run still gets its answer."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from journeys import engine
from journeys.models import Journey, JourneyRun, JourneyRunStep
from subscribers.models import Segment, Subscriber
from subscribers.services import set_tags
from tests.journeys.helpers import make_journey

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0)
GOLD = {"type": "tag", "tag": "tier", "op": "eq", "value": "gold"}
_phones = itertools.count(1)
_ticks = itertools.count(1)


def subscribers(project, n: int, tags=lambda i: {}) -> list[Subscriber]:
    made = []
    for i in range(n):
        sub = Subscriber.objects.create(project=project, phone=f"+49152{next(_phones):08d}")
        if tags(i):
            set_tags(project=project, subscriber=sub, tags=tags(i))
        made.append(sub)
    return made


def start(journey: Journey, subs: list[Subscriber]) -> datetime:
    """Runs of ``subs`` due at a moment of their own; that moment."""
    at = T0 + timedelta(seconds=next(_ticks))
    JourneyRun.objects.bulk_create(
        JourneyRun(
            project=journey.project,
            journey=journey,
            version=1,
            subscriber=sub,
            step_id=journey.definition["steps"][0]["id"],
            wake_at=at,
            entry_key=f"test:{sub.pk}:{at.timestamp()}",
            entered_at=at,
        )
        for sub in subs
    )
    return at


def queries_of_tick(journey: Journey, subs: list[Subscriber]) -> int:
    at = start(journey, subs)
    with CaptureQueriesContext(connection) as queries:
        assert engine.tick(now=at) == len(subs)
    return len(queries.captured_queries)


def outlets(journey: Journey, step: str) -> dict[int, str]:
    return dict(
        JourneyRunStep.objects.filter(run__journey=journey, step_id=step).values_list(
            "run__subscriber_id", "outlet"
        )
    )


@pytest.mark.parametrize("where", ["rule", "segment"])
def test_50_runs_at_a_segment_split_cost_the_queries_of_5_and_branch_right(project, where):
    split = {"rule": GOLD} if where == "rule" else {"segment": str(Segment.objects.create(
        project=project, name="Gold", rule=GOLD).public_id)}  # fmt: skip
    journey = make_journey(project, [{"id": "s", "type": "segment_split", "yes": None, "no": None, **split}])
    gold_every_other = lambda i: {"tier": "gold" if i % 2 == 0 else "tin"}  # noqa: E731
    queries_of_tick(journey, subscribers(project, 1, gold_every_other))  # caches warmed
    five, fifty = subscribers(project, 5, gold_every_other), subscribers(project, 50, gold_every_other)
    assert queries_of_tick(journey, fifty) == queries_of_tick(journey, five)
    expected = {s.pk: ("yes" if i % 2 == 0 else "no") for group in (five, fifty) for i, s in enumerate(group)}
    assert {pk: outlets(journey, "s")[pk] for pk in expected} == expected

    # A step that writes (update_tags) before the split: every run's split sees its own new tag,
    # not what another run of the batch found before it wrote.
    promoted = make_journey(
        project,
        [
            {"id": "t", "type": "update_tags", "set": {"tier": "gold"}, "next": "s"},
            {"id": "s", "type": "segment_split", "yes": None, "no": None, **split},
        ],
    )
    tins = subscribers(project, 4, lambda i: {"tier": "tin"})
    queries_of_tick(promoted, tins)
    assert set(outlets(promoted, "s").values()) == {"yes"}


def test_50_runs_waiting_for_a_tag_date_cost_the_queries_of_5(project):
    journey = make_journey(
        project,
        [{"id": "w", "type": "wait", "until_attribute": {"source": "tag", "name": "Renewal"}, "next": None}],
    )
    # Every third has no date (goes on at once); the others wait until their own date.
    dated = lambda i: {"renewal": f"2099-03-{i % 28 + 1:02d}T10:00:00+00:00"} if i % 3 else {}  # noqa: E731
    queries_of_tick(journey, subscribers(project, 1, dated))
    five, fifty = subscribers(project, 5, dated), subscribers(project, 50, dated)
    assert queries_of_tick(journey, fifty) == queries_of_tick(journey, five)
    for group in (five, fifty):
        for i, sub in enumerate(group):
            run = JourneyRun.objects.get(journey=journey, subscriber=sub)
            if i % 3:
                assert run.wake_at == datetime(2099, 3, i % 28 + 1, 10, 0, tzinfo=UTC)
            else:
                assert "went on at once" in JourneyRunStep.objects.get(run=run).detail["note"]
