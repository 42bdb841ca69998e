"""Indexes on the event attributes that a project's segments filter on often.

The event index ``(project, name, occurred_at) INCLUDE (subscriber, facets)`` answers every
attribute condition, but by reading all of that event's rows in the time window: for
"OrderPlaced where cuisine = asian in the last 30 days" that is every order of the month. An
attribute index is a partial index on one project's events of one name, keyed by the
attribute, so the same condition reads only the matching orders (docs/benchmarks.md: 157 ms ->
54 ms for the "Asian food" count at a million subscribers).

Only texts and yes/no attributes are indexed: they are compared for equality, so the value
leads the key and the time window follows, and the index range holds just the matching events.
Numbers and dates are compared by range; keyed (time, value) such an index still read every
event of the window and measured no faster than the generic index (docs/benchmarks.md), so
they are not offered. The key is the very expression the segment compiler compares
(``compiler.attribute_value``); the index also carries the subscriber and the facets, so the
scan never visits the table.

Indexes exist on PostgreSQL only. They are built and dropped by an actor, ``CONCURRENTLY``, so
that recording events never waits; the row's status says how far that got.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, connection, models, transaction
from django.db.models import F, Q
from django.db.models.sql import Query
from django.utils.translation import gettext as _

from controlpanel.models import Project
from controlpanel.services import Actor, record_audit
from controlpanel.wording import mid_sentence

from . import events as eventdefs
from .errors import InvalidInput
from .models import AttributeIndex, AttributeIndexStatus, Event, TagType
from .segments import tree as t
from .segments.compiler import attribute_value

logger = logging.getLogger(__name__)

INDEXABLE_TYPES = frozenset({TagType.STRING, TagType.BOOLEAN})
MAX_PER_PROJECT = 20  # each index costs a little on every matching insert


def supported() -> bool:
    return connection.vendor == "postgresql"


def index_definition(index: AttributeIndex) -> models.Index:
    value = attribute_value(index.attribute, index.attribute_type)
    return models.Index(
        value,
        F("occurred_at"),
        name=index.db_name,
        condition=Q(project_id=index.project_id, name=index.event_name),
        include=["subscriber", "facets"],
    )


@transaction.atomic
def request_index(*, project: Project, event_name: str, attribute: str, actor: Actor) -> AttributeIndex:
    """Ask for an index on ``event_name.attribute``; the build runs in the background."""
    schema = eventdefs.all_definitions(project).get(event_name)
    if schema is None:
        raise InvalidInput(
            _("The project has no event %(event_name)r.") % {"event_name": event_name},
            field="event_name",
            code="not_found",
        )
    type_ = schema.get(attribute)
    if type_ is None:
        raise InvalidInput(
            _("%(event_name)r has no attribute %(attribute)r.")
            % {"event_name": event_name, "attribute": attribute},
            field="attribute",
            code="not_found",
        )
    if type_ not in INDEXABLE_TYPES:
        raise InvalidInput(
            (
                _(
                    "Attribute %(attribute)r is a %(value)s: only texts and yes/no attributes are "
                    "indexed (ranges of numbers and dates gain nothing from it)."
                )
                % {"attribute": attribute, "value": mid_sentence(TagType(type_).label)}
            ),
            field="attribute",
        )
    existing = AttributeIndex.objects.for_project(project).filter(event_name=event_name, attribute=attribute)
    if existing.exists():
        raise InvalidInput(
            _("%(event_name)s.%(attribute)s is indexed already.")
            % {"event_name": event_name, "attribute": attribute},
            field="attribute",
            code="conflict",
        )
    if AttributeIndex.objects.for_project(project).count() >= MAX_PER_PROJECT:
        raise InvalidInput(
            _("A project can index at most %(max_per_project)s attributes; remove one first.")
            % {"max_per_project": MAX_PER_PROJECT},
            field="attribute",
        )
    index = AttributeIndex.objects.create(
        project=project,
        event_name=event_name,
        attribute=attribute,
        attribute_type=type_,
        created_by=actor.user,
    )
    record_audit(project=project, actor=actor, action="attribute_index.requested", obj=index)
    transaction.on_commit(lambda: _actors().build_attribute_index.send(index.pk))
    return index


@transaction.atomic
def remove_index(*, index: AttributeIndex, actor: Actor) -> None:
    """Drop the index in the background; the row goes once the index is gone."""
    AttributeIndex.objects.filter(pk=index.pk).update(status=AttributeIndexStatus.REMOVING, error="")
    record_audit(project=index.project, actor=actor, action="attribute_index.removed", obj=index)
    transaction.on_commit(lambda: _actors().drop_attribute_index.send(index.pk))


# Attribute operators an index serves: equality (not "is set", "contains" or "not").
INDEXED_OPS = frozenset({"eq", "in"})


def ensure_for_rule(*, project: Project, rule: dict, actor: Actor) -> list[AttributeIndex]:
    """Ask for an index on every event attribute ``rule`` compares (a saved segment's rule).

    Marketers should not have to know about indexes: saving a segment that filters
    "OrderPlaced where cuisine = asian" indexes OrderPlaced.cuisine in the background, once,
    within the project's limit. Returns the indexes newly asked for.
    """
    wanted = {
        (node["event"], cond["attribute"])
        for node in t.walk(rule)
        if node.get("type") == t.EVENT
        for cond in node.get("where") or []
        if cond.get("op") in INDEXED_OPS
    }
    existing = set(AttributeIndex.objects.for_project(project).values_list("event_name", "attribute"))
    created = []
    for event_name, attribute in sorted(wanted - existing):
        try:
            created.append(
                request_index(project=project, event_name=event_name, attribute=attribute, actor=actor)
            )
        except InvalidInput as exc:
            # Over the limit, or a type that cannot be indexed: the segment works without it.
            logger.info("not indexing %s.%s: %s", event_name, attribute, exc.message)
    return created


def _actors():
    from . import actors  # lazily, as everywhere here: importing actors declares them on the broker

    return actors


def build(index_id: int) -> None:
    """Create the index (and statistics on its expression) if missing. Safe to run twice."""
    index = AttributeIndex.objects.filter(pk=index_id).first()
    if index is None or index.status in (AttributeIndexStatus.READY, AttributeIndexStatus.REMOVING):
        return
    if not supported():
        # SQLite has no partial expression indexes worth building; nothing to wait for.
        _set_status(index, AttributeIndexStatus.READY)
        return
    if connection.in_atomic_block:
        raise RuntimeError("attribute indexes are built CONCURRENTLY: call build() outside a transaction")
    _set_status(index, AttributeIndexStatus.BUILDING)
    definition = index_definition(index)
    try:
        with connection.schema_editor(atomic=False) as editor:
            # A build that failed half-way leaves an INVALID index behind: start clean.
            editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {editor.quote_name(index.db_name)}")
            editor.add_index(Event, definition, concurrently=True)
            # A partial index's expression gets no statistics of its own; without these the
            # planner guesses how many events match and may not choose the index.
            editor.execute(_statistics_sql(editor, index))
            editor.execute(f"ANALYZE {editor.quote_name(Event._meta.db_table)}")
    except DatabaseError as exc:
        logger.warning("attribute index %s failed: %s", index.db_name, exc)
        _set_status(index, AttributeIndexStatus.FAILED, error=str(exc)[:1000])
        return
    _set_status(index, AttributeIndexStatus.READY)


def drop(index_id: int) -> None:
    """Drop the index and its statistics, then the row. Safe to run twice."""
    index = AttributeIndex.objects.filter(pk=index_id).first()
    if index is None:
        return
    if supported():
        with connection.schema_editor(atomic=False) as editor:
            editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {editor.quote_name(index.db_name)}")
            editor.execute(f"DROP STATISTICS IF EXISTS {editor.quote_name(index.db_name)}")
    index.delete()


def _statistics_sql(editor, index: AttributeIndex) -> str:
    # The expression compiled by the ORM the way the index's own DDL compiles it (no table
    # alias, parameters inlined), so that the statistics describe exactly the indexed value.
    query = Query(Event, alias_cols=False)
    expression = attribute_value(index.attribute, index.attribute_type).resolve_expression(query)
    sql, params = query.get_compiler(connection=editor.connection).compile(expression)
    sql = sql % tuple(editor.quote_value(p) for p in params)
    return (
        f"CREATE STATISTICS IF NOT EXISTS {editor.quote_name(index.db_name)} (mcv) "
        f"ON name, ({sql}) FROM {editor.quote_name(Event._meta.db_table)}"
    )


def _set_status(index: AttributeIndex, status: str, *, error: str = "") -> None:
    AttributeIndex.objects.filter(pk=index.pk).update(status=status, error=error)
    index.status, index.error = status, error
