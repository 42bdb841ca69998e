"""The journey JSON (docs/journeys.md): parsed once, here, for the builder, the API and the engine.

``parse(data)`` refuses a bad definition with every problem at once (``DefinitionError.problems``,
each naming the step and the field), so the API answers 422 with them and the builder marks the
step. ``strict=True`` (activation) adds what a draft may still lack: at least one step, every step
configured (the step modules' strict checks: templates approved, bindings that render), segments
that exist. Keyword collisions need the other journeys: ``services.validate`` adds them.

Invariant: whatever ``data`` is (numbers, nulls, nested junk, 10,000 steps, megabyte strings),
``parse`` returns a Definition or raises DefinitionError, nothing else. The step modules' checks
(other modules, other authors) are called through a guard for the same reason.
"""

from __future__ import annotations

import logging
import re
import uuid
import zoneinfo
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from django.utils.translation import gettext as _

from .steps import CheckContext, Problem
from .steps import get as step_type

logger = logging.getLogger(__name__)

STEP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REENTRY = ("never", "after_exit", "any_time")
ENTRY_TYPES = ("event", "segment", "api")
OPS = ("eq", "ne", "contains", "starts_with", "keyword", "regex", "gt", "gte", "lt", "lte", "exists")
_DURATION = re.compile(
    r"^(?P<sign>-)?P(?:(?P<weeks>\d{1,6})W)?(?:(?P<days>\d{1,6})D)?"
    r"(?:T(?:(?P<hours>\d{1,7})H)?(?:(?P<minutes>\d{1,9})M)?(?:(?P<seconds>\d{1,10})S)?)?$"
)
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MAX_STEPS = 200
MAX_ENTRIES = 20  # the keyword shortcut writes one entry per regex or partial keyword (up to 20)
MAX_CONDITIONS = 20
MAX_KEYWORDS = 100
MAX_REGEX = 500
MAX_TEXT = 1_000  # a condition's value, an attribute name
MAX_EVENT_NAME = 100
MAX_DURATION = timedelta(days=3 * 366)  # a wait, window or gap longer than this is a typo
# Top-level keys besides the definition's own: canvas state, a description, the export marker.
TOP_KEYS = frozenset(
    {"name", "description", "entry", "entries", "settings", "steps", "ui", "format", "$schema"}
)
CHANNELS = ("whatsapp", "email", "push")  # what silent hours may name (the send steps' channels)
SETTINGS_KEYS = frozenset(
    {"reentry", "reentry_gap", "entry_cap", "silent_hours", "fallback_time_zone", "goal"}
)


class DefinitionError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.step or 'journey'}.{p.field}: {p.message}" for p in problems[:20]))


def parse_duration(text: Any, *, signed: bool = False) -> timedelta | None:
    """ISO 8601 duration (``PT1H``, ``P1D``, ``P2W``, ``P1DT12H``) -> timedelta; None when not one.

    ``signed`` allows a leading ``-`` (a wait's offset before a date). Years and months are not
    durations here: their length depends on the calendar.
    """
    if not isinstance(text, str) or len(text) > 40:
        return None
    candidate = text.strip().upper()
    match = _DURATION.match(candidate)
    if not match or candidate.lstrip("-") in ("P", "PT") or candidate.endswith("T"):
        return None
    parts = {k: int(v) for k, v in match.groupdict().items() if v and k != "sign"}
    if match.group("sign") and not signed:
        return None
    try:
        value = timedelta(**parts)
    except OverflowError:
        return None
    return -value if match.group("sign") else value


def parse_clock(text: Any) -> time | None:
    """``"HH:MM"`` (24 h) -> time; None when not one."""
    if not isinstance(text, str) or not _CLOCK.match(text.strip()):
        return None
    hours, minutes = text.strip().split(":")
    return time(int(hours), int(minutes))


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def valid_time_zone(name: Any) -> bool:
    # From the list, not ZoneInfo(name): ZoneInfo opens files named by its argument.
    return isinstance(name, str) and name in _zones()


def _at(where: str, message: str) -> Problem:
    """A problem of the journey as a whole (entries, settings), not of one step."""
    return Problem(None, where, message)


