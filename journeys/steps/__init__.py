"""The step registry: one module per step type (a channel is one module, not edits all over).

A step type knows three things about its JSON: the problems of its configuration (``check``), the
outlets it leaves by and the step each leads to (``outlets``), and what it does to a run
(``run``). The engine knows none of the types; the builder and the JSON Schema list them from here.

A module registers its types at import (``register(MyStep())``); ``journeys/apps.py`` imports the
modules. Contract (ADR 0007):

- ``check(data, ctx)`` returns ``Problem``s with the field inside the step (``"duration"``,
  ``"template.name"``); never raises on bad input.
- ``outlets(data)`` maps outlet names to the next step id (None: the run leaves the journey
  there). Most steps have one outlet, ``"next"`` (the JSON's ``"next"`` key).
- ``run(visit)`` is called when a run arrives at the step (``visit.first``) and again each time
  it is woken (its timer passed: ``visit.timer``; an awaited event came: ``visit.event``). It
  returns ``Go(outlet)``, ``Wait(until, events)`` or ``Exit(reason)``. It is called inside the
  engine's transaction: what it writes to the database commits with the run's move, exactly once.
  Anything outside the database must be idempotent per ``visit.record`` (the run's one row for
  this step). With ``visit.dry_run`` it must not touch real subscribers, Meta or webhooks: it
  records in ``visit.record.detail`` what it would have done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from controlpanel.models import Project
    from subscribers.models import Subscriber

    from ..definition import Definition, Step
    from ..models import Journey, JourneyRun, JourneyRunStep


@dataclass(frozen=True)
class Problem:
    """A configuration problem: ``step`` (None: the journey as a whole), ``field``, plain words."""

    step: str | None
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "field": self.field, "message": self.message}


@dataclass
class CheckContext:
    """What ``check`` may look at: the project (templates, segments, tags) and the whole definition.

    ``strict`` is set for activation (templates approved, bindings render, keyword collisions);
    a saved draft may be incomplete.
    """

    project: Project | None
    definition: dict[str, Any]
    strict: bool = False


@dataclass(frozen=True)
class Go:
    outlet: str = "next"


@dataclass(frozen=True)
class Wait:
    until: datetime | None  # wake by timer then (None: only an event wakes it)
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class Exit:
    reason: str = "exit_step"


Outcome = Go | Wait | Exit


@dataclass
class StepBatch:
    """What the runs one engine batch advances share, so that N runs at a step cost what one does.

    A step that reads the database per subscriber (segment membership, a tag's date) asks ``once``
    for all of ``subscriber_ids`` at the first run that needs it and answers the others from
    memory. The engine forgets the answers (``forget``) after a step that writes (update_tags):
    the next lookup reads what it wrote.
    """

    subscriber_ids: frozenset[int]
    memo: dict[Any, Any] = field(default_factory=dict)

    def once(self, key: Any, compute: Callable[[frozenset[int]], Any]) -> Any:
        if key not in self.memo:
            self.memo[key] = compute(self.subscriber_ids)
        return self.memo[key]

    def forget(self) -> None:
        self.memo.clear()


@dataclass
class Visit:
    journey: Journey
    definition: Definition
    run: JourneyRun
    step: Step
    subscriber: Subscriber
    record: JourneyRunStep  # this run's row for this step (created before the first call)
    now: datetime  # the simulated clock for a dry run
    first: bool = True
    timer: bool = False
    event: dict[str, Any] | None = None  # {"id", "name", "attributes", "occurred_at"} that woke it
    dry_run: bool = False
    stats: dict[tuple[str, str], int] = field(default_factory=dict)  # (step_id, key) -> delta
    batch: StepBatch | None = None  # the engine's batch; None: this visit alone

    def lookup(self, key: Any, compute: Callable[[frozenset[int]], Any]) -> Any:
        """``compute(subscriber ids)`` once for the batch (or for this subscriber alone)."""
        if self.batch is None or self.subscriber.pk not in self.batch.subscriber_ids:
            return compute(frozenset({self.subscriber.pk}))
        return self.batch.once(key, compute)

    def count(self, key: str, n: int = 1) -> None:
        """Add to this step's counter ``key`` (``sent``, ``skipped``...); dry runs count nothing."""
        if not self.dry_run:
            self.stats[(self.step.id, key)] = self.stats.get((self.step.id, key), 0) + n


class StepType(Protocol):
    type: str
    label: str  # for the builder's palette
    channel: str  # "" or the channel it sends on ("whatsapp", "email", "push")

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]: ...

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]: ...

    def run(self, visit: Visit) -> Outcome: ...


_registry: dict[str, StepType] = {}


def register(step_type: StepType) -> StepType:
    _registry[step_type.type] = step_type
    return step_type


def get(type_: str) -> StepType | None:
    return _registry.get(type_)


def types() -> list[StepType]:
    return list(_registry.values())


def next_only(data: dict[str, Any]) -> dict[str, str | None]:
    """The outlets of a step with one way out: the JSON's ``"next"``."""
    return {"next": data.get("next")}
