"""The journey JSON parser: every problem names its step and field; no input makes it raise
anything but DefinitionError."""

from __future__ import annotations

import copy
from datetime import date, time, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journeys import steps as registry
from journeys.definition import Definition, DefinitionError, parse, parse_duration
from journeys.steps import Go, Problem, next_only


class _TestStep:
    """A step type of the tests' own, registered by the tests that need an odd check."""

    channel = ""

    def __init__(self, type_: str, outlets=next_only):
        self.type = self.label = type_
        self._outlets = outlets

    def check(self, data, ctx):
        return []

    def outlets(self, data):
        return self._outlets(data)

    def run(self, visit):
        return Go("next")


PROMO = {
    "name": "PROMO keyword",
    "entry": {
        "type": "event",
        "event": "WhatsAppReceived",
        "conditions": [{"attribute": "text", "op": "keyword", "value": "promo"}],
    },
    "settings": {"reentry": "after_exit"},
    "steps": [
        {"id": "reply", "type": "whatsapp_text", "text": "Danke! Dein Code: SUSHI20", "next": "wait"},
        {"id": "wait", "type": "wait", "duration": "PT1H", "next": "offer"},
        {
            "id": "offer",
            "type": "whatsapp_template",
            "template": {"name": "follow_up_offer", "language": "de"},
            "next": None,
        },
    ],
}


