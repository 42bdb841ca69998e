"""The journey JSON (docs/journeys.md): parsed once, here, for the builder, the API and the engine.

``parse(data)`` refuses a bad definition with every problem at once (``DefinitionError.problems``,
each naming the step and the field), so the API answers 422 with them and the builder marks the
step. ``strict=True`` (activation) adds what a draft may still lack: every step configured,
templates approved, bindings that render, no keyword collision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .steps import CheckContext, Problem
from .steps import get as step_type

STEP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REENTRY = ("never", "after_exit", "any_time")
ENTRY_TYPES = ("event", "segment", "api")
_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)
MAX_STEPS = 200


class DefinitionError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.step or 'journey'}.{p.field}: {p.message}" for p in problems))


def parse_duration(text: Any) -> timedelta | None:
    """ISO 8601 duration (``PT1H``, ``P1D``, ``P2W``, ``P1DT12H``) -> timedelta; None when not one."""
    if not isinstance(text, str):
        return None
    match = _DURATION.match(text.strip().upper())
    if not match or text.strip().upper() in ("P", "PT"):
        return None
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    return timedelta(**parts)


@dataclass(frozen=True)
class Step:
    id: str
    type: str
    data: dict[str, Any]  # the step's JSON as written (config, next/branches, ui)
    outlets: dict[str, str | None]


@dataclass(frozen=True)
class Entry:
    type: str  # event | segment | api
    data: dict[str, Any]


@dataclass(frozen=True)
class Goal:
    event: str
    conditions: list[dict[str, Any]]
    window: timedelta
    exit: bool


@dataclass(frozen=True)
class Settings:
    reentry: str = "after_exit"
    reentry_gap: timedelta | None = None  # any_time: at least this long between two entries
    entry_cap: int | None = None  # at most this many entries per subscriber ...
    entry_cap_period: timedelta | None = None  # ... within this period (None: ever)
    silent_hours: tuple[str, str] | None = None  # ("21:00", "08:00") in the subscriber's zone
    fallback_time_zone: str = "UTC"
    goal: Goal | None = None


@dataclass(frozen=True)
class Definition:
    name: str
    entries: tuple[Entry, ...]
    settings: Settings
    steps: dict[str, Step]
    first: str | None  # the step a run starts at (the first in the list); None: no steps
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def parse(data: Any, *, project=None, strict: bool = False) -> Definition:
    """The definition in ``data``, or DefinitionError with every problem found."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise DefinitionError([Problem(None, "", "A journey is a JSON object.")])
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(Problem(None, "name", "Give the journey a name."))
    elif len(name) > 200:
        problems.append(Problem(None, "name", "At most 200 characters."))
    entries = _entries(data, problems)
    settings = _settings(data.get("settings") or {}, problems)
    raw_steps = data.get("steps", [])
    steps: dict[str, Step] = {}
    if not isinstance(raw_steps, list):
        problems.append(Problem(None, "steps", "Steps are a list."))
        raw_steps = []
    if len(raw_steps) > MAX_STEPS:
        problems.append(Problem(None, "steps", f"At most {MAX_STEPS} steps."))
    ctx = CheckContext(project=project, definition=data, strict=strict)
    for index, raw in enumerate(raw_steps):
        where = f"steps[{index}]"
        if not isinstance(raw, dict):
            problems.append(Problem(None, where, "A step is a JSON object."))
            continue
        step_id = raw.get("id")
        if not isinstance(step_id, str) or not STEP_ID.match(step_id):
            problems.append(Problem(None, f"{where}.id", "An id of 1-64 letters, digits, - or _."))
            continue
        if step_id in steps:
            problems.append(Problem(step_id, "id", f"Two steps are called {step_id!r}."))
            continue
        kind = step_type(str(raw.get("type", "")))
        if kind is None:
            problems.append(Problem(step_id, "type", f"Unknown step type {raw.get('type')!r}."))
            steps[step_id] = Step(step_id, str(raw.get("type", "")), raw, {})
            continue
        problems += kind.check(raw, ctx)
        steps[step_id] = Step(step_id, kind.type, raw, kind.outlets(raw))
    _check_graph(steps, problems)
    if strict and not steps:
        problems.append(Problem(None, "steps", "A journey needs at least one step."))
    if problems:
        raise DefinitionError(problems)
    first = next(iter(steps), None)
    return Definition(name.strip(), entries, settings, steps, first, raw=data)


def _entries(data: dict[str, Any], problems: list[Problem]) -> tuple[Entry, ...]:
    raw = data.get("entries")
    if raw is None:
        raw = [data["entry"]] if data.get("entry") is not None else []
    if not isinstance(raw, list) or not raw:
        problems.append(Problem(None, "entry", "A journey needs an entry: an event, a segment or the API."))
        return ()
    entries = []
    for i, entry in enumerate(raw):
        where = "entry" if "entries" not in data else f"entries[{i}]"
        if not isinstance(entry, dict) or entry.get("type") not in ENTRY_TYPES:
            problems.append(Problem(None, f"{where}.type", "One of event, segment, api."))
            continue
        if entry["type"] == "event" and not (isinstance(entry.get("event"), str) and entry["event"].strip()):
            problems.append(Problem(None, f"{where}.event", "Name the event that starts the journey."))
        entries.append(Entry(entry["type"], entry))
    return tuple(entries)


def _settings(raw: Any, problems: list[Problem]) -> Settings:
    if not isinstance(raw, dict):
        problems.append(Problem(None, "settings", "Settings are a JSON object."))
        return Settings()
    reentry = raw.get("reentry", "after_exit")
    if reentry not in REENTRY:
        problems.append(Problem(None, "settings.reentry", "One of never, after_exit, any_time."))
        reentry = "after_exit"
    gap = None
    if raw.get("reentry_gap") is not None:
        gap = parse_duration(raw["reentry_gap"])
        if gap is None:
            problems.append(Problem(None, "settings.reentry_gap", "An ISO 8601 duration such as P1D."))
    goal = None
    if isinstance(raw.get("goal"), dict):
        g = raw["goal"]
        window = parse_duration(g.get("window", "P7D"))
        if not isinstance(g.get("event"), str) or window is None:
            problems.append(Problem(None, "settings.goal", "A goal needs an event and a window such as P7D."))
        else:
            goal = Goal(g["event"], list(g.get("conditions") or []), window, bool(g.get("exit", False)))
    return Settings(
        reentry=reentry,
        reentry_gap=gap,
        goal=goal,
        fallback_time_zone=str(raw.get("fallback_time_zone") or "UTC"),
    )


def _check_graph(steps: dict[str, Step], problems: list[Problem]) -> None:
    """Every outlet leads to a step that exists, and no path comes back to a step (no loops)."""
    for step in steps.values():
        for outlet, target in step.outlets.items():
            if target is not None and target not in steps:
                problems.append(
                    Problem(
                        step.id,
                        f"next.{outlet}" if outlet != "next" else "next",
                        f"There is no step {target!r}.",
                    )
                )
    state: dict[str, int] = {}

    def visit(step_id: str, path: list[str]) -> None:
        state[step_id] = 1
        for target in steps[step_id].outlets.values():
            if target is None or target not in steps:
                continue
            if state.get(target) == 1:
                problems.append(Problem(step_id, "next", f"Going to {target!r} makes a loop."))
            elif target not in state:
                visit(target, [*path, target])
        state[step_id] = 2

    for step_id in steps:
        if step_id not in state:
            visit(step_id, [step_id])