def _show(value: Any, limit: int = 40) -> str:
    """A value for a message: short, so a megabyte of junk is not echoed back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Step:
    id: str
    type: str
    data: dict[str, Any]  # the step's JSON as written (config, next/branches, ui)
    outlets: dict[str, str | None]


@dataclass(frozen=True)
class Schedule:
    """When a segment entry fires (``segment_entry.next_firing`` computes the moments).

    ``kind``: ``now`` (once, at activation), ``at`` (once, at ``at``), ``local`` (once, at
    ``time`` in each subscriber's zone, on ``day`` or the next day it is ahead everywhere),
    ``recurring`` (every ``every`` at ``time``, from ``day``; ``local_time``: in each subscriber's
    zone, else the journey's)."""

    kind: str
    at: datetime | None = None
    day: date | None = None
    every: timedelta | None = None
    time: time | None = None
    local_time: bool = False


@dataclass(frozen=True)
class Entry:
    type: str  # event | segment | api
    data: dict[str, Any]
    schedule: Schedule | None = None  # segment entries


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
    silent_channels: tuple[str, ...] | None = None  # the send steps silent hours hold; None: all
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
    if not isinstance(data, dict):
        raise DefinitionError([_at("", _("A journey is a JSON object."))])
    unstorable = _unstorable(data)
    if unstorable:
        # Nothing else is looked at: the other checks may assume plain JSON.
        raise DefinitionError([unstorable])
    problems: list[Problem] = []
    for key in data:
        if key not in TOP_KEYS:
            problems.append(_at(str(key)[:64], _("Unknown field %(key)s.") % {"key": _show(key)}))
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(_at("name", _("Give the journey a name.")))
    elif len(name) > 200:
        problems.append(_at("name", _("At most 200 characters.")))
    if data.get("description") is not None and (
        not isinstance(data["description"], str) or len(data["description"]) > 2000
    ):
        problems.append(_at("description", _("A text of at most 2,000 characters.")))
    entries = _entries(data, problems, project=project, strict=strict)
    raw_settings = data.get("settings")
    settings = _settings({} if raw_settings is None else raw_settings, problems)
    steps = _steps(data, problems, project=project, strict=strict)
    _check_graph(steps, problems)
    if strict and not steps:
        problems.append(_at("steps", _("A journey needs at least one step.")))
    if problems:
        raise DefinitionError(problems)
    first = next(iter(steps), None)
    return Definition(name.strip(), entries, settings, steps, first, raw=data)


MAX_DEPTH = 32
MAX_NODES = 200_000


def _unstorable(data: dict[str, Any]) -> Problem | None:
    """The first value no JSON column stores, or a tree too deep or too large to be a journey:
    NUL (PostgreSQL refuses it), lone surrogates (no UTF-8 form), NaN and infinities, non-JSON
    types. Iterative, so a deeply nested body cannot exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    nodes = 0
    while stack:
        value, where, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES or depth > MAX_DEPTH:
            return _at(where, _("The journey is too large or too deeply nested."))
        if isinstance(value, str):
            message = _text_problem(value)
            if message:
                return _located(data, where, message)
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                return _located(data, where, _("A number, not NaN or infinity."))
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or _text_problem(key):
                    return _located(data, where, _("Keys are texts without NUL characters."))
                stack.append((item, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif value is not None and not isinstance(value, bool | int):
            return _located(data, where, _("Not a JSON value."))
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return _("A text may not contain the NUL character.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _("A text may not contain a lone surrogate.")
    return None


def _located(data: dict[str, Any], where: str, message: str) -> Problem:
    """The problem on the step whose JSON holds ``where`` (``steps[3].text`` -> step, ``text``)."""
    match = re.match(r"^steps\[(\d+)\]\.?(.*)$", where)
    steps = data.get("steps")
    # A top-level key may itself be spelled "steps[7]": only a real step of the list is looked up.
    if match and isinstance(steps, list) and int(match.group(1)) < len(steps):
        step = steps[int(match.group(1))]
        if isinstance(step, dict) and isinstance(step.get("id"), str) and STEP_ID.match(step["id"]):
            return Problem(step["id"], match.group(2)[:200], message)
    return _at(where[:200], message)


# --- steps ---------------------------------------------------------------------------------------


def _steps(data: dict[str, Any], problems: list[Problem], *, project, strict: bool) -> dict[str, Step]:
    raw_steps = data.get("steps", [])
    steps: dict[str, Step] = {}
    if raw_steps is None:
        raw_steps = []
    if not isinstance(raw_steps, list):
        problems.append(_at("steps", _("Steps are a list.")))
        return steps
    if len(raw_steps) > MAX_STEPS:
        # Checking 10,000 steps one by one would answer 10,000 problems: one is enough.
        problems.append(
            _at(
                "steps",
                _("At most %(max_steps)s steps (there are %(raw_steps)s).")
                % {"max_steps": MAX_STEPS, "raw_steps": len(raw_steps)},
            )
        )
        return steps
    ctx = CheckContext(project=project, definition=data, strict=strict)
    for index, raw in enumerate(raw_steps):
        where = f"steps[{index}]"
        if not isinstance(raw, dict):
            problems.append(_at(where, _("A step is a JSON object.")))
            continue
        step_id = raw.get("id")
        if not isinstance(step_id, str) or not STEP_ID.match(step_id):
            problems.append(_at(f"{where}.id", _("An id of 1-64 letters, digits, - or _.")))
            continue
        if step_id in steps:
            problems.append(
                Problem(step_id, "id", _("Two steps are called %(step_id)s.") % {"step_id": repr(step_id)})
            )
            continue
        type_name = raw.get("type")
        kind = step_type(type_name) if isinstance(type_name, str) else None
        if kind is None:
            message = f"Unknown step type {_show(type_name)}." if type_name else "Give the step a type."
            problems.append(Problem(step_id, "type", message))
            steps[step_id] = Step(step_id, type_name if isinstance(type_name, str) else "", raw, {})
            continue
        problems += _ui_problems(step_id, raw.get("ui"))
        step_problems, outlets = _registry_check(kind, step_id, raw, ctx)
        problems += step_problems
        steps[step_id] = Step(step_id, kind.type, raw, outlets)
    return steps


def _ui_problems(step_id: str, ui: Any) -> list[Problem]:
    if ui is None:
        return []
    if not isinstance(ui, dict) or any(
        not isinstance(ui.get(axis), int | float) or isinstance(ui.get(axis), bool) for axis in ("x", "y")
    ):
        return [Problem(step_id, "ui", _('The canvas position is {"x": number, "y": number}.'))]
    return []


def _registry_check(kind, step_id: str, raw: dict[str, Any], ctx: CheckContext):
    """The step module's problems and outlets, never an exception: a check that raises on odd
    input is a bug in that module, logged, and reported as a problem of the step."""
    try:
        found = list(kind.check(raw, ctx) or [])
    except Exception:
        logger.exception("journey step check of %s raised", kind.type)
        found = [Problem(step_id, "", _("This step's settings could not be read; check every field."))]
    problems = [p if p.step == step_id else replace(p, step=step_id) for p in found if isinstance(p, Problem)]
    try:
        raw_outlets = kind.outlets(raw)
        outlets = dict(raw_outlets) if isinstance(raw_outlets, dict) else {}
    except Exception:
        logger.exception("journey step outlets of %s raised", kind.type)
        return [*problems, Problem(step_id, "next", _("This step's branches could not be read."))], {}
    clean: dict[str, str | None] = {}
    for outlet, target in outlets.items():
        if target is not None and not isinstance(target, str):
            problems.append(
                Problem(
                    step_id, outlet_field(raw, str(outlet)), _("A branch leads to a step id, or null to end.")
                )
            )
            target = None
        clean[str(outlet)] = target
    return problems, clean


# Outlets written as keys of the step (ADR 0007); the others live inside buttons, events, variants.
_KEY_OUTLETS = frozenset({"next", "outside_window", "yes", "no", "timeout", "success", "failure"})


def outlet_field(raw: dict[str, Any], outlet: str) -> str:
    """The field of the step's JSON an outlet is written in (for the builder to mark)."""
    if outlet in _KEY_OUTLETS:
        return outlet
    if outlet.startswith("button:"):
        return f"buttons.{outlet.removeprefix('button:')}"
    if outlet.startswith("event") and outlet.removeprefix("event").isdigit():
        return f"events[{int(outlet.removeprefix('event')) - 1}].next"
    variants = raw.get("variants")
    if isinstance(variants, list):
        for i, variant in enumerate(variants):
            if isinstance(variant, dict) and variant.get("name") == outlet:
                return f"variants[{i}].next"
    return f"outlets.{outlet}"


def _check_graph(steps: dict[str, Step], problems: list[Problem]) -> None:
    """Every outlet leads to a step that exists, no path comes back to a step (no loops), and every
    step can be reached from the first one (a step nobody reaches is a mistake, not a draft)."""
    dangling = False
    for step in steps.values():
        for outlet, target in step.outlets.items():
            if target is not None and target not in steps:
                dangling = True
                problems.append(
                    Problem(
                        step.id,
                        outlet_field(step.data, outlet),
                        _("There is no step %(target)s.") % {"target": _show(target)},
                    )
                )
    # Iterative depth-first search (a recursive one would hit Python's limit on a long chain).
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in steps:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(steps[root].outlets.items()))]
        while stack:
            step_id, outlets = stack[-1]
            advanced = False
            for outlet, target in outlets:
                if target is None or target not in steps:
                    continue
                if state.get(target) == 1:
                    problems.append(
                        Problem(
                            step_id,
                            outlet_field(steps[step_id].data, outlet),
                            _("Going to %(target)s makes a loop: a journey runs one way.")
                            % {"target": repr(target)},
                        )
                    )
                elif target not in state:
                    state[target] = 1
                    stack.append((target, iter(steps[target].outlets.items())))
                    advanced = True
                    break
            if not advanced:
                state[step_id] = 2
                stack.pop()
    if not steps or dangling:
        # A branch to a misspelt step also strands the step it meant: one problem, not two.
        return
    first = next(iter(steps))
    reached = {first}
    todo = [first]
    while todo:
        for target in steps[todo.pop()].outlets.values():
            if target in steps and target not in reached:
                reached.add(target)
                todo.append(target)
    for step_id in steps:
        if step_id not in reached:
            problems.append(
                Problem(
                    step_id,
                    "id",
                    _("No branch leads to %(step_id)s from the first step %(first)s.")
                    % {"step_id": repr(step_id), "first": repr(first)},
                )
            )