def promo(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(PROMO)
    data.update(changes)
    return data


def problems_of(data: Any, **kwargs) -> list[dict[str, Any]]:
    with pytest.raises(DefinitionError) as caught:
        parse(data, **kwargs)
    return [p.as_dict() for p in caught.value.problems]


def fields(data: Any, **kwargs) -> set[tuple[str | None, str]]:
    return {(p["step"], p["field"]) for p in problems_of(data, **kwargs)}


# --- the issue's example -------------------------------------------------------------------------


def test_the_issues_promo_example_parses_as_written():
    definition = parse(PROMO)
    assert isinstance(definition, Definition)
    assert definition.name == "PROMO keyword"
    assert definition.first == "reply"
    assert [e.type for e in definition.entries] == ["event"]
    assert definition.settings.reentry == "after_exit"
    assert definition.steps["reply"].outlets == {"next": "wait", "outside_window": None}
    assert definition.steps["offer"].outlets == {"next": None}


# --- graph ---------------------------------------------------------------------------------------


def test_an_outlet_to_a_missing_step_names_the_step_and_outlet():
    data = promo()
    data["steps"][1]["next"] = "ofer"
    assert problems_of(data) == [{"step": "wait", "field": "next", "message": "There is no step 'ofer'."}]


def test_a_loop_is_refused_at_the_step_that_closes_it():
    data = promo()
    data["steps"][2]["next"] = "reply"
    found = problems_of(data)
    assert len(found) == 1 and found[0]["step"] == "offer" and found[0]["field"] == "next"
    assert "loop" in found[0]["message"]


def test_a_self_loop_is_a_loop():
    data = promo()
    data["steps"][1]["next"] = "wait"
    # and the step after it is stranded
    assert fields(data) == {("wait", "next"), ("offer", "id")}


def test_an_unreachable_step_is_a_problem_named_by_its_id():
    data = promo()
    data["steps"].append({"id": "orphan", "type": "exit"})
    assert problems_of(data) == [
        {
            "step": "orphan",
            "field": "id",
            "message": "No branch leads to 'orphan' from the first step 'reply'.",
        }
    ]


def test_branch_outlets_name_their_field():
    data = promo()
    data["steps"][2]["buttons"] = {"Yes": "nowhere"}
    data["steps"].append(
        {
            "id": "split",
            "type": "ab_split",
            "variants": [
                {"name": "A", "percent": 50, "next": None},
                {"name": "B", "percent": 50, "next": "gone"},
            ],
        }
    )
    data["steps"][2]["next"] = "split"
    assert fields(data) == {("offer", "buttons.Yes"), ("split", "variants[1].next")}


def test_a_long_chain_of_steps_is_checked_without_recursion():
    steps = [{"id": f"s{i}", "type": "wait", "duration": "PT1M", "next": f"s{i + 1}"} for i in range(199)]
    steps.append({"id": "s199", "type": "exit"})
    definition = parse({"name": "long", "entry": {"type": "api"}, "steps": steps})
    assert len(definition.steps) == 200


def test_ids_duplicates_and_types():
    data = promo()
    data["steps"] += [
        {"id": "wait", "type": "exit"},
        {"id": "bad id!", "type": "exit"},
        {"id": "x" * 65, "type": "exit"},
        {"id": "nope", "type": "teleport"},
        {"id": "untyped"},
        "not a step",
    ]
    found = fields(data)
    assert ("wait", "id") in found
    assert (None, "steps[4].id") in found and (None, "steps[5].id") in found
    assert ("nope", "type") in found and ("untyped", "type") in found
    assert (None, "steps[8]") in found


def test_strict_needs_a_step_and_a_draft_does_not():
    data = {"name": "empty", "entry": {"type": "api"}, "steps": []}
    assert parse(data).first is None
    assert fields(data, strict=True) == {(None, "steps")}


def test_a_step_check_that_raises_becomes_a_problem_of_that_step():
    class Broken(_TestStep):
        def check(self, data, ctx):
            return data["missing"].strip()  # a bug in a step module

    registry.register(Broken("broken_test_step", next_only))
    try:
        data = promo()
        data["steps"][2]["next"] = "b"
        data["steps"].append({"id": "b", "type": "broken_test_step"})
        assert fields(data) == {("b", "")}
    finally:
        registry._registry.pop("broken_test_step")


def test_step_module_problems_are_tagged_with_the_step():
    class Picky(_TestStep):
        def check(self, data, ctx):
            return [Problem(None, "text", "Write something.")] if ctx.strict else []

    registry.register(Picky("picky_test_step", next_only))
    try:
        data = promo()
        data["steps"][2]["next"] = "p"
        data["steps"].append({"id": "p", "type": "picky_test_step"})
        parse(data)
        assert problems_of(data, strict=True) == [
            {"step": "p", "field": "text", "message": "Write something."}
        ]
    finally:
        registry._registry.pop("picky_test_step")


def test_canvas_positions_are_numbers():
    data = promo()
    data["steps"][0]["ui"] = {"x": 10, "y": 20.5}
    parse(data)
    data["steps"][1]["ui"] = {"x": "left"}
    assert fields(data) == {("wait", "ui")}


# --- entries -------------------------------------------------------------------------------------


def test_entries_need_a_known_type_and_an_event_name():
    assert fields(promo(entry=None)) == {(None, "entry")}
    assert fields(promo(entry={"type": "webhook"})) == {(None, "entry.type")}
    assert fields(promo(entry={"type": "event", "event": " "})) == {(None, "entry.event")}
    assert fields(promo(entry={"type": "api", "event": "x"})) == {(None, "entry.event")}
    both = promo(entries=[{"type": "api"}])
    assert fields(both) == {(None, "entries")}
    listed = promo(entries=[{"type": "api"}, {"type": "event"}])
    del listed["entry"]
    assert fields(listed) == {(None, "entries[1].event")}


def test_up_to_twenty_entries():
    entry = {"type": "event", "event": "WhatsAppReceived"}
    listed = promo(entries=[entry] * 20)
    del listed["entry"]
    assert len(parse(listed).entries) == 20
    listed["entries"].append(entry)
    assert fields(listed) == {(None, "entries")}


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        ({"attribute": "text", "op": "like", "value": "x"}, "op"),
        ({"attribute": "", "op": "eq", "value": "x"}, "attribute"),
        ({"attribute": "text", "op": "regex", "value": "(unclosed"}, "value"),
        ({"attribute": "text", "op": "regex", "value": "a" * 501}, "value"),
        ({"attribute": "text", "op": "keyword", "value": ""}, "value"),
        ({"attribute": "text", "op": "keyword", "value": "!!!"}, "value"),
        ({"attribute": "text", "op": "keyword", "value": []}, "value"),
        ({"attribute": "text", "op": "keyword", "value": ["promo", 3]}, "value"),
        ({"attribute": "text", "op": "contains", "value": "  "}, "value"),
        ({"attribute": "n", "op": "gt", "value": "many"}, "value"),
        ({"attribute": "n", "op": "gt", "value": True}, "value"),
        ({"attribute": "n", "op": "eq"}, "value"),
        ({"attribute": "n", "op": "eq", "value": {"a": 1}}, "value"),
        ({"attribute": "n", "op": "eq", "value": None}, "value"),
        ({"attribute": "n", "op": "eq", "value": [1, [2]]}, "value"),
        ({"attribute": "a" * 65, "op": "eq", "value": 1}, "attribute"),
        ({"attribute": "n", "op": "exists", "value": "yes"}, "value"),
        ({"attribute": "n", "op": "eq", "value": 1, "case": True}, "case"),
    ],
)
def test_condition_problems_name_the_condition_and_field(condition, field):
    data = promo()
    data["entry"]["conditions"] = [{"attribute": "text", "op": "keyword", "value": "promo"}, condition]
    assert fields(data) == {(None, f"entry.conditions[1].{field}")}


