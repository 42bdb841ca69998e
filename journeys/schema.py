"""The JSON Schema (draft 2020-12) of the journey JSON, served at ``GET /api/v1/journeys/schema``.

For editors and API clients: it describes the shape (fields, types, formats, outlets) of every
entry, setting and step type of ADR 0007. ``definition.parse`` stays the judge: the schema cannot
say that an outlet names an existing step, that the graph has no loop, that a template exists or
that a keyword is free; those problems come back from the API as 422 with the step and field.

A step type registered by its own module (``send_email``, ``send_push``) describes its own fields
with an optional ``json_schema() -> dict`` on the step type; without one it is listed with its id
and type only, so a new channel never needs an edit here.
"""

from __future__ import annotations

from typing import Any

from .definition import CHANNELS, MAX_CONDITIONS, MAX_ENTRIES, MAX_STEPS, OPS, REENTRY
from .steps import types as registered_types

SCHEMA_ID = "https://schemas.wcp.local/journey/1.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

_DURATION = r"^[Pp](\d+[Ww])?(\d+[Dd])?([Tt](\d+[Hh])?(\d+[Mm])?(\d+[Ss])?)?$"
_SIGNED_DURATION = r"^-?[Pp](\d+[Ww])?(\d+[Dd])?([Tt](\d+[Hh])?(\d+[Mm])?(\d+[Ss])?)?$"
_CLOCK = r"^([01]\d|2[0-3]):[0-5]\d$"
_LANGUAGE = r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


def _step(type_: str, description: str, fields: dict[str, Any], required: tuple[str, ...] = ()) -> dict:
    """A step: id, type, ui and its own fields; nothing else."""
    return _obj(
        {
            "id": _ref("stepId"),
            "type": {"const": type_},
            "ui": _ref("ui"),
            **fields,
        },
        ("id", "type", *required),
        description=description,
    )


TARGET = _ref("target")