# --- entries -------------------------------------------------------------------------------------

_ENTRY_KEYS = {
    "event": frozenset({"type", "event", "conditions"}),
    "segment": frozenset({"type", "segment", "rule", "schedule"}),
    "api": frozenset({"type"}),
}


def _entries(data: dict[str, Any], problems: list[Problem], *, project, strict: bool) -> tuple[Entry, ...]:
    if data.get("entries") is not None and data.get("entry") is not None:
        problems.append(_at("entries", _("Give entry (one) or entries (a list), not both.")))
        return ()
    raw = data.get("entries")
    listed = raw is not None
    if raw is None:
        raw = [data["entry"]] if data.get("entry") is not None else []
    if not isinstance(raw, list) or not raw:
        problems.append(_at("entry", _("A journey needs an entry: an event, a segment or the API.")))
        return ()
    if len(raw) > MAX_ENTRIES:
        problems.append(_at("entries", _("At most %(max_entries)s entries.") % {"max_entries": MAX_ENTRIES}))
        return ()
    entries = []
    for i, entry in enumerate(raw):
        where = f"entries[{i}]" if listed else "entry"
        if not isinstance(entry, dict):
            problems.append(_at(where, _("An entry is a JSON object.")))
            continue
        kind = entry.get("type")
        if not isinstance(kind, str) or kind not in ENTRY_TYPES:
            problems.append(_at(f"{where}.type", _("One of event, segment, api.")))
            continue
        for key in entry:
            if key not in _ENTRY_KEYS[kind]:
                problems.append(
                    _at(f"{where}.{str(key)[:64]}", _("Unknown field of a %(kind)s entry.") % {"kind": kind})
                )
        schedule = None
        if kind == "event":
            event = entry.get("event")
            if not isinstance(event, str) or not event.strip():
                problems.append(_at(f"{where}.event", _("Name the event that starts the journey.")))
            elif len(event) > MAX_EVENT_NAME:
                problems.append(
                    _at(
                        f"{where}.event",
                        _("At most %(max_event_name)s characters.") % {"max_event_name": MAX_EVENT_NAME},
                    )
                )
            problems += check_conditions(entry.get("conditions"), f"{where}.conditions")
        elif kind == "segment":
            problems += _audience_problems(entry, where, project=project, strict=strict)
            schedule = _schedule(entry.get("schedule"), f"{where}.schedule", problems)
        entries.append(Entry(kind, entry, schedule))
    if sum(1 for e in entries if e.type == "api") > 1:
        problems.append(_at("entries", _("One api entry is enough.")))
    return tuple(entries)