def test_good_conditions_of_every_op():
    data = promo()
    data["entry"]["conditions"] = [
        {"attribute": "text", "op": "keyword", "value": ["promo", "Prómo!"]},
        {"attribute": "text", "op": "contains", "value": "sushi"},
        {"attribute": "text", "op": "starts_with", "value": "hi"},
        {"attribute": "text", "op": "regex", "value": r"^code\s*\d+$"},
        {"attribute": "total", "op": "gte", "value": 10},
        {"attribute": "at", "op": "lt", "value": "2026-12-24"},
        {"attribute": "cuisine", "op": "eq", "value": "asian"},
        {"attribute": "cuisine", "op": "ne", "value": ["thai", "indian"]},
        {"attribute": "text", "op": "contains", "value": ["sushi", "maki"]},
        {"attribute": "total", "op": "lt", "value": "100.5"},
        {"attribute": "coupon", "op": "exists", "value": False},
        {"attribute": "coupon", "op": "exists"},
    ]
    parse(data)


def test_segment_entries_and_their_schedules():
    segment = "3f0c1a52-6a3e-4b8e-9f43-6b1d2a9c7e10"

    def schedule(**given):
        return parse(promo(entry={"type": "segment", "segment": segment, **given})).entries[0].schedule

    assert schedule().kind == "now"
    assert parse(promo(entry={"type": "segment", "rule": 'E("OrderPlaced", gte, 1)', "schedule": {}}))
    once = schedule(schedule={"at": "2026-12-24T09:00:00+01:00"})
    assert (once.kind, once.at.isoformat()) == ("at", "2026-12-24T09:00:00+01:00")
    local = schedule(schedule={"local_time": "09:00", "at": "2026-12-24"})
    assert (local.kind, local.local_time, local.day, local.time) == (
        "local",
        True,
        date(2026, 12, 24),
        time(9),
    )
    assert schedule(schedule={"local_time": "09:00"}).day is None
    weekly = schedule(schedule={"every": "P2W", "time": "09:30"})
    assert (weekly.kind, weekly.every, weekly.time, weekly.local_time) == (
        "recurring",
        timedelta(weeks=2),
        time(9, 30),
        False,
    )
    daily_local = schedule(schedule={"every": "P1D", "local_time": "08:00", "at": "2027-01-01"})
    assert (daily_local.local_time, daily_local.day) == (True, date(2027, 1, 1))


ALL = {"type": "segment", "rule": "ALL"}


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"type": "segment"}, "entry.segment"),
        ({"type": "segment", "segment": "x", "rule": "ALL"}, "entry.segment"),
        ({"type": "segment", "segment": "not-a-uuid"}, "entry.segment"),
        ({"type": "segment", "rule": "E(("}, "entry.rule"),
        ({"type": "segment", "rule": 5}, "entry.rule"),
        ({**ALL, "schedule": "daily"}, "entry.schedule"),
        ({**ALL, "schedule": {"at": "tomorrow"}}, "entry.schedule.at"),
        ({**ALL, "schedule": {"every": "P1DT2H", "time": "09:00"}}, "entry.schedule.every"),
        ({**ALL, "schedule": {"every": "P1D"}}, "entry.schedule.time"),
        ({**ALL, "schedule": {"time": "09:00"}}, "entry.schedule.time"),
        ({**ALL, "schedule": {"every": "P1D", "time": "25:00"}}, "entry.schedule.time"),
        ({**ALL, "schedule": {"local_time": True}}, "entry.schedule.local_time"),
        ({**ALL, "schedule": {"local_time": "09:00", "at": "soon"}}, "entry.schedule.at"),
        (
            {**ALL, "schedule": {"every": "P1D", "time": "09:00", "local_time": "09:00"}},
            "entry.schedule.time",
        ),
        ({**ALL, "schedule": {"cron": "* * *"}}, "entry.schedule.cron"),
    ],
)
def test_segment_entry_problems(entry, field):
    assert fields(promo(entry=entry)) == {(None, field)}


