"""How many subscribers carry each tag, for the tags page: exact while small, estimated beyond.

Exactly, this reads every subscriber and every tag value of the project (eleven million rows at
a million subscribers: seconds per view); above ``controlpanel.counting.EXACT_UP_TO`` rows the
page shows PostgreSQL's estimates, marked "about".
"""

from __future__ import annotations

from django.db.models import Count as CountOf
from django.db.models import Q

from controlpanel import counting
from controlpanel.counting import Count
from controlpanel.models import Project

from . import tags as tagtypes
from .models import ConsentState, Subscriber, TagDefinition, TagType, TagValue


def _is_set(tag: tagtypes.BuiltinTag) -> Q:
    if tag.type == TagType.BOOLEAN:  # the WhatsApp opt-in: "set" means opted in
        return Q(whatsapp_consent=ConsentState.OPTED_IN)
    if tag.type == TagType.DATETIME:
        return Q(**{f"{tag.field}__isnull": False})
    return Q(**{f"{tag.field}__isnull": False}) & ~Q(**{tag.field: ""})


def builtin_usage(project: Project) -> dict[str, Count]:
    """Subscribers with a value, per built-in tag field."""
    subscribers = Subscriber.objects.for_project(project)
    builtins = tagtypes.BUILTIN_TAGS.values()
    if counting.is_large(subscribers):
        return _estimated_builtin_usage(project, subscribers)
    exact = subscribers.aggregate(**{t.field: CountOf("id", filter=_is_set(t)) for t in builtins})
    return {field: Count(n) for field, n in exact.items()}


def _estimated_builtin_usage(project: Project, subscribers) -> dict[str, Count]:
    # One catalog query instead of an EXPLAIN per tag: the project's share of the table times
    # each column's share of set values, as the planner would multiply them.
    builtins = tagtypes.BUILTIN_TAGS.values()
    stats = counting.column_stats(subscribers, ["project_id", *(t.field for t in builtins)])
    if "project_id" not in stats:
        return {t.field: counting.estimate(subscribers.filter(_is_set(t))) for t in builtins}
    rows = stats["project_id"].rows * stats["project_id"].share(project.pk)
    usage = {}
    for t in builtins:
        column = stats.get(t.field)
        if column is None:
            usage[t.field] = counting.estimate(subscribers.filter(_is_set(t)))
            continue
        if t.type == TagType.BOOLEAN:
            share = column.share(ConsentState.OPTED_IN)
        elif t.type == TagType.DATETIME:
            share = 1.0 - column.null_frac
        else:
            share = 1.0 - column.null_frac - column.common.get("", 0.0)
        usage[t.field] = Count(round(rows * share), estimated=True)
    return usage


# Subscribers whose list-tag rows give the items per subscriber (probed through an index).
LIST_SAMPLE = 200


def custom_usage(project: Project, definitions: list[TagDefinition]) -> dict[int, Count]:
    """Subscribers (not values: a list tag has one row per item) per custom tag, by its pk."""
    values = TagValue.objects.for_project(project)
    if counting.is_large(values):
        rows = counting.estimate_per_value(values, "tag_id", [d.pk for d in definitions]) or {
            d.pk: counting.estimate(values.filter(tag=d)) for d in definitions
        }
        return {d.pk: _estimated_usage(project, values.filter(tag=d), d, rows[d.pk]) for d in definitions}
    per_tag = values.values("tag").annotate(n=CountOf("subscriber", distinct=True))
    exact = dict(per_tag.values_list("tag", "n"))
    return {d.pk: Count(exact.get(d.pk, 0)) for d in definitions}


def _estimated_usage(project: Project, values, definition: TagDefinition, rows: Count) -> Count:
    # The planner estimates rows well but DISTINCT subscribers badly (a third of the truth at a
    # million subscribers). Other types have one row per subscriber; a list tag's rows are
    # divided by its items per subscriber among the project's first subscribers.
    if definition.type != TagType.LIST or not rows:
        return rows
    sample = Subscriber.objects.for_project(project).order_by("pk").values("pk")[:LIST_SAMPLE]
    seen = values.filter(subscriber__in=sample).aggregate(
        rows=CountOf("pk"), people=CountOf("subscriber", distinct=True)
    )
    if not seen["people"]:
        return rows
    return Count(round(rows.value * seen["people"] / seen["rows"]), estimated=True)