def _audience_problems(
    entry: dict[str, Any], where: str, *, project, strict: bool, step: str | None = None
) -> list[Problem]:
    """``segment`` (a saved segment's public id) or ``rule`` (a rule tree, or its text form), not
    both; with a project, the segment must be one of its segments and the rule valid there."""
    segment, rule = entry.get("segment"), entry.get("rule")
    prefix = f"{where}." if where else ""
    if (segment is None) == (rule is None):
        return [Problem(step, f"{prefix}segment", _("Give a segment or a rule (one of them)."))]
    if segment is not None:
        try:
            segment_id = uuid.UUID(segment) if isinstance(segment, str) else None
        except ValueError:
            segment_id = None
        if segment_id is None:
            return [Problem(step, f"{prefix}segment", _("A segment's id (a UUID, as in GET /segments)."))]
        if project is not None:
            from subscribers.models import Segment

            if not Segment.objects.for_project(project).filter(public_id=segment_id).exists():
                return [
                    Problem(
                        step,
                        f"{prefix}segment",
                        _("There is no segment %(segment)s in this project.") % {"segment": segment},
                    )
                ]
        return []
    return _rule_problems(rule, f"{prefix}rule", project=project, step=step)


def _rule_problems(rule: Any, where: str, *, project, step: str | None) -> list[Problem]:
    from subscribers.errors import InvalidInput
    from subscribers.segments.text import RuleSyntaxError, parse_rule

    if isinstance(rule, str):
        if len(rule) > 10_000:
            return [Problem(step, where, _("A rule of at most 10,000 characters."))]
        try:
            rule = parse_rule(rule)
        except RuleSyntaxError as exc:
            return [Problem(step, where, _("The rule is not valid: %(exc)s.") % {"exc": exc})]
        except (RecursionError, ValueError):
            return [Problem(step, where, _("The rule is not valid."))]
    if not isinstance(rule, dict) or not isinstance(rule.get("type"), str):
        return [Problem(step, where, _('A rule is a rule tree ({"type": ...}) or its text form.'))]
    if project is not None:
        from subscribers.segments.validate import validate_rule

        try:
            validate_rule(project, rule)
        except InvalidInput as exc:
            return [Problem(step, where, _("The rule is not valid: %(message)s") % {"message": exc.message})]
        except (RecursionError, TypeError, ValueError, AttributeError):
            return [Problem(step, where, _("The rule is not valid."))]
    return []