def test_with_a_project_the_segment_must_be_one_of_its_own(project):
    from subscribers.models import Segment

    other = Segment.objects.create(project=project, name="VIP", rule={"type": "all"})
    data = {
        "name": "VIP",
        "entry": {"type": "segment", "segment": str(other.public_id)},
        "steps": [{"id": "bye", "type": "exit"}],
    }
    parse(data, project=project)
    from tests.factories import ProjectFactory

    assert fields(data, project=ProjectFactory()) == {(None, "entry.segment")}


# --- settings ------------------------------------------------------------------------------------


def test_every_setting_parses():
    data = promo(
        settings={
            "reentry": "any_time",
            "reentry_gap": "P1D",
            "entry_cap": {"count": 3, "period": "P30D"},
            "silent_hours": {"start": "21:00", "end": "08:00"},
            "fallback_time_zone": "Europe/Berlin",
            "goal": {
                "event": "OrderPlaced",
                "conditions": [{"attribute": "total", "op": "gte", "value": 20}],
                "window": "P3D",
                "exit": True,
            },
        }
    )
    s = parse(data).settings
    assert (s.reentry, s.reentry_gap, s.entry_cap, s.entry_cap_period) == (
        "any_time",
        timedelta(days=1),
        3,
        timedelta(days=30),
    )
    assert (s.silent_hours, s.fallback_time_zone) == (("21:00", "08:00"), "Europe/Berlin")
    assert (s.goal.event, s.goal.window, s.goal.exit) == ("OrderPlaced", timedelta(days=3), True)
    assert parse(promo(settings={"goal": {"event": "OrderPlaced"}})).settings.goal.window == timedelta(days=7)


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"reentry": "sometimes"}, "settings.reentry"),
        ({"reentry_gap": "1 day"}, "settings.reentry_gap"),
        ({"reentry_gap": "-P1D"}, "settings.reentry_gap"),
        ({"entry_cap": {"count": 0}}, "settings.entry_cap.count"),
        ({"entry_cap": {"count": True}}, "settings.entry_cap.count"),
        ({"entry_cap": {"count": 2, "period": "monthly"}}, "settings.entry_cap.period"),
        ({"entry_cap": 3}, "settings.entry_cap"),
        ({"silent_hours": {"start": "21:00"}}, "settings.silent_hours.end"),
        ({"silent_hours": {"start": "9pm", "end": "08:00"}}, "settings.silent_hours.start"),
        ({"silent_hours": {"start": "08:00", "end": "08:00"}}, "settings.silent_hours.end"),
        ({"fallback_time_zone": "Mars/Olympus"}, "settings.fallback_time_zone"),
        ({"fallback_time_zone": "../../etc/passwd"}, "settings.fallback_time_zone"),
        ({"goal": {"window": "P1D"}}, "settings.goal.event"),
        ({"goal": {"event": "X", "window": "soon"}}, "settings.goal.window"),
        ({"goal": {"event": "X", "exit": "yes"}}, "settings.goal.exit"),
        ({"goal": {"event": "X", "conditions": [{"op": "eq"}]}}, "settings.goal.conditions[0].attribute"),
        ({"goal": "OrderPlaced"}, "settings.goal"),
        ({"colour": "blue"}, "settings.colour"),
    ],
)
def test_setting_problems(given, field):
    assert (None, field) in fields(promo(settings=given))


