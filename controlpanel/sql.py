"""Small helpers for the set-based SQL that apps write by hand (``INSERT ... SELECT``)."""

from __future__ import annotations

from typing import Any

from django.db import connection, models


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