_SCHEDULE_KEYS = frozenset({"at", "local_time", "every", "time"})


# A firing in year 1 or 9999 overflows when moved to UTC (a 500 at activation): no real schedule is there.
SCHEDULE_YEARS = (1970, 9000)


def _schedule(raw: Any, where: str, problems: list[Problem]) -> Schedule | None:
    """The forms ``segment_entry.next_firing`` reads (docs/journeys.md):

    ``{}``: once, at activation; ``{"at": date-time}``: once then (no offset: the journey's zone);
    ``{"local_time": "09:00", "at"?: date}``: once, at 09:00 in each subscriber's zone;
    ``{"every": "P1D"|"P2W", "time": "09:00" | "local_time": "09:00", "at"?: first day}``: recurring.
    """
    if raw is None:
        return Schedule("now")
    if not isinstance(raw, dict):
        problems.append(_at(where, _('A schedule is a JSON object ({} for "once, now").')))
        return None
    before = len(problems)
    for key in raw:
        if key not in _SCHEDULE_KEYS:
            problems.append(_at(f"{where}.{str(key)[:64]}", _("Unknown field of a schedule.")))
    clocks: dict[str, time | None] = {}
    for key in ("time", "local_time"):
        if raw.get(key) is not None:
            clocks[key] = parse_clock(raw[key])
            if clocks[key] is None:
                problems.append(_at(f"{where}.{key}", _('A time of day "HH:MM", e.g. "09:00".')))
    if "time" in clocks and "local_time" in clocks:
        problems.append(_at(f"{where}.time", _("Give time (the journey's zone) or local_time, not both.")))
    local = clocks.get("local_time")
    every = None
    if raw.get("every") is not None:
        every = parse_duration(raw["every"])
        if every is None or every <= timedelta(0) or every % timedelta(days=1) or every > MAX_DURATION:
            problems.append(_at(f"{where}.every", _("Whole days or weeks, e.g. P1D, P3D or P2W.")))
        if not clocks:
            problems.append(_at(f"{where}.time", _('A recurring entry fires at a time of day "HH:MM".')))
    elif "time" in clocks:
        problems.append(_at(f"{where}.time", _("A time of day goes with every (recurring); once: use at.")))
    at = day = None
    if raw.get("at") is not None:
        if every is not None or local is not None:
            # The first day (a date; a date-time's day counts).
            day = _date(raw["at"])
            if day is None or not SCHEDULE_YEARS[0] <= day.year <= SCHEDULE_YEARS[1]:
                problems.append(_at(f"{where}.at", _("The day, e.g. 2026-12-24 (years 1970 to 9000).")))
        else:
            at = _datetime(raw["at"])
            if at is None or not SCHEDULE_YEARS[0] <= at.year <= SCHEDULE_YEARS[1]:
                problems.append(
                    _at(
                        f"{where}.at",
                        _("An ISO date and time, e.g. 2026-12-24T09:00:00+01:00 (years 1970 to 9000)."),
                    )
                )
    if len(problems) > before:
        return None
    if every is not None:
        return Schedule(
            "recurring", day=day, every=every, time=clocks.get("time") or local, local_time=local is not None
        )
    if local is not None:
        return Schedule("local", day=day, time=local, local_time=True)
    if at is not None:
        return Schedule("at", at=at)
    return Schedule("now")


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        moment = _datetime(value)
        return moment.date() if moment is not None else None


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


