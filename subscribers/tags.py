"""Typed tags: the built-in ones backed by subscriber fields, custom ones stored as TagValue rows.

Two ways in: JSON values (API) are checked against the tag's type as they are;
text (CSV cells, form fields) is parsed into the type first. A tag name the
project does not know yet is created with the type of its first value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from controlpanel.models import Project
from controlpanel.wording import mid_sentence

from .errors import InvalidInput
from .holds import hold_rows
from .models import TagDefinition, TagType, TagValue


@dataclass(frozen=True)
class BuiltinTag:
    name: str
    field: str
    type: TagType
    writable: bool = True

    @property
    def label(self) -> str:
        """The name in the user's language, for display only: the name itself is the key."""
        return str(BUILTIN_LABELS.get(self.name, self.name))


# Display names of the built-in tags (segments, the API and imports keep the English names).
BUILTIN_LABELS = {
    "Name": gettext_lazy("Name"),
    "Email": gettext_lazy("Email"),
    "Language": gettext_lazy("Language"),
    "Country": gettext_lazy("Country"),
    "Time zone": gettext_lazy("Time zone"),
    "External id": gettext_lazy("External id"),
    "Phone": gettext_lazy("Phone"),
    "First seen": gettext_lazy("First seen"),
    "Last inbound": gettext_lazy("Last inbound"),
    "WhatsApp opt-in": gettext_lazy("WhatsApp opt-in"),
}


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
# The one list of yes/no words, for the panel, the API, CSV cells and the admin.
_TRUE = {"true", "yes", "ja", "1"}
_FALSE = {"false", "no", "nein", "0"}
MAX_TEXT = 255
MAX_LIST = 100

# Integer and decimal tags share TagValue.value_number, numeric(24, 8): 8 places are kept. A
# larger value fails the insert on PostgreSQL; SQLite stores it as a float, and a float of 1e16
# or more has 25 digits at scale 8, so every later read of the subscriber raised. Numbers stay
# within +-(2**53 - 1): below the column's 10**16 on both databases even after SQLite's float
# rounding, and exact as integers in SQLite and for JSON readers (JavaScript) of the API.
_NUMBER_FIELD = TagValue._meta.get_field("value_number")
NUMBER_PLACES: int = _NUMBER_FIELD.decimal_places
NUMBER_QUANTUM = Decimal(1).scaleb(-NUMBER_PLACES)
MAX_NUMBER = Decimal(2**53 - 1)
_NUMBER_DIGITS = len(str(MAX_NUMBER))  # a longer run of digits is out of range without parsing it
assert Decimal(10) ** (_NUMBER_FIELD.max_digits - NUMBER_PLACES) > MAX_NUMBER


def clean_text(value: str, *, field: str, what: str) -> str:
    """Refuse text no database column can store: a lone UTF-16 surrogate has no UTF-8 form, and
    PostgreSQL text cannot hold NUL. Every parser of user text calls this before anything is saved."""
    if "\x00" in value:
        raise InvalidInput(
            _("%(what)s contains a NUL character.") % {"what": what}, field=field, code="invalid_text"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            _("%(what)s contains a lone surrogate (%(value)r), which is not text.")
            % {"what": what, "value": value},
            field=field,
            code="invalid_text",
        ) from None
    return value


def clean_tree(value: Any, *, field: str) -> None:
    """``clean_text`` for every key and text of a JSON value (an API body's free-form part):
    InvalidInput naming the dotted path of the first text no database can store."""
    if isinstance(value, str):
        clean_text(value, field=field, what=field)
        return
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{field}.{key}"
        if isinstance(key, str):
            clean_text(key, field=where, what=where)
        clean_tree(item, field=where)


def parse_bool(name: str, text: str, *, field: str | None = None) -> bool:
    """true/false, yes/no, ja/nein, 1/0 in any case; anything else is an error naming the value."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidInput(
        (
            _("Tag %(name)r expects boolean, got %(text)r. Use true/false, yes/no, ja/nein or 1/0.")
            % {"name": name, "text": text}
        ),
        field=field or f"tags.{name}",
        code="wrong_tag_type",
    )


def check_number(
    name: str, number: Decimal | int, *, field: str | None = None, what: str | None = None
) -> Decimal:
    """``number`` rounded as the value_number column stores it; out of its range: an error
    about ``what`` (default: the tag ``name``)."""
    try:
        number = Decimal(number)
        rounded = number.quantize(NUMBER_QUANTUM, rounding=ROUND_HALF_UP) if number.is_finite() else number
    except InvalidOperation:  # more digits than the decimal context: far out of range
        rounded = Decimal("Infinity")
    if not rounded.is_finite() or abs(rounded) > MAX_NUMBER:
        limit = f"{int(MAX_NUMBER):,}"
        raise InvalidInput(
            (
                _(
                    "%(value)s is out of range: numbers must be between -%(limit)s and %(limit)s "
                    "(decimals keep %(number_places)s places)."
                )
                % {"value": what or f"Tag {name!r}", "limit": limit, "number_places": NUMBER_PLACES}
            ),
            field=field or f"tags.{name}",
            code="out_of_range",
        )
    return rounded


def check_datetime(value: datetime, *, field: str, what: str) -> datetime:
    """An aware ``value`` that the database can store: it keeps times in UTC, and a time near
    the ends of the calendar (9999-12-31T23:59:59-14:00) has no UTC form."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            (
                _("%(what)s is out of range: %(value)s must lie between the years 1 and 9999 in UTC.")
                % {"what": what, "value": value.isoformat()}
            ),
            field=field,
            code="out_of_range",
        ) from None
    return value


