"""CSV exports, streamed: the subscriber list (or part of it) and the consent ledger.

Rows come from ``QuerySet.iterator(chunk_size=...)`` and are written as they are read, so a
million subscribers never sit in memory; tag values are fetched per chunk in one query.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from itertools import batched
from typing import Any

from django.db.models import Count, QuerySet

from controlpanel.models import Project

from .models import ConsentChange, Device, Subscriber, TagDefinition, TagType, TagValue

CHUNK_SIZE = 2000
SUBSCRIBER_COLUMNS = (
    "id",
    "phone",
    "external_id",
    "name",
    "email",
    "language",
    "country",
    "time_zone",
    "whatsapp_consent",
    "email_consent",
    "email_undeliverable_at",
    "push_consent",
    "created_at",
    "last_inbound_at",
)
# After the columns: the active push devices (a count; the devices are GET /api/v1/devices).
DEVICES_COLUMN = "push_devices"
CONSENT_COLUMNS = (
    "subscriber_id",
    "phone",
    "channel",
    "state",
    "source",
    "evidence",
    "actor",
    "created_at",
)
# Spreadsheets run cells starting with these as formulas ("CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    def write(self, value: str) -> str:
        return value


def _safe(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    text = str(value)
    # A phone number (+49...) or a negative number is data, not a formula.
    if text.startswith(_FORMULA_START) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.replace(".", "", 1).isdigit()


def csv_lines(rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """Encode rows as CSV text, one line at a time, with a BOM so spreadsheets read UTF-8."""
    writer = csv.writer(_Echo())
    yield "\ufeff"
    for row in rows:
        yield writer.writerow([_safe(v) for v in row])


def _tag_cell(type_: str, values: list[Any]) -> Any:
    if not values:
        return None
    if type_ == TagType.LIST:
        return ", ".join(values)
    if type_ == TagType.INTEGER:
        return int(values[0])
    return values[0]


VALUE_FIELDS = ("value_text", "value_number", "value_bool", "value_date", "value_datetime")
_VALUE_FIELD = {
    TagType.STRING: "value_text",
    TagType.LIST: "value_text",
    TagType.INTEGER: "value_number",
    TagType.DECIMAL: "value_number",
    TagType.BOOLEAN: "value_bool",
    TagType.DATE: "value_date",
    TagType.DATETIME: "value_datetime",
}


def subscriber_rows(project: Project, subscribers: QuerySet[Subscriber]) -> Iterator[list[Any]]:
    """The header, then one row per subscriber of ``subscribers`` (already scoped to ``project``)."""
    definitions = list(TagDefinition.objects.for_project(project).order_by("name"))
    position = {d.pk: i for i, d in enumerate(definitions)}
    yield [*SUBSCRIBER_COLUMNS, DEVICES_COLUMN, *(d.name for d in definitions)]
    rows = (
        subscribers.filter(project=project)
        .order_by("id")
        .values_list("id", "public_id", *SUBSCRIBER_COLUMNS[1:])
        .iterator(chunk_size=CHUNK_SIZE)
    )
    for batch in batched(rows, CHUNK_SIZE):
        devices = dict(
            Device.objects.active()
            .filter(subscriber_id__in=[r[0] for r in batch])
            .order_by()
            .values("subscriber_id")
            .annotate(n=Count("id"))
            .values_list("subscriber_id", "n")
        )
        tags: dict[int, list[list[Any]]] = {}
        if definitions:
            values = (
                TagValue.objects.filter(subscriber_id__in=[r[0] for r in batch], tag_id__in=position)
                .order_by("id")
                .values_list("subscriber_id", "tag_id", *VALUE_FIELDS)
            )
            for sid, tag_id, *stored in values:
                cells = tags.setdefault(sid, [[] for _ in definitions])
                i = position[tag_id]
                cells[i].append(stored[VALUE_FIELDS.index(_VALUE_FIELD[definitions[i].type])])
        empty = [[] for _ in definitions]
        for sid, *fields_ in batch:
            cells = tags.get(sid, empty)
            yield [
                *fields_,
                devices.get(sid, 0),
                *(_tag_cell(d.type, cells[i]) for i, d in enumerate(definitions)),
            ]


def consent_rows(project: Project) -> Iterator[list[Any]]:
    """The header, then every consent change of the project, oldest first."""
    yield list(CONSENT_COLUMNS)
    rows = (
        ConsentChange.objects.for_project(project)
        .order_by("created_at", "id")
        .values_list(
            "subscriber__public_id",
            "subscriber__phone",
            "channel",
            "state",
            "source",
            "evidence",
            "actor_label",
            "created_at",
        )
        .iterator(chunk_size=CHUNK_SIZE)
    )
    yield from rows