# --- conditions ----------------------------------------------------------------------------------

_TEXT_OPS = frozenset({"contains", "starts_with"})
_ORDER_OPS = frozenset({"gt", "gte", "lt", "lte"})


def check_conditions(conditions: Any, where: str, *, step: str | None = None) -> list[Problem]:
    """Problems of a condition list (entries, goals, a wait for an event), each naming the field
    (``entry.conditions[0].value``). The syntax only: what matches is ``conditions.matches``."""
    if conditions is None:
        return []
    if not isinstance(conditions, list):
        return [Problem(step, where, _("Conditions are a list (all must hold)."))]
    if len(conditions) > MAX_CONDITIONS:
        return [
            Problem(
                step, where, _("At most %(max_conditions)s conditions.") % {"max_conditions": MAX_CONDITIONS}
            )
        ]
    problems: list[Problem] = []
    for i, condition in enumerate(conditions):
        problems += _condition_problems(condition, f"{where}[{i}]", step)
    return problems


def _condition_problems(condition: Any, where: str, step: str | None) -> list[Problem]:
    if not isinstance(condition, dict):
        return [Problem(step, where, _('A condition is {"attribute", "op", "value"}.'))]
    problems = [
        Problem(step, f"{where}.{str(key)[:64]}", _("Unknown field of a condition."))
        for key in condition
        if key not in ("attribute", "op", "value")
    ]
    attribute = condition.get("attribute")
    if not isinstance(attribute, str) or not attribute.strip() or len(attribute) > 64:
        problems.append(Problem(step, f"{where}.attribute", _("Name the attribute (1-64 characters).")))
    op = condition.get("op")
    if not isinstance(op, str) or op not in OPS:
        problems.append(Problem(step, f"{where}.op", "One of " + ", ".join(OPS) + "."))
        return problems
    problem = _value_problem(op, condition.get("value", _MISSING)) or _matcher_problem(condition)
    if problem:
        problems.append(Problem(step, f"{where}.value", problem))
    return problems


def _matcher_problem(condition: dict[str, Any]) -> str | None:
    """What the matcher itself refuses (``conditions.check``: e.g. a regex feature its linear-time
    engine does not run), so nothing passes here that cannot match there."""
    try:
        from .conditions import check
    except ImportError:  # the messaging slice's module, not merged yet
        return None
    try:
        # The attribute is judged above: the matcher is asked about the op and value only.
        found = check([{"attribute": "a", "op": condition.get("op"), "value": condition.get("value")}])
    except Exception:
        logger.exception("conditions.check raised")
        return _("This condition could not be checked.")
    return found[0].removeprefix("condition 1: ")[:300] if found else None


_MISSING = object()