def builtin(name: str) -> BuiltinTag | None:
    return BUILTIN_TAGS.get(name.strip().lower())


def validate_tag_name(name: str) -> str:
    name = (name or "").strip()
    if not TAG_NAME_RE.match(name):
        raise InvalidInput(
            _("Tag name %(name)r is not allowed: use 1-64 letters, digits, spaces or _ . : / -.")
            % {"name": name},
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
        _("A tag value cannot be %(name__)s.") % {"name__": type(value).__name__},
        field="tags",
        code="invalid_tag_value",
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
    expected = mid_sentence(TagType(type_).label)
    return InvalidInput(
        _("Tag %(name)r expects %(expected)s, got %(value)r.")
        % {"name": name, "expected": expected, "value": value},
        field=f"tags.{name}",
        code="wrong_tag_type",
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
            clean_text(value, field=f"tags.{name}", what=f"Tag {name!r}")
            if len(value) > MAX_TEXT:
                raise InvalidInput(
                    _("Tag %(name)r is longer than %(max_text)s characters.")
                    % {"name": name, "max_text": MAX_TEXT},
                    field=f"tags.{name}",
                )
            return value
        case TagType.INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _wrong(name, type_, value)
            check_number(name, value)
            return value
        case TagType.DECIMAL:
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
                raise _wrong(name, type_, value)
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                raise _wrong(name, type_, value) from None
            if not number.is_finite():
                raise _wrong(name, type_, value)
            return check_number(name, number)
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
            return check_datetime(parsed, field=f"tags.{name}", what=f"Tag {name!r}")
        case TagType.LIST:
            if not isinstance(value, list) or not all(
                isinstance(v, str | int) and not isinstance(v, bool) for v in value
            ):
                raise _wrong(name, type_, value)
            if len(value) > MAX_LIST or any(len(str(v)) > MAX_TEXT for v in value):
                raise InvalidInput(
                    _("Tag %(name)r has too many or too long items.") % {"name": name}, field=f"tags.{name}"
                )
            items = [str(v) for v in value]
            for item in items:
                clean_text(item, field=f"tags.{name}", what=f"Tag {name!r}")
            return list(dict.fromkeys(items))
    raise InvalidInput(
        _("Tag %(name)r has an unknown type %(type_)r.") % {"name": name, "type_": type_},
        field=f"tags.{name}",
    )


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
            if len(t.lstrip("+-")) > _NUMBER_DIGITS:  # before int(), which refuses 4,300 digits
                check_number(name, Decimal(t))
            return coerce(name, type_, int(t))
        case TagType.DECIMAL:
            return coerce(name, type_, t.replace(",", ".") if t.count(",") == 1 and "." not in t else t)
        case TagType.BOOLEAN:
            return parse_bool(name, t)
        case TagType.LIST:
            if t.startswith("["):
                try:
                    return coerce(name, type_, json.loads(t))
                except json.JSONDecodeError:
                    raise _wrong(name, type_, t) from None
            return coerce(name, type_, [p.strip() for p in t.split(",") if p.strip()])
    return coerce(name, type_, t, tz=tz)


# The one definition of how a tag value is stored and when two values are the same; the panel,
# the API (single and bulk) and the CSV import all compare through it.
VALUE_COLUMNS = ("value_text", "value_number", "value_bool", "value_date", "value_datetime")


def value_tuples(type_: str, value: Any) -> tuple[tuple, ...]:
    """A coerced value as TagValue column tuples (VALUE_COLUMNS order), in a canonical order.

    Numbers are rounded as the column stores them (numeric(24, 8) rounds half away from zero),
    so a value compares equal to what the database gives back for it.
    """
    match type_:
        case TagType.STRING:
            return ((value, None, None, None, None),)
        case TagType.INTEGER | TagType.DECIMAL:
            number = Decimal(value).quantize(NUMBER_QUANTUM, rounding=ROUND_HALF_UP)
            return ((None, number, None, None, None),)
        case TagType.BOOLEAN:
            return ((None, None, value, None, None),)
        case TagType.DATE:
            return ((None, None, None, value, None),)
        case TagType.DATETIME:
            return ((None, None, None, None, value),)
        case TagType.LIST:
            return tuple((item, None, None, None, None) for item in sorted(value))
    raise ValueError(type_)


def stored_tuples(rows: Iterable[tuple]) -> tuple[tuple, ...]:
    """Column tuples read from the database (VALUE_COLUMNS order) in value_tuples' order."""
    rows = tuple(rows)
    if len(rows) < 2:
        return rows
    return tuple(sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r)))