def test_unknown_top_level_fields_are_named_and_known_extras_allowed():
    assert fields(promo(stepz=[])) == {(None, "stepz")}
    parse(promo(description="For the sushi shop", ui={"zoom": 1}, format="wcp-journey/1"))


def test_durations():
    assert parse_duration("P2W") == timedelta(weeks=2)
    assert parse_duration("pt90m") == timedelta(minutes=90)
    assert parse_duration("-PT1H", signed=True) == timedelta(hours=-1)
    for bad in ("-PT1H", "P", "PT", "P1DT", "P1Y", "P1M", "1h", 5, None, "P" + "9" * 50 + "D"):
        assert parse_duration(bad) is None, bad


# --- bad input of any shape ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [None, 0, 1.5, "journey", [], [PROMO], True, {"name": None}, {"steps": {"a": 1}}, {"entry": []}],
)
def test_not_a_journey_is_a_definition_error(data):
    with pytest.raises(DefinitionError):
        parse(data)


def test_ten_thousand_steps_are_one_problem():
    steps = [{"id": f"s{i}", "type": "exit"} for i in range(10_000)]
    assert problems_of(promo(steps=steps)) == [
        {"step": None, "field": "steps", "message": "At most 200 steps (there are 10000)."}
    ]


def test_huge_strings_are_refused_without_being_echoed():
    huge = "x" * 1_000_000
    found = problems_of(promo(name=huge, entry={"type": huge}, steps=[{"id": "a", "type": huge}]))
    assert {(p["step"], p["field"]) for p in found} == {(None, "name"), (None, "entry.type"), ("a", "type")}
    assert all(len(p["message"]) < 200 for p in found)


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ("nul\x00", ("reply", "text")),
        ("\ud800", ("reply", "text")),
        (float("nan"), ("reply", "text")),
        (float("inf"), ("reply", "text")),
        ({1, 2}, ("reply", "text")),
    ],
)
def test_unstorable_values_are_problems_on_their_step(bad, where):
    data = promo()
    data["steps"][0]["text"] = bad
    found = problems_of(data)
    assert len(found) == 1 and (found[0]["step"], found[0]["field"]) == where


def test_deep_nesting_is_refused():
    junk: Any = "x"
    for _ in range(5_000):
        junk = [junk]
    found = problems_of(promo(ui=junk))
    assert found[0]["message"] == "The journey is too large or too deeply nested."


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["PT1H", "next", "reply", "wait", "exit", "event", "keyword", "regex", "("]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "type",
                    "next",
                    "name",
                    "entry",
                    "steps",
                    "settings",
                    "op",
                    "value",
                    "events",
                    "buttons",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


def _check(data: Any) -> None:
    try:
        result = parse(data)
    except DefinitionError as exc:
        assert exc.problems and all(isinstance(p, Problem) for p in exc.problems)
        assert all(isinstance(p.field, str) and isinstance(p.message, str) for p in exc.problems)
    else:
        assert isinstance(result, Definition)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_json)
def test_fuzz_any_json_is_a_definition_or_a_definition_error(data):
    _check(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=4), junk=_json)
def test_fuzz_junk_anywhere_in_a_good_journey(path, junk):
    data = promo(
        settings={"goal": {"event": "X", "conditions": [{"attribute": "a", "op": "eq", "value": 1}]}},
    )
    node: Any = data
    for index in path[:-1]:
        children = list(node.values()) if isinstance(node, dict) else node
        if not isinstance(children, list) or not children:
            break
        candidate = children[index % len(children)]
        if not isinstance(candidate, dict | list):
            break
        node = candidate
    if isinstance(node, dict) and node:
        node[list(node)[path[-1] % len(node)]] = junk
    elif isinstance(node, list) and node:
        node[path[-1] % len(node)] = junk
    _check(data)


def test_what_the_matcher_refuses_is_a_problem_here():
    data = promo()
    data["entry"]["conditions"] = [{"attribute": "text", "op": "regex", "value": r"(a)\1"}]
    assert problems_of(data) == [
        {
            "step": None,
            "field": "entry.conditions[0].value",
            "message": "Regular expressions here may not use back-references (\\1): they cannot be "
            "matched in bounded time.",
        }
    ]
    data["entry"]["conditions"][0]["value"] = "(a)b"
    parse(data)