def _value_problem(op: str, value: Any) -> str | None:
    """What is wrong with a condition's value for its op, or None."""
    if op == "exists":
        ok = value is _MISSING or isinstance(value, bool)
        return None if ok else "true (is set) or false (is not set)."
    if value is _MISSING:
        return _("Give a value.")
    if op in ("eq", "ne"):
        values = value if isinstance(value, list) else [value]
        if not values or any(v is None or isinstance(v, dict | list) for v in values):
            return _("A text, a number, true or false (or a list of them).")
        if len(values) > MAX_KEYWORDS or any(isinstance(v, str) and len(v) > MAX_TEXT for v in values):
            return _("At most %(max_keywords)s values of at most 1,000 characters.") % {
                "max_keywords": MAX_KEYWORDS
            }
        return None
    if op in _TEXT_OPS:
        values = value if isinstance(value, list) else [value]
        if not values or any(not isinstance(v, str) or not v.strip() for v in values):
            return _("A text that is not empty (or a list of them).")
        if len(values) > MAX_KEYWORDS or any(len(v) > 200 for v in values):
            return _("At most %(max_keywords)s texts of at most 200 characters.") % {
                "max_keywords": MAX_KEYWORDS
            }
        return None
    if op == "keyword":
        return _keyword_problem(value)
    if op == "regex":
        return _regex_problem(value)
    if op in _ORDER_OPS:
        if isinstance(value, bool) or not (isinstance(value, int | float) or _orderable_text(value)):
            return _("A number, or an ISO date or date-time.")
        if isinstance(value, float) and value != value:  # NaN compares false with everything
            return _("A number, or an ISO date or date-time.")
    return None


def _orderable_text(value: Any) -> bool:
    """A number written as text, or an ISO date / date-time (compared as text)."""
    if not isinstance(value, str) or len(value) > 40:
        return False
    try:
        float(value)
    except ValueError:
        return _datetime(value) is not None or _date(value) is not None
    return True


def _keyword_problem(value: Any) -> str | None:
    from .keywords import fold

    words = value if isinstance(value, list) else [value]
    if not words:
        return _("Give at least one keyword.")
    if len(words) > MAX_KEYWORDS:
        return _("At most %(max_keywords)s keywords.") % {"max_keywords": MAX_KEYWORDS}
    for word in words:
        if not isinstance(word, str) or len(word) > 200:
            return _("A keyword is a text of at most 200 characters.")
        if not fold(word):
            return _("The keyword %(word)s has no letters or digits.") % {"word": _show(word)}
    return None


def _regex_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return _("A regular expression (text).")
    if len(value) > MAX_REGEX:
        return _("A regular expression of at most %(max_regex)s characters.") % {"max_regex": MAX_REGEX}
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        return _("Not a valid regular expression: %(value)s.") % {"value": str(exc)[:200]}
    return None


# --- settings ------------------------------------------------------------------------------------


def _settings(raw: Any, problems: list[Problem]) -> Settings:
    if not isinstance(raw, dict):
        problems.append(_at("settings", _("Settings are a JSON object.")))
        return Settings()
    for key in raw:
        if key not in SETTINGS_KEYS:
            problems.append(_at(f"settings.{str(key)[:64]}", _("Unknown setting.")))
    reentry = raw.get("reentry", "after_exit")
    if reentry is None:
        reentry = "after_exit"
    if not isinstance(reentry, str) or reentry not in REENTRY:
        problems.append(_at("settings.reentry", _("One of never, after_exit, any_time.")))
        reentry = "after_exit"
    gap = _duration_setting(raw.get("reentry_gap"), "settings.reentry_gap", problems)
    cap, cap_period = _entry_cap(raw.get("entry_cap"), problems)
    silent, silent_channels = _silent_hours(raw.get("silent_hours"), problems)
    zone = raw.get("fallback_time_zone")
    if zone is None:
        zone = "UTC"
    elif not valid_time_zone(zone):
        problems.append(_at("settings.fallback_time_zone", _("An IANA time zone, e.g. Europe/Berlin.")))
        zone = "UTC"
    return Settings(
        reentry=reentry,
        reentry_gap=gap,
        entry_cap=cap,
        entry_cap_period=cap_period,
        silent_hours=silent,
        silent_channels=silent_channels,
        fallback_time_zone=zone,
        goal=_goal(raw.get("goal"), problems),
    )