STEP_SCHEMAS: dict[str, dict[str, Any]] = {
    "whatsapp_template": _step(
        "whatsapp_template",
        "Send an approved WhatsApp template. Leaves by `next` after the send (with `buttons`: when "
        "no button was tapped within `button_timeout`), or by `button:<text>`.",
        {
            "template": _obj(
                {"name": {"type": "string", "minLength": 1}, "language": {"type": "string", "minLength": 1}},
                ("name", "language"),
            ),
            "bindings": {
                "type": "object",
                "description": "Liquid per placeholder, as in campaigns: "
                '{"body": {"1": "{{ subscriber.name }}"}} or {"body.1": "..."}; '
                "{{ event.<attr> }} and {{ values.<key> }} too.",
                "additionalProperties": {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "object", "additionalProperties": {"type": "string"}},
                    ]
                },
            },
            "header_media_url": {"type": "string", "maxLength": 2000},
            "buttons": {
                "type": "object",
                "description": "Quick-reply button text -> the step it leads to.",
                "additionalProperties": TARGET,
            },
            "button_timeout": _ref("duration"),
            "next": TARGET,
        },
        ("template",),
    ),
    "whatsapp_text": _step(
        "whatsapp_text",
        "Send a text (Liquid) inside the 24 h service window; `outside_window` when it is closed. "
        "`texts`: the same text per language.",
        {
            "text": {"type": "string", "minLength": 1, "maxLength": 4096},
            "texts": {
                "type": "object",
                "description": 'Translations by the subscriber\'s Language tag: {"de": "...", "en": "..."}; '
                "exact locale, then base language (de_AT reads de), else `text`.",
                "maxProperties": 20,
                "propertyNames": {"pattern": _LANGUAGE},
                "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 4096},
            },
            "next": TARGET,
            "outside_window": TARGET,
        },
        ("text",),
    ),
    "wait": {
        **_step(
            "wait",
            "Wait for exactly one of: a duration, a time of day (subscriber's zone), a date, or a date "
            "taken from a tag or the entry event's attribute (with an offset).",
            {
                "duration": _ref("duration"),
                "until_time": _ref("clock"),
                "until_date": {"type": "string", "description": "ISO 8601 date-time."},
                "until_attribute": _obj(
                    {
                        "source": {"enum": ["tag", "event"]},
                        "name": {"type": "string", "minLength": 1},
                        "offset": {"type": "string", "pattern": _SIGNED_DURATION},
                    },
                    ("source", "name"),
                ),
                "next": TARGET,
            },
        ),
        "oneOf": [
            {"required": ["duration"]},
            {"required": ["until_time"]},
            {"required": ["until_date"]},
            {"required": ["until_attribute"]},
        ],
    },
    "wait_event": _step(
        "wait_event",
        "Wait for up to three events (each with conditions; `of_step`: only about the message that "
        "step sent). Leaves by `event1`..`event3` (each item's `next`) or, after `timeout`, by "
        "`timeout_next`.",
        {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": _obj(
                    {
                        "event": {"type": "string", "minLength": 1},
                        "conditions": _ref("conditions"),
                        "of_step": {"anyOf": [_ref("stepId"), {"type": "null"}]},
                        "next": TARGET,
                    },
                    ("event",),
                ),
            },
            "timeout": _ref("duration"),
            "timeout_next": TARGET,
        },
        ("events", "timeout"),
    ),
    "segment_split": {
        **_step(
            "segment_split",
            "`yes` when the subscriber is in the segment (or matches the rule) now, else `no`.",
            {"segment": _ref("uuid"), "rule": _ref("rule"), "yes": TARGET, "no": TARGET},
        ),
        "oneOf": [{"required": ["segment"]}, {"required": ["rule"]}],
    },
    "reachability": {
        **_step(
            "reachability",
            "Where the subscriber can be reached now (whatsapp: a number and no opt-out; email: an "
            "address that did not bounce and no opt-out; push: an active device and no opt-out). "
            "One `channel`: leaves by `yes` or `no`. A `channels` list (omnichannel fallbacks): "
            "leaves by the first listed channel that reaches the subscriber (the key named like "
            "the channel holds its target), else by `none`.",
            {
                "channel": {"enum": list(CHANNELS)},
                "yes": TARGET,
                "no": TARGET,
                "channels": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": len(CHANNELS),
                    "uniqueItems": True,
                    "items": {"enum": list(CHANNELS)},
                },
                **dict.fromkeys(CHANNELS, TARGET),
                "none": TARGET,
            },
        ),
        "oneOf": [{"required": ["channel"]}, {"required": ["channels"]}],
    },
    "ab_split": _step(
        "ab_split",
        "A/B/n split, sticky per subscriber; percents sum to 100. Leaves by the variant's name.",
        {
            "variants": {
                "type": "array",
                "minItems": 2,
                "maxItems": 5,
                "items": _obj(
                    {
                        "name": {"type": "string", "minLength": 1, "maxLength": 64},
                        "percent": {"type": "integer", "minimum": 1, "maximum": 100},
                        "next": TARGET,
                    },
                    ("name", "percent"),
                ),
            }
        },
        ("variants",),
    ),
    "update_tags": _step(
        "update_tags",
        'Set tags (a value, or {"event_attribute": name} from the entry event) and remove tags.',
        {
            "set": {
                "type": "object",
                "additionalProperties": {
                    "anyOf": [
                        {"type": ["string", "number", "boolean", "null"]},
                        {"type": "array"},
                        _obj({"event_attribute": {"type": "string", "minLength": 1}}, ("event_attribute",)),
                    ]
                },
            },
            "remove": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "next": TARGET,
        },
    ),
    "webhook": _step(
        "webhook",
        "POST JSON to a public https/http URL (SSRF-checked) with `Idempotency-Key: <run>:<step>`; "
        "`success` on 2xx, `failure` after the retries.",
        {
            "url": {"type": "string", "minLength": 1, "maxLength": 2000},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "body": {"description": "Any JSON; Liquid in its strings."},
            "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 30},
            "retries": {"type": "integer", "minimum": 0, "maximum": 5},
            "success": TARGET,
            "failure": TARGET,
        },
        ("url",),
    ),
    "exit": _step("exit", "The run leaves the journey here.", {}),
}


def _condition() -> dict[str, Any]:
    return _obj(
        {
            "attribute": {"type": "string", "minLength": 1, "maxLength": 64},
            "op": {"enum": list(OPS)},
            "value": {
                "description": "keyword/contains/starts_with/eq/ne: a text or a list; regex: a pattern "
                "(searched in folded text, 50 ms limit); gt..lte: a number or an ISO date; exists: "
                "true or false."
            },
        },
        ("attribute", "op"),
    )