def row_tuple(row: TagValue) -> tuple:
    return tuple(getattr(row, column) for column in VALUE_COLUMNS)


def same_values(rows: Iterable[TagValue], type_: str, value: Any) -> bool:
    """Whether the stored ``rows`` of one tag hold ``value`` (None: no value).

    Values, not spellings: Decimal("3.00000000") equals 3, and aware datetimes compare as
    instants whatever their offset.
    """
    wanted = value_tuples(type_, value) if value is not None else ()
    return stored_tuples(row_tuple(r) for r in rows) == wanted


def value_columns(type_: str, value: Any) -> list[dict[str, Any]]:
    """The TagValue column values for a coerced value (one dict per row, set columns only).

    List items keep their given order (rows are read back by id).
    """
    if type_ == TagType.LIST:
        return [{"value_text": item} for item in value]
    return [
        {column: v for column, v in zip(VALUE_COLUMNS, row, strict=True) if v is not None}
        for row in value_tuples(type_, value)
    ]


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


def definitions(project: Project, *, names: Iterable[str] | None = None) -> dict[str, TagDefinition]:
    """Custom tag definitions of a project by lower-cased name (only those ``names`` if given)."""
    qs = TagDefinition.objects.for_project(project)
    if names is not None:
        qs = qs.alias(lower_name=Lower("name")).filter(lower_name__in={n.lower() for n in names})
    return {d.name.lower(): d for d in qs}


def check_new_definitions(
    project: Project, new_names: Collection[str], *, existing: int | None = None
) -> None:
    """Refuse creating ``new_names`` beyond the limits: TAGS_NEW_PER_REQUEST at once (one API
    call or bulk item, one form, one CSV column mapping) and TAGS_PER_PROJECT in all. Every tag
    is a column of the export and a row of the tags page, so thousands of them make both slow.
    """
    if not new_names:
        return
    per_request, per_project = settings.TAGS_NEW_PER_REQUEST, settings.TAGS_PER_PROJECT
    if len(new_names) > per_request:
        raise InvalidInput(
            (
                _(
                    "%(value)s new tags at once; at most %(per_request)s new tags may be created in "
                    "one request. Send the others in later requests, or use fewer tags."
                )
                % {"value": f"{len(new_names):,}", "per_request": f"{per_request:,}"}
            ),
            field="tags",
            code="too_many_tags",
        )
    if existing is None:  # the caller's count of the project's definitions saves a query
        existing = TagDefinition.objects.for_project(project).count()
    if existing + len(new_names) > per_project:
        raise InvalidInput(
            (
                _(
                    "This project has %(existing)s tags and may have at most %(per_project)s: the "
                    "new tag(s) %(value)s cannot be created. Delete tags no longer used on the Tags "
                    "page."
                )
                % {
                    "existing": f"{existing:,}",
                    "per_project": f"{per_project:,}",
                    "value": ", ".join(repr(n) for n in sorted(new_names)[:5]),
                }
            ),
            field="tags",
            code="too_many_tags",
        )


def get_or_create_definition(
    project: Project, name: str, first_value: Any, *, from_text: bool = False, limits_checked: bool = False
) -> TagDefinition:
    """The definition of ``name``, created with the type of ``first_value`` if new, within the
    project's limits (check_new_definitions) unless the caller has ``limits_checked``."""
    name = validate_tag_name(name)
    existing = TagDefinition.objects.for_project(project).filter(name__iexact=name).first()
    if existing is not None:
        return existing
    if not limits_checked:
        check_new_definitions(project, [name])
    type_ = infer_type_from_text(first_value) if from_text else infer_type(first_value)
    definition, _unused = TagDefinition.objects.get_or_create(
        project=project, name=name, defaults={"type": type_}
    )
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
    # A deletion that is still waiting for its FOR UPDATE does not hold writers back (PostgreSQL
    # grants compatible row locks first), so it gives up after a while (services.delete_tag).
    return hold_rows(TagDefinition, ids)


def builtin_value(tag: BuiltinTag, subscriber) -> Any:
    value = getattr(subscriber, tag.field)
    if tag.field == "whatsapp_consent":
        return value == "opted_in"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