def _duration_setting(value: Any, where: str, problems: list[Problem]) -> timedelta | None:
    if value is None:
        return None
    duration = parse_duration(value)
    if duration is None or duration <= timedelta(0) or duration > MAX_DURATION:
        problems.append(_at(where, _("An ISO 8601 duration such as PT1H, P1D or P2W (at most 3 years).")))
        return None
    return duration


def _entry_cap(raw: Any, problems: list[Problem]) -> tuple[int | None, timedelta | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        problems.append(_at("settings.entry_cap", _('The cap is {"count": N, "period": "P30D"}.')))
        return None, None
    for key in raw:
        if key not in ("count", "period"):
            problems.append(_at(f"settings.entry_cap.{str(key)[:64]}", _("Unknown field.")))
    count = raw.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1_000_000:
        problems.append(_at("settings.entry_cap.count", _("A whole number of entries, at least 1.")))
        count = None
    period = _duration_setting(raw.get("period"), "settings.entry_cap.period", problems)
    return count, period


def _silent_hours(raw: Any, problems: list[Problem]) -> tuple[tuple[str, str] | None, tuple[str, ...] | None]:
    """The silent hours (start, end) and the channels they hold (None: every channel)."""
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        problems.append(
            _at("settings.silent_hours", _('Silent hours are {"start": "21:00", "end": "08:00"}.'))
        )
        return None, None
    for key in raw:
        if key not in ("start", "end", "channels"):
            problems.append(_at(f"settings.silent_hours.{str(key)[:64]}", _("Unknown field.")))
    channels = _silent_channels(raw.get("channels"), problems)
    bounds = []
    for key in ("start", "end"):
        clock = parse_clock(raw.get(key))
        if clock is None:
            problems.append(_at(f"settings.silent_hours.{key}", _('A time of day "HH:MM", e.g. "21:00".')))
        bounds.append(clock)
    if None in bounds:
        return None, None
    if bounds[0] == bounds[1]:
        problems.append(_at("settings.silent_hours.end", _("The end differs from the start.")))
        return None, None
    return (raw["start"].strip(), raw["end"].strip()), channels


def _silent_channels(raw: Any, problems: list[Problem]) -> tuple[str, ...] | None:
    if raw is None:
        return None
    # Each channel once, as reachability's list: a definition stores what was sent, so a list of
    # 10,000 "email" would be kept (and shown) as such.
    if not isinstance(raw, list) or not 1 <= len(raw) <= len(CHANNELS):
        problems.append(
            _at(
                "settings.silent_hours.channels",
                _("A list of the channels to hold: %(value)s.") % {"value": ", ".join(CHANNELS)},
            )
        )
        return None
    for i, channel in enumerate(raw):
        if not isinstance(channel, str) or channel not in CHANNELS:
            problems.append(
                _at(
                    f"settings.silent_hours.channels[{i}]",
                    _("One of %(value)s.") % {"value": ", ".join(CHANNELS)},
                )
            )
        elif channel in raw[:i]:
            problems.append(
                _at(
                    f"settings.silent_hours.channels[{i}]",
                    _("%(channel)s is listed twice.") % {"channel": channel},
                )
            )
    return tuple(dict.fromkeys(c for c in raw if isinstance(c, str) and c in CHANNELS))


def _goal(raw: Any, problems: list[Problem]) -> Goal | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(_at("settings.goal", _('A goal is {"event", "conditions", "window", "exit"}.')))
        return None
    before = len(problems)
    for key in raw:
        if key not in ("event", "conditions", "window", "exit"):
            problems.append(_at(f"settings.goal.{str(key)[:64]}", _("Unknown field of a goal.")))
    event = raw.get("event")
    if not isinstance(event, str) or not event.strip() or len(event) > MAX_EVENT_NAME:
        problems.append(_at("settings.goal.event", _("Name the event that counts as a conversion.")))
    problems += check_conditions(raw.get("conditions"), "settings.goal.conditions")
    window_text = raw.get("window")
    window_text = "P7D" if window_text is None else window_text
    window = _duration_setting(window_text, "settings.goal.window", problems)
    exit_ = raw.get("exit", False)
    if not isinstance(exit_, bool):
        problems.append(_at("settings.goal.exit", _("true (leave the journey when reached) or false.")))
    if len(problems) > before or window is None:
        return None
    return Goal(event.strip(), list(raw.get("conditions") or []), window, exit_)
