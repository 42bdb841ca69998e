"""Set-based reads and writes of one chunk: through the ORM, and on PostgreSQL with arrays and
binary COPY."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Q
from django.utils import timezone

from controlpanel.models import Project

from ..facets import facets_of
from ..ids import uuid7s
from ..models import ConsentChange, Event, Subscriber, TagValue
from ..services import NewEvent, announce
from ..tags import VALUE_COLUMNS
from ..textfold import fold_tag_text

Existing = dict[str, Any]


class Store:
    """Set-based reads and writes of one chunk through the ORM (SQLite, and any database)."""

    def __init__(self, project: Project):
        self.project = project

    def fetch_subscribers(
        self,
        phones: list[str],
        external_ids: list[str],
        fields: tuple[str, ...],
        bsuids: list[str] | None = None,
    ) -> list[Existing]:
        q = Q(phone__in=phones) if phones else Q(pk__in=[])
        if external_ids:
            q |= Q(external_id__in=external_ids)
        if bsuids:
            q |= Q(bsuid__in=bsuids)
        return list(Subscriber.objects.for_project(self.project).filter(q).values(*fields))

    def fetch_tag_values(self, subscriber_ids: list[int], tag_ids: list[int]) -> list[tuple]:
        """(id, subscriber id, tag id, *VALUE_COLUMNS) of these subscribers and tags."""
        if not subscriber_ids or not tag_ids:
            return []
        return list(
            TagValue.objects.filter(subscriber_id__in=subscriber_ids, tag_id__in=tag_ids).values_list(
                "id", "subscriber_id", "tag_id", *VALUE_COLUMNS
            )
        )

    def insert_subscribers(self, rows: list[dict[str, Any]]) -> list[tuple[int, UUID]]:
        """Insert new subscribers; return their (id, public id) in the order of ``rows``."""
        objs = [Subscriber(project=self.project, **r) for r in rows]
        Subscriber.objects.bulk_create(objs, batch_size=1000)
        if all(o.pk for o in objs):
            return [(o.pk, o.public_id) for o in objs]
        # A backend without RETURNING: new subscribers have a phone or a BSUID, both unique.
        mine = Subscriber.objects.for_project(self.project)
        by_phone = dict(mine.filter(phone__in=[o.phone for o in objs if o.phone]).values_list("phone", "id"))
        by_bsuid = dict(mine.filter(bsuid__in=[o.bsuid for o in objs if o.bsuid]).values_list("bsuid", "id"))
        return [(by_phone[o.phone] if o.phone else by_bsuid[o.bsuid], o.public_id) for o in objs]

    def update_subscribers(self, rows: list[dict[str, Any]], fields: list[str]) -> int:
        """Set ``fields`` (all given in every row, with "id") on these subscribers; how many exist."""
        objs = [Subscriber(**r) for r in rows]
        return Subscriber.objects.bulk_update(objs, fields, batch_size=500)

    def delete_tag_values(self, ids: list[int]) -> None:
        for start in range(0, len(ids), 5000):
            TagValue.objects.filter(pk__in=ids[start : start + 5000])._raw_delete(TagValue.objects.db)

    def insert_tag_values(self, rows: list[tuple]) -> None:
        """rows: (subscriber id, tag id, *VALUE_COLUMNS)."""
        pid = self.project.pk
        TagValue.objects.bulk_create(
            [
                TagValue(
                    project_id=pid, subscriber_id=s, tag_id=t, **dict(zip(VALUE_COLUMNS, v, strict=True))
                )
                for s, t, *v in rows
            ],
            batch_size=2000,
        )

    def insert_consent(self, rows: list[dict[str, Any]]) -> None:
        ConsentChange.objects.bulk_create(
            [ConsentChange(project_id=self.project.pk, **r) for r in rows], batch_size=2000
        )

    def insert_events(self, events: list[NewEvent]) -> None:
        """Events built by the services' own constructors (their attributes need no validation),
        each with an aware ``occurred_at``. Consumers read the durable feed, which has every row
        however it was written; the in-process hint (services.announce) is only sent here, for
        the small batches of the API and inbound processing."""
        pid = self.project.pk
        rows = Event.objects.bulk_create(
            [
                Event(
                    project_id=pid,
                    subscriber_id=e.subscriber_id,
                    name=e.name,
                    attributes=e.attributes,
                    occurred_at=e.occurred_at,
                )
                for e in events
            ],
            batch_size=2000,
        )
        announce(self.project, rows)


class PostgresStore(Store):
    """The same operations with arrays and COPY: 3-5x faster than the ORM at this volume."""

    # Keyed lookups must probe a btree once per key. Two things keep the planner there while
    # this very import fills the tables: sequential and bitmap scans are off in the chunk's
    # transaction (see lookup_sql for the bitmap trap), and the statistics are refreshed as the
    # project grows (see _Statistics). The tag condition is
    # written "tag_id + 0" so that only the (subscriber, tag) index can serve the lookup.
    def fetch_subscribers(
        self,
        phones: list[str],
        external_ids: list[str],
        fields: tuple[str, ...],
        bsuids: list[str] | None = None,
    ) -> list[Existing]:
        found: dict[int, tuple] = {}
        with _binding_cursor() as cur:
            for column, keys in (("phone", phones), ("external_id", external_ids), ("bsuid", bsuids)):
                if keys:
                    cur.execute(self.lookup_sql(column, fields), [keys, self.project.pk], binary=True)
                    found.update((r[0], r) for r in cur.fetchall())
        return [dict(zip(fields, r, strict=True)) for r in found.values()]

    @staticmethod
    def lookup_sql(column: str, fields: tuple[str, ...]) -> str:
        """The subscribers whose ``column`` is one of the keys (parameters: keys, project id).

        It probes the unique (project, key) index once per key, whatever the statistics say,
        because every other plan read the whole project once per chunk (quadratic over an
        import, while the statistics lag behind the growing table):
        - "key = ANY(10,000 keys)" scanned the project's index and tested every row against the
          array; so did a join with the keys, flattened into a hash join over the project.
          OFFSET 0 keeps the subquery from being flattened: it runs once per key.
        - The phone trigram index also answers "=", its cost estimate for one key is below the
          btree's, and each probe reads the posting lists of the trigrams that every German
          number shares ("+49", "491"): 6 ms per key instead of 5 µs. Bitmap scans (the only
          way to read a GIN index) are off in a chunk's transaction (chunk_settings).
        """
        cols = ", ".join(f"s.{f}" for f in fields)
        return (
            f"SELECT {cols} FROM unnest(%b::text[]) AS k(key) "  # noqa: S608 - names from code
            "CROSS JOIN LATERAL (SELECT * FROM subscribers_subscriber "
            f"WHERE project_id = %b::bigint AND {column} = k.key OFFSET 0) AS s"
        )

    def fetch_tag_values(self, subscriber_ids: list[int], tag_ids: list[int]) -> list[tuple]:
        if not subscriber_ids or not tag_ids:
            return []
        with _binding_cursor() as cur:
            cur.execute(
                "SELECT id, subscriber_id, tag_id, value_text, value_number, value_bool, value_date, "
                "value_datetime FROM subscribers_tagvalue "
                "WHERE subscriber_id = ANY(%b::bigint[]) AND tag_id + 0 = ANY(%b::bigint[])",
                [subscriber_ids, tag_ids],
                binary=True,
            )
            return cur.fetchall()

    def insert_subscribers(self, rows: list[dict[str, Any]]) -> list[tuple[int, UUID]]:
        pid = self.project.pk
        with connection.cursor() as cur:
            # Ids drawn from the table's own sequence up front: COPY can then carry them, and no
            # query is needed afterwards to learn which id each new phone got.
            cur.execute(
                "SELECT nextval(pg_get_serial_sequence('subscribers_subscriber', 'id')) "
                "FROM generate_series(1, %s)",
                [len(rows)],
            )
            ids = [r[0] for r in cur.fetchall()]
            public_ids = list(uuid7s(len(rows)))
            with _copy(cur, "subscribers_subscriber", _SUBSCRIBER_COPY) as copy:
                for n, (r, public_id) in enumerate(zip(rows, public_ids, strict=True)):
                    copy.write_row(
                        (
                            ids[n],
                            pid,
                            public_id,
                            r["phone"],
                            r["wa_id"],
                            r["bsuid"],
                            r["external_id"],
                            r["name"],
                            r["email"],
                            r["language"],
                            r["country"],
                            r["time_zone"],
                            r["whatsapp_consent"],
                            r["whatsapp_consent_at"],
                            r["email_consent"],
                            r["email_consent_at"],
                            r["created_at"],
                            r["updated_at"],
                        )
                    )
        return list(zip(ids, public_ids, strict=True))

    def update_subscribers(self, rows: list[dict[str, Any]], fields: list[str]) -> int:
        casts = dict.fromkeys(_TIMESTAMP_COLUMNS, "timestamptz[]")
        sets = ", ".join(f"{f} = u.{f}" for f in fields)
        arrays = ", ".join(f"%s::{casts.get(f, 'text[]')}" for f in fields)
        with connection.cursor() as cur:
            cur.execute(
                f"UPDATE subscribers_subscriber AS s SET {sets} "  # noqa: S608 - names from code
                f"FROM unnest(%s::bigint[], {arrays}) AS u(id, {', '.join(fields)}) WHERE s.id = u.id",
                [[r["id"] for r in rows], *[[r[f] for r in rows] for f in fields]],
            )
            return cur.rowcount

    def delete_tag_values(self, ids: list[int]) -> None:
        with connection.cursor() as cur:
            cur.execute("DELETE FROM subscribers_tagvalue WHERE id = ANY(%s::bigint[])", [ids])

    def insert_tag_values(self, rows: list[tuple]) -> None:
        pid = self.project.pk
        with connection.cursor() as cur, _copy(cur, "subscribers_tagvalue", _TAG_VALUE_COPY) as copy:
            for r in rows:
                # r: (subscriber, tag, *VALUE_COLUMNS); the folded copy is what segments compare
                # texts by, as TagValue's save() and bulk_create() derive it.
                copy.write_row((pid, *r, fold_tag_text(r[2])))

    def insert_consent(self, rows: list[dict[str, Any]]) -> None:
        pid = self.project.pk
        with connection.cursor() as cur, _copy(cur, "subscribers_consentchange", _CONSENT_COPY) as copy:
            for r in rows:
                copy.write_row(
                    (
                        pid,
                        r["subscriber_id"],
                        r["channel"],
                        r["state"],
                        r["source"],
                        r["evidence"],
                        r["actor_user_id"],
                        r["actor_label"],
                        r["created_at"],
                    )
                )

    def insert_events(self, events: list[NewEvent]) -> None:
        pid = self.project.pk
        received_at = timezone.now()  # what the model's auto_now_add would set
        # (attributes, facets) in jsonb's binary form, per attributes dict (by identity: the
        # events of a chunk share a few); facets as Event.save() and bulk_create() derive them.
        encoded: dict[int, tuple[bytes, bytes]] = {}
        with connection.cursor() as cur, _copy(cur, "subscribers_event", _EVENT_COPY) as copy:
            for e in events:
                pair = encoded.get(id(e.attributes))
                if pair is None:
                    attrs = e.attributes or {}
                    pair = encoded[id(e.attributes)] = (_jsonb(attrs), _jsonb(facets_of(attrs)))
                copy.write_row((pid, e.subscriber_id, e.name, e.occurred_at, received_at, *pair))


# (column, PostgreSQL type) of each COPY. Binary COPY: the server does not parse text into
# timestamps, UUIDs and numerics (three timestamps and a UUID per subscriber).
_SUBSCRIBER_COPY = (
    ("id", "int8"),
    ("project_id", "int8"),
    ("public_id", "uuid"),
    ("phone", "text"),
    ("wa_id", "text"),
    ("bsuid", "text"),
    ("external_id", "text"),
    ("name", "text"),
    ("email", "text"),
    ("language", "text"),
    ("country", "text"),
    ("time_zone", "text"),
    ("whatsapp_consent", "text"),
    ("whatsapp_consent_at", "timestamptz"),
    ("email_consent", "text"),
    ("email_consent_at", "timestamptz"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)

# Subscriber columns an update may set that are not text.
_TIMESTAMP_COLUMNS = ("whatsapp_consent_at", "email_consent_at", "email_undeliverable_at", "updated_at")

_TAG_VALUE_COPY = (
    ("project_id", "int8"),
    ("subscriber_id", "int8"),
    ("tag_id", "int8"),
    ("value_text", "text"),
    ("value_number", "numeric"),
    ("value_bool", "bool"),
    ("value_date", "date"),
    ("value_datetime", "timestamptz"),
    ("value_folded", "text"),
)

_CONSENT_COPY = (
    ("project_id", "int8"),
    ("subscriber_id", "int8"),
    ("channel", "text"),
    ("state", "text"),
    ("source", "text"),
    ("evidence", "text"),
    ("actor_user_id", "int8"),
    ("actor_label", "text"),
    ("created_at", "timestamptz"),
)

# id and feed_txid take their column defaults (the feed's transaction id, see feed.py).
_EVENT_COPY = (
    ("project_id", "int8"),
    ("subscriber_id", "int8"),
    ("name", "text"),
    ("occurred_at", "timestamptz"),
    ("received_at", "timestamptz"),
    # jsonb, sent as already encoded bytes (see _jsonb): the server reads the column's binary
    # input; "bytea" only tells psycopg to pass the bytes through unchanged.
    ("attributes", "bytea"),
    ("facets", "bytea"),
)


def _jsonb(value: Any) -> bytes:
    """``value`` in jsonb's binary input format: a version byte (1), then the JSON text."""
    return b"\x01" + json.dumps(value).encode()


def _binding_cursor() -> psycopg.Cursor:
    """A cursor on Django's connection (same transaction) that sends parameters separately.

    Django's cursors inline parameters into the SQL text, quoting a 10,000-key array element by
    element in Python; bound in binary, the array costs next to nothing, and so do the results.
    """
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


@contextmanager
def _copy(cur: CursorWrapper, table: str, columns: tuple[tuple[str, str], ...]) -> Iterator[psycopg.Copy]:
    names = ", ".join(c for c, _ in columns)
    with cur.cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([t for _, t in columns])
        yield copy


def chunk_settings() -> None:
    """Settings of a chunk's transaction on PostgreSQL (SET LOCAL: they end with it)."""
    with connection.cursor() as cur:
        # A crash loses at most the last moments of commits, never consistency: the checkpoint
        # commits with its chunk, and a re-run redoes what is lost.
        cur.execute("SET LOCAL synchronous_commit = off")
        # Foreign keys checked statement by statement, not at COMMIT: the commit is on the path
        # that chunks take one at a time (see _Turns).
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # Keyed lookups probe btrees (see PostgresStore).
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_bitmapscan = off")


def store_for(project: Project) -> Store:
    return PostgresStore(project) if connection.vendor == "postgresql" else Store(project)