def _entry() -> dict[str, Any]:
    segment_schedule = _obj(
        {
            "at": {
                "type": "string",
                "description": "Once: an ISO date-time. With every/local_time: the first day.",
            },
            "local_time": _ref("clock"),
            "time": _ref("clock"),
            "every": {"type": "string", "pattern": r"^[Pp](\d+[Ww])?(\d+[Dd])?$"},
        },
        description="{} once at activation; {at}; {local_time, at?}; {every, time | local_time, at?}.",
    )
    return {
        "oneOf": [
            _obj(
                {
                    "type": {"const": "event"},
                    "event": {"type": "string", "minLength": 1, "maxLength": 100},
                    "conditions": _ref("conditions"),
                },
                ("type", "event"),
            ),
            {
                **_obj(
                    {
                        "type": {"const": "segment"},
                        "segment": _ref("uuid"),
                        "rule": _ref("rule"),
                        "schedule": segment_schedule,
                    },
                    ("type",),
                ),
                "oneOf": [{"required": ["segment"]}, {"required": ["rule"]}],
            },
            _obj({"type": {"const": "api"}}, ("type",)),
        ]
    }


def _settings() -> dict[str, Any]:
    return _obj(
        {
            "reentry": {"enum": list(REENTRY), "default": "after_exit"},
            "reentry_gap": _ref("duration"),
            "entry_cap": _obj(
                {"count": {"type": "integer", "minimum": 1}, "period": _ref("duration")}, ("count",)
            ),
            "silent_hours": _obj(
                {
                    "start": _ref("clock"),
                    "end": _ref("clock"),
                    "channels": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"enum": list(CHANNELS)},
                        "description": "The send steps they hold; missing: every channel.",
                    },
                },
                ("start", "end"),
            ),
            "fallback_time_zone": {"type": "string", "description": "IANA zone, e.g. Europe/Berlin."},
            "goal": _obj(
                {
                    "event": {"type": "string", "minLength": 1, "maxLength": 100},
                    "conditions": _ref("conditions"),
                    "window": _ref("duration"),
                    "exit": {"type": "boolean"},
                },
                ("event",),
            ),
        }
    )


def journey_schema() -> dict[str, Any]:
    """The schema, with the step types registered now (built per call: it is small)."""
    steps = dict(STEP_SCHEMAS)
    for kind in registered_types():
        if kind.type in steps:
            continue
        own = getattr(kind, "json_schema", None)
        steps[kind.type] = (
            own()
            if callable(own)
            else {
                "type": "object",
                "properties": {"id": _ref("stepId"), "type": {"const": kind.type}, "ui": _ref("ui")},
                "required": ["id", "type"],
                "description": str(kind.label),
            }
        )
    step_defs = {f"step_{name}": schema for name, schema in steps.items()}
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "Journey",
        "description": "A journey as the builder saves it and the API takes it (docs/journeys.md). "
        "Give `entry` (one) or `entries` (a list). A run starts at the first step.",
        "type": "object",
        "required": ["name", "steps"],
        "properties": {
            "format": {"const": "wcp-journey/1", "description": "Set by export; optional on import."},
            "$schema": {"type": "string"},
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": {"type": "string", "maxLength": 2000},
            "entry": _ref("entry"),
            "entries": {"type": "array", "minItems": 1, "maxItems": MAX_ENTRIES, "items": _ref("entry")},
            "settings": _ref("settings"),
            "steps": {"type": "array", "maxItems": MAX_STEPS, "items": _ref("step")},
            "ui": {"type": "object", "description": "Canvas state; ignored by the engine."},
        },
        "additionalProperties": False,
        "oneOf": [{"required": ["entry"]}, {"required": ["entries"]}],
        "$defs": {
            "stepId": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
            "target": {
                "description": "The next step's id; null or missing: the run leaves the journey there.",
                "anyOf": [_ref("stepId"), {"type": "null"}],
            },
            "ui": {
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                "description": "Canvas position; ignored by the engine.",
            },
            "duration": {"type": "string", "pattern": _DURATION, "description": "ISO 8601: PT1H, P1D, P2W."},
            "clock": {"type": "string", "pattern": _CLOCK, "description": 'A time of day "HH:MM".'},
            "uuid": {
                "type": "string",
                "pattern": "^[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}$",
            },
            "rule": {
                "description": "A segment rule: its text form (as in campaigns) or the rule tree.",
                "anyOf": [{"type": "string", "minLength": 1}, {"type": "object", "required": ["type"]}],
            },
            "condition": _condition(),
            "conditions": {"type": "array", "maxItems": MAX_CONDITIONS, "items": _ref("condition")},
            "entry": _entry(),
            "settings": _settings(),
            "step": {"oneOf": [_ref(name) for name in step_defs]},
            **step_defs,
        },
    }
