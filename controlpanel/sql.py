"""Small helpers for the set-based SQL that apps write by hand (``INSERT ... SELECT``)."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection, models
from django.db.models import Lookup
from django.db.models.lookups import In

# SQLSTATEs PostgreSQL answers when it picked this transaction as the victim of a lock cycle or a
# serialization conflict: the whole transaction must be rolled back and run again.
_RETRY_WHOLE = frozenset({"40P01", "40001"})


def must_retry_whole(exc: BaseException) -> bool:
    """Whether ``exc`` (Django's wrapper or the driver's error) is a deadlock or serialization
    victim: retrying a part inside the same transaction keeps the locks that made the cycle."""
    return any(getattr(error, "sqlstate", None) in _RETRY_WHOLE for error in (exc, exc.__cause__))


def q(name: str) -> str:
    return connection.ops.quote_name(name)


def insert_select_columns(
    model: type[models.Model], explicit: dict[str, tuple[str, list[Any]]]
) -> tuple[list[str], list[str], list[Any]]:
    """The column list, the SELECT expressions and their parameters of an ``INSERT ... SELECT`` of
    ``model`` rows: ``explicit`` maps a field's attname to its SQL and parameters; every other
    column (the primary key aside) gets its model default, so a field added to the model later
    does not break the statement."""
    columns: list[str] = []
    expressions: list[str] = []
    params: list[Any] = []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(q(field.column))
        if field.attname in explicit:
            sql, field_params = explicit[field.attname]
        else:
            sql, field_params = "%s", [field.get_db_prep_save(field.get_default(), connection)]
        expressions.append(sql)
        params += field_params
    return columns, expressions, params


# A version-7 UUID per row, in SQL (PostgreSQL before 18 has no uuidv7()): a random v4 UUID whose
# first 48 bits become the Unix time in milliseconds and whose version nibble becomes 7 (bits 52
# and 53 set). Rows written together share a time prefix, so the unique index on ``public_id``
# takes them at its right-hand end instead of on a random page each (subscribers/ids.py is the
# Python side of the same idea).
_UUID7_POSTGRESQL = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing"
    " substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)"
    " from 1 for 6), 52, 1), 53, 1), 'hex')::uuid"
)


def new_uuid_sql() -> str:
    """SQL for a new public id per row of an ``INSERT ... SELECT``: time-ordered on PostgreSQL."""
    if connection.vendor == "postgresql":
        return _UUID7_POSTGRESQL
    return "lower(hex(randomblob(16)))"  # SQLite stores UUIDField as 32 hex digits


class AnyOf(Lookup):
    """``column = ANY(%s)`` with the whole list as ONE array parameter (PostgreSQL).

    ``field__in=ids`` writes one placeholder per id: with thousands of ids psycopg spends
    milliseconds filling the placeholders in and PostgreSQL parsing them (the segment builder's
    sample request counted 5,673 ids that way: about a third of its time, docs/benchmarks.md).
    Other databases (SQLite, which has no arrays) get the plain ``IN`` list. Used as an
    expression: ``queryset.filter(AnyOf(F("pk"), ids))``.
    """

    lookup_name = "any_of"
    prepare_rhs = False  # the rhs is the list itself, not a value of the column's type

    def as_sql(self, compiler, connection):
        if connection.vendor != "postgresql":
            return In(self.lhs, list(self.rhs)).as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", [*lhs_params, [int(v) for v in self.rhs]]


def json_param(value: Any) -> tuple[str, list[Any]]:
    """A JSON constant of an ``INSERT ... SELECT`` as SQL and its parameter (jsonb on PostgreSQL,
    where a bare parameter in a SELECT list is text; text on SQLite)."""
    if connection.vendor == "postgresql":
        return "CAST(%s AS jsonb)", [json.dumps(value)]
    return "%s", [json.dumps(value)]
