"""Typed tags: the built-in ones backed by subscriber fields, custom ones stored as TagValue rows.

Two ways in: JSON values (API) are checked against the tag's type as they are;
text (CSV cells, form fields) is parsed into the type first. A tag name the
project does not know yet is created with the type of its first value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from controlpanel.models import Project

from .errors import InvalidInput
from .models import TagDefinition, TagType


@dataclass(frozen=True)
class BuiltinTag:
    name: str
    field: str
    type: TagType
    writable: bool = True


# Tags every project has. Their values live in Subscriber columns.
BUILTIN_TAGS: dict[str, BuiltinTag] = {
    t.name.lower(): t
    for t in [
        BuiltinTag("Name", "name", TagType.STRING),
        BuiltinTag("Email", "email", TagType.STRING),
        BuiltinTag("Language", "language", TagType.STRING),
        BuiltinTag("Country", "country", TagType.STRING),
        BuiltinTag("Time zone", "time_zone", TagType.STRING),
        BuiltinTag("External id", "external_id", TagType.STRING),
        BuiltinTag("Phone", "phone", TagType.STRING, writable=False),
        BuiltinTag("First seen", "created_at", TagType.DATETIME, writable=False),
        BuiltinTag("Last inbound", "last_inbound_at", TagType.DATETIME, writable=False),
        BuiltinTag("WhatsApp opt-in", "whatsapp_consent", TagType.BOOLEAN, writable=False),
    ]
}

TAG_NAME_RE = re.compile(r"^[\w][\w .:/-]{0,63}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_INT_RE = re.compile(r"^[+-]?(0|[1-9]\d*)$")
_DECIMAL_RE = re.compile(r"^[+-]?\d+\.\d+$")
_TRUE = {"true", "yes", "1", "y", "on"}
_FALSE = {"false", "no", "0", "n", "off"}
MAX_TEXT = 255
MAX_LIST = 100


def builtin(name: str) -> BuiltinTag | None:
    return BUILTIN_TAGS.get(name.strip().lower())


def validate_tag_name(name: str) -> str:
    name = (name or "").strip()
    if not TAG_NAME_RE.match(name):
        raise InvalidInput(
            f"Tag name {name!r} is not allowed: use 1-64 letters, digits, spaces or _ . : / -.",
            field="tags",
            code="invalid_tag_name",
        )
    return name


def infer_type(value: Any) -> TagType:
    """The type of a tag created by its first value (JSON)."""
    if isinstance(value, bool):
        return TagType.BOOLEAN
    if isinstance(value, int):
        return TagType.INTEGER
    if isinstance(value, float | Decimal):
        return TagType.DECIMAL
    if isinstance(value, list):
        return TagType.LIST
    if isinstance(value, str):
        if _DATE_RE.match(value) and _parse_d(value):
            return TagType.DATE
        if _DATETIME_RE.match(value) and _parse_dt(value):
            return TagType.DATETIME
        return TagType.STRING
    raise InvalidInput(
        f"A tag value cannot be {type(value).__name__}.", field="tags", code="invalid_tag_value"
    )


def infer_type_from_text(text: str) -> TagType:
    """The type of a tag created by its first CSV cell."""
    t = text.strip()
    if t.lower() in ("true", "false"):
        return TagType.BOOLEAN
    if _INT_RE.match(t) and not (len(t) > 1 and t.lstrip("+-").startswith("0")):
        return TagType.INTEGER
    if _DECIMAL_RE.match(t):
        return TagType.DECIMAL
    if t.startswith("[") and t.endswith("]"):
        return TagType.LIST
    return infer_type(t)


def _parse_d(value: str) -> date | None:
    # parse_date raises ValueError for well-formed impossible dates like 2026-02-30.
    try:
        return parse_date(value)
    except ValueError:
        return None


def _parse_dt(value: str, tz: tzinfo | None = None) -> datetime | None:
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is not None and timezone.is_naive(parsed):
        # Without an offset, a time is the project's (``tz``), as the panel shows every time in
        # it; without ``tz``, the active zone (the panel's views activate the project's).
        parsed = timezone.make_aware(parsed, tz)
    return parsed


def _wrong(name: str, type_: str, value: Any) -> InvalidInput:
    expected = TagType(type_).label.lower()
    return InvalidInput(
        f"Tag {name!r} expects {expected}, got {value!r}.", field=f"tags.{name}", code="wrong_tag_type"
    )


def coerce(name: str, type_: str, value: Any, *, tz: tzinfo | None = None) -> Any:
    """Check a JSON value against the tag's type; return the Python value to store.

    Lists return a list of strings; dates and datetimes accept ISO 8601 strings, a datetime
    without an offset in ``tz`` (the project's zone; default: the active one).
    """
    match type_:
        case TagType.STRING:
            if not isinstance(value, str):
                raise _wrong(name, type_, value)
            if len(value) > MAX_TEXT:
                raise InvalidInput(
                    f"Tag {name!r} is longer than {MAX_TEXT} characters.", field=f"tags.{name}"
                )
            return value
        case TagType.INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _wrong(name, type_, value)
            return value
        case TagType.DECIMAL:
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
                raise _wrong(name, type_, value)
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                raise _wrong(name, type_, value) from None
            if not number.is_finite() or abs(number) >= Decimal(10) ** 16:
                raise _wrong(name, type_, value)
            return number
        case TagType.BOOLEAN:
            if not isinstance(value, bool):
                raise _wrong(name, type_, value)
            return value
        case TagType.DATE:
            parsed = _parse_d(value) if isinstance(value, str) and _DATE_RE.match(value) else None
            if parsed is None:
                raise _wrong(name, type_, value)
            return parsed
        case TagType.DATETIME:
            parsed = _parse_dt(value, tz) if isinstance(value, str) else None
            if parsed is None:
                raise _wrong(name, type_, value)
            return parsed
        case TagType.LIST:
            if not isinstance(value, list) or not all(
                isinstance(v, str | int) and not isinstance(v, bool) for v in value
            ):
                raise _wrong(name, type_, value)
            if len(value) > MAX_LIST or any(len(str(v)) > MAX_TEXT for v in value):
                raise InvalidInput(f"Tag {name!r} has too many or too long items.", field=f"tags.{name}")
            return list(dict.fromkeys(str(v) for v in value))
    raise InvalidInput(f"Tag {name!r} has an unknown type {type_!r}.", field=f"tags.{name}")


def parse_text(name: str, type_: str, text: str, *, tz: tzinfo | None = None) -> Any:
    """Parse a CSV cell or form field into the tag's type; "" means "no value" (None).

    ``tz``: the zone of a date and time without an offset, as in coerce()."""
    t = (text or "").strip()
    if t == "":
        return None
    match type_:
        case TagType.INTEGER:
            if not _INT_RE.match(t):
                raise _wrong(name, type_, t)
            return int(t)
        case TagType.DECIMAL:
            return coerce(name, type_, t.replace(",", ".") if t.count(",") == 1 and "." not in t else t)
        case TagType.BOOLEAN:
            if t.lower() in _TRUE:
                return True
            if t.lower() in _FALSE:
                return False
            raise _wrong(name, type_, t)
        case TagType.LIST:
            if t.startswith("["):
                try:
                    return coerce(name, type_, json.loads(t))
                except json.JSONDecodeError:
                    raise _wrong(name, type_, t) from None
            return coerce(name, type_, [p.strip() for p in t.split(",") if p.strip()])
    return coerce(name, type_, t, tz=tz)


def value_columns(type_: str, value: Any) -> list[dict[str, Any]]:
    """The TagValue column values for a coerced value (one dict per row)."""
    match type_:
        case TagType.STRING:
            return [{"value_text": value}]
        case TagType.INTEGER | TagType.DECIMAL:
            return [{"value_number": Decimal(value)}]
        case TagType.BOOLEAN:
            return [{"value_bool": value}]
        case TagType.DATE:
            return [{"value_date": value}]
        case TagType.DATETIME:
            return [{"value_datetime": value}]
        case TagType.LIST:
            return [{"value_text": item} for item in value]
    raise ValueError(type_)


def display_value(type_: str, rows: list) -> Any:
    """Turn stored TagValue rows back into the JSON value of the tag."""
    if not rows:
        return None
    first = rows[0]
    match type_:
        case TagType.STRING:
            return first.value_text
        case TagType.INTEGER:
            return int(first.value_number)
        case TagType.DECIMAL:
            return format(first.value_number.normalize(), "f")
        case TagType.BOOLEAN:
            return first.value_bool
        case TagType.DATE:
            return first.value_date.isoformat()
        case TagType.DATETIME:
            return first.value_datetime.isoformat()
        case TagType.LIST:
            return [r.value_text for r in rows]
    return None


def definitions(project: Project) -> dict[str, TagDefinition]:
    """Custom tag definitions of a project by lower-cased name."""
    return {d.name.lower(): d for d in TagDefinition.objects.for_project(project)}


def get_or_create_definition(
    project: Project, name: str, first_value: Any, *, from_text: bool = False
) -> TagDefinition:
    """The definition of ``name``, created with the type of ``first_value`` if new."""
    name = validate_tag_name(name)
    existing = TagDefinition.objects.for_project(project).filter(name__iexact=name).first()
    if existing is not None:
        return existing
    type_ = infer_type_from_text(first_value) if from_text else infer_type(first_value)
    definition, _ = TagDefinition.objects.get_or_create(project=project, name=name, defaults={"type": type_})
    return definition


def hold_definitions(ids: Iterable[int]) -> set[int]:
    """Keep these tag definitions from being deleted until the transaction ends.

    Returns the ids that still exist. Every writer of tag values calls this in its transaction
    before writing, and deleting a definition locks it first (services.delete_tag), so no value
    outlives its definition. This replaces the database foreign key from tag values to their
    definition: the key checked and share-locked the definition once per value, 30,000 times
    per import chunk, and with two writers at once every check went through a MultiXact. That
    cost about 10 CPU-seconds of a million-row import (docs/benchmarks-import.md); one lock per
    transaction costs nothing.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    if not connection.in_atomic_block:
        raise RuntimeError("hold_definitions() holds a lock until the transaction ends: call it in one.")
    if connection.vendor != "postgresql":
        # SQLite runs one writing transaction at a time: a definition that exists now stays
        # until this transaction ends.
        return set(TagDefinition.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    with connection.cursor() as cur:
        # FOR KEY SHARE, as a foreign key check takes it: writers do not wait for each other,
        # a deletion's FOR UPDATE waits for them, and they wait for a deletion that holds its
        # lock. A deletion that is still waiting does not hold writers back (PostgreSQL grants
        # compatible row locks first), so it gives up after a while (services.delete_tag).
        cur.execute(
            "SELECT id FROM subscribers_tagdefinition WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE",
            [wanted],
        )
        return {r[0] for r in cur.fetchall()}


def builtin_value(tag: BuiltinTag, subscriber) -> Any:
    value = getattr(subscriber, tag.field)
    if tag.field == "whatsapp_consent":
        return value == "opted_in"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
