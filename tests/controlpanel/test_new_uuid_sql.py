"""Public ids written by set-based inserts are time-ordered version-7 UUIDs on PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from controlpanel.sql import new_uuid_sql

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the version-7 expression is PostgreSQL's")
def test_ids_are_version_7_and_ordered_by_their_time():
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {new_uuid_sql()}, clock_timestamp() FROM generate_series(1, 500)")  # noqa: S608
        rows = cursor.fetchall()
    ids = [uuid.UUID(str(value)) for value, _ in rows]
    assert {i.version for i in ids} == {7} and {i.variant for i in ids} == {uuid.RFC_4122}
    assert len(set(ids)) == 500
    millis = [i.int >> 80 for i in ids]
    assert millis == sorted(millis)  # the index takes them at its end
    assert abs(millis[0] - int(rows[0][1].timestamp() * 1000)) <= 1


def test_sqlite_gets_32_hex_digits():
    if connection.vendor == "postgresql":
        pytest.skip("SQLite's expression")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {new_uuid_sql()}")
        (value,) = cursor.fetchone()
    assert len(value) == 32 and uuid.UUID(value)
