"""The shape of Meta's webhook bodies, checked in one place before any handler reads them.

A signed body may still not be what Meta sends (``[]``, ``null``, ``{"entry": 5}``: a proxy, a
test tool, a bug). Such a body is refused here as a whole, with the reason, and the delivery is
marked malformed once and kept for inspection; handlers then only see the shape below, so they
cannot fail on it and be retried for nothing.

Only the envelope is strict: ``object`` / ``entry[]`` / ``changes[]`` / ``field`` / ``value``,
plus the lists inside ``value`` that handlers walk item by item. Everything else stays as Meta
sent it (unknown fields are allowed and kept), because Meta adds fields without notice.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Lists inside a change's value whose items handlers read as objects.
VALUE_LISTS = ("statuses", "messages", "contacts", "errors", "user_preferences")


class MalformedBody(ValueError):
    """The body is not JSON, or JSON that is not Meta's webhook shape. ``str()`` says why."""


class Change(BaseModel):
    model_config = ConfigDict(extra="allow")

    field: str = ""
    value: dict[str, Any] = Field(default_factory=dict)

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("value")
    @classmethod
    def _lists_of_objects(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in VALUE_LISTS:
            items = value.get(key)
            objects = isinstance(items, list) and all(isinstance(item, dict) for item in items)
            if items is not None and not objects:
                raise ValueError(f"value.{key} must be a list of objects")
        metadata = value.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ValueError("value.metadata must be an object")
        return value


class Entry(BaseModel):
    model_config = ConfigDict(extra="allow")

    # The WhatsApp Business Account id.
    id: str | int | None = None
    changes: list[Change] = Field(default_factory=list)

    @property
    def waba_id(self) -> str:
        return str(self.id or "")


class Envelope(BaseModel):
    model_config = ConfigDict(extra="allow")

    object: str = ""
    entry: list[Entry]


def parse_envelope(body: str | bytes) -> Envelope:
    """The webhook body as an Envelope; raises MalformedBody with a short reason for people."""
    try:
        return Envelope.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise MalformedBody(f"not JSON: {first['msg']}") from None
        where = ".".join(str(part) for part in first["loc"]) or "body"
        problems = exc.error_count()
        more = f" (and {problems - 1} more)" if problems > 1 else ""
        raise MalformedBody(f"not Meta's webhook shape: {where}: {first['msg']}{more}") from None
