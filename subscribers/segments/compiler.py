"""Compiling a validated rule tree into one ORM query over the project's subscribers.

Only ORM expressions and QuerySet set operations (Q, Exists, ``__in`` subqueries, INTERSECT,
UNION, EXCEPT through ``QuerySet.intersection/union/difference``): no SQL text is ever built.
The shapes are chosen for PostgreSQL at a million subscribers and ten million events
(docs/benchmarks.md):

- Every condition compiles to a ``Part``: either a condition on the subscriber row (fields,
  built-in tags, reachability), or a query of subscriber ids (tag value rows, event rows), or
  the complement of such a query. Conditions that have their own index yield ids straight from
  that index, so "Berlin AND ordered asian food in the last 30 days" is the INTERSECT of two
  index ranges (120,000 and 50,000 ids) instead of a walk over all million subscribers with a
  semi-join per condition (183 ms -> about 60 ms measured). AND is INTERSECT, AND NOT is
  EXCEPT, OR is UNION; conditions on subscriber columns stay a WHERE on the subscriber table,
  combined with the id sets through ``pk IN (...)``.
- Tag value rows are not filtered by project: the tag definition was resolved within the
  project, so its rows are the project's. Events filter project, name and occurred_at, which
  the ``(project, name, occurred_at) INCLUDE (subscriber, attributes)`` index serves as an
  index-only scan, attribute filters included. "At least N times" groups the matching events
  by subscriber with ``HAVING COUNT(*) >= N``. A count that zero satisfies (never, fewer than
  N, at most N) is the complement of the opposite condition, so subscribers without any such
  event are counted.
- Event attributes compare JSON values natively (``attributes -> 'cuisine' = '"asian"'`` on
  PostgreSQL, ``JSON_EXTRACT`` on SQLite): numbers compare as numbers. Attribute types are
  enforced when events are recorded, so a numeric attribute only ever holds numbers. The
  expression is the one that the per-attribute partial indexes (``attribute_indexes.py``) are
  built on.
- Texts compare folded (textfold.py) unless the condition matches case: tag rows by
  ``value_folded`` (the text index is keyed on it), event attributes by their folded
  ``facets``, both written folded, so the indexes serve as before; a case-sensitive condition
  narrows by the folded value and then checks the original (``value_text``, ``attributes``).
  Subscriber columns have no folded copy and compare ``wcp_fold(column)`` (textfold.Fold),
  except the canonical ones (phone, country), which compare as they are.
- A segment-membership condition inlines the included segment's rule (validated for cycles).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import reduce
from operator import and_, or_
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Exists, Expression, F, Func, OuterRef, Q, QuerySet, Transform, Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import StrIndex, Substr
from django.db.models.lookups import Exact, GreaterThan, In, StartsWith
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from controlpanel.models import Project
from controlpanel.sql import AnyOf

from .. import window as service_window
from ..facets import FACET_TEXT
from ..models import ConsentState, Device, Event, Subscriber, TagType, TagValue
from ..textfold import Fold, fold
from . import tree as t
from .validate import Checker, Resolver, TagInfo

VALUE_COLUMN = {
    TagType.STRING: "value_text",
    TagType.LIST: "value_text",
    TagType.INTEGER: "value_number",
    TagType.DECIMAL: "value_number",
    TagType.BOOLEAN: "value_bool",
    TagType.DATE: "value_date",
    TagType.DATETIME: "value_datetime",
}
NOTHING = Q(pk__in=[])
EVERYONE = Q(pk__isnull=False)  # not Q(): ~Q() would also mean "everyone"


@dataclass(frozen=True)
class Part:
    """A compiled condition: exactly one of ``q`` (on the subscriber row) or ``ids``.

    ``ids`` is a query of subscriber ids, possibly with repeats (event rows); with
    ``negated`` the part means every subscriber of the project except those.
    """

    q: Q | None = None
    ids: QuerySet | None = None
    negated: bool = False

    def __invert__(self) -> Part:
        if self.q is not None:
            return Part(q=~self.q)
        return Part(ids=self.ids, negated=not self.negated)


def audience(project: Project, tree: Any, *, now: datetime | None = None) -> QuerySet[Subscriber]:
    """The project's subscribers matching ``tree``. Validates first (raises InvalidInput)."""
    compiler, part = _compile(project, tree, now)
    return Subscriber.objects.for_project(project).filter(compiler.as_q(part))


def count(project: Project, tree: Any, *, now: datetime | None = None) -> int:
    """How many of the project's subscribers match ``tree``: one query, no subscriber rows read
    when the conditions' own indexes name the matching ids."""
    compiler, part = _compile(project, tree, now)
    return compiler.count(part)


def sample(
    project: Project, tree: Any, *, limit: int, now: datetime | None = None
) -> tuple[list[Subscriber], int]:
    """The ``limit`` newest subscribers matching ``tree`` (newest first), and how many of all the
    matches are reachable on WhatsApp (``REACHABLE_ON_WHATSAPP``): the builder's second request.

    When the rule is a set of ids (tags, events and their set algebra), the set is evaluated
    once, its largest ids first: ids grow with ``created_at`` (both are given at creation), so
    the first ``limit`` are the newest, and no subscriber row is read to sort them (it was a
    scan of every subscriber when PostgreSQL overestimated the set, docs/benchmarks.md). A set
    of up to PROBE_LIMIT ids is read whole and its reachable members counted by primary key;
    a larger one is counted by a join. Other rules walk the newest subscribers
    (``subscriber_project_created``) until ``limit`` match.
    """
    compiler, part = _compile(project, tree, now)
    rows = Subscriber.objects.for_project(project)
    if part.q is not None or part.negated:
        matching = rows.filter(compiler.as_q(part))
        newest = list(matching.order_by("-created_at", "-id")[:limit])
        return newest, matching.filter(REACHABLE_ON_WHATSAPP).count()
    ids = part.ids
    column = ids.query.values_select[0]
    if not ids.query.combinator:
        ids = ids.distinct()  # event rows repeat their subscriber
    top = [row[column] for row in ids.order_by(f"-{column}")[: max(limit, PROBE_LIMIT) + 1]]
    newest = sorted(rows.filter(pk__in=top[:limit]), key=lambda s: s.pk, reverse=True)
    reachable = rows.filter(REACHABLE_ON_WHATSAPP)
    if len(top) <= PROBE_LIMIT:
        return newest, reachable.filter(AnyOf(F("pk"), top)).count()
    return newest, reachable.filter(pk__in=ids.order_by()).count()


# Ids the builder's sample reads into memory at most (a parameter each; SQLite allows 32,766).
PROBE_LIMIT = 20_000


# Opted in, with a number to send to (a subscriber known by a BSUID only has none).
REACHABLE_ON_WHATSAPP = Q(whatsapp_consent=ConsentState.OPTED_IN, phone__isnull=False)


def _compile(project: Project, tree: Any, now: datetime | None) -> tuple[Compiler, Part]:
    resolver = Resolver(project)
    checked = Checker(resolver).rule(tree)
    compiler = Compiler(project, resolver, now=now)
    return compiler, compiler.part(checked)


class Compiler:
    def __init__(self, project: Project, resolver: Resolver, *, now: datetime | None = None):
        self.project = project
        self.resolver = resolver
        self.now = now or timezone.now()
        self.tz = ZoneInfo(project.time_zone or "UTC")
        self.today = timezone.localtime(self.now, self.tz).date()

    def compile(self, node: dict[str, Any]) -> Q:
        """``node`` as a condition on the subscriber row (id sets become ``pk IN (...)``)."""
        return self.as_q(self.part(node))

    def part(self, node: dict[str, Any]) -> Part:
        match node["type"]:
            case t.GROUP:
                parts = [self.part(child) for child in node["children"]]
                part = self.all_of(parts) if node["op"] == "and" else self.any_of(parts)
                return ~part if node.get("negate") else part
            case t.TAG:
                return self.tag(node)
            case t.FIELD:
                column, type_, _unused = t.FIELDS[node["field"]]
                case = node.get(t.MATCH_CASE, False)
                return Part(q=self.column(column, type_, node["op"], node.get("value"), case=case))
            case t.EVENT:
                return self.event(node)
            case t.SEGMENT:
                return self.part(self.resolver.segment_rules[node["segment"]])
            case t.REACHABILITY:
                return Part(q=self.reachability(node["channel"]))
            case t.ALL:
                return Part(q=EVERYONE)
            case t.NONE:
                return Part(q=NOTHING)
        raise ValueError(f"cannot compile {node!r}")

    # ---- set algebra -----------------------------------------------------------------------------

    def everyone(self) -> QuerySet:
        return Subscriber.objects.for_project(self.project).order_by().values("pk")

    def as_q(self, part: Part) -> Q:
        if part.q is not None:
            return part.q
        inside = Q(pk__in=part.ids)  # ids are never NULL: NOT IN is safe
        return ~inside if part.negated else inside

    def as_ids(self, part: Part) -> QuerySet:
        if part.q is not None:
            return self.everyone().filter(part.q)
        if part.negated:
            return self.everyone().difference(part.ids)
        return part.ids

    def count(self, part: Part) -> int:
        if part.q is not None:
            return Subscriber.objects.for_project(self.project).filter(part.q).count()
        ids = self.as_ids(part)
        # Set operations return each id once; a plain id query (event rows) may repeat them.
        return ids.count() if ids.query.combinator else ids.distinct().count()

    def all_of(self, parts: list[Part]) -> Part:
        rows = [p.q for p in parts if p.q is not None]
        included = [p.ids for p in parts if p.q is None and not p.negated]
        excluded = [p.ids for p in parts if p.q is None and p.negated]
        if not included and not excluded:
            return Part(q=reduce(and_, rows))
        if included:
            ids = _intersection(included)
            if excluded:
                ids = ids.difference(*excluded)
            if rows:
                return Part(q=reduce(and_, rows) & Q(pk__in=ids))
            return Part(ids=ids)
        if rows:
            return Part(ids=self.everyone().filter(reduce(and_, rows)).difference(*excluded))
        # NOT a AND NOT b == NOT (a OR b)
        return Part(ids=_union(excluded), negated=True)

    def any_of(self, parts: list[Part]) -> Part:
        if all(p.q is None and not p.negated for p in parts):
            return Part(ids=_union([p.ids for p in parts]))
        if all(p.q is None and p.negated for p in parts):
            # NOT a OR NOT b == NOT (a AND b)
            return Part(ids=_intersection([p.ids for p in parts]), negated=True)
        return Part(q=reduce(or_, (self.as_q(p) for p in parts)))

    # ---- tags ----------------------------------------------------------------------------------

    def tag(self, node: dict[str, Any]) -> Part:
        info: TagInfo = self.resolver.tags()[node["tag"].lower()]
        op, value = node["op"], node.get("value")
        if info.column is not None:
            if info.column == "whatsapp_consent":
                return Part(q=self.consent_as_boolean(op, value))
            return Part(q=self.column(info.column, info.type, op, value, case=node.get(t.MATCH_CASE, False)))
        rows = TagValue.objects.filter(tag_id=info.definition_id).order_by()
        col = VALUE_COLUMN[info.type]

        def has(q: Q | None = None) -> Part:
            matching = rows.filter(q) if q is not None else rows
            return Part(ids=matching.values("subscriber"))

        if op == "any":
            return has()
        if op == "none":
            return ~has()
        case = node.get(t.MATCH_CASE, False)
        if info.type == TagType.LIST:
            # One row per item: "does not contain" means the tag is set and no item matches.
            positive = "in" if op in ("in", "notin") else "eq"
            item = text_match("value_text", "value_folded", positive, value, case=case)
            if op in ("eq", "contains", "in"):
                return has(item)
            return self.all_of([has(), ~has(item)])
        if info.type == TagType.STRING:
            # Every row of a text tag has a value: "not" is simply the row that does not match.
            if op in ("noteq", "notin"):
                positive = "eq" if op == "noteq" else "in"
                return has(~text_match("value_text", "value_folded", positive, value, case=case))
            return has(text_match("value_text", "value_folded", op, value, case=case))
        # Single-valued types: the row exists and its value compares (or, for noteq/notin, does not).
        if op in ("noteq", "notin"):
            positive = self.compare(col, info.type, "eq" if op == "noteq" else "in", value)
            return has(~positive)
        return has(self.compare(col, info.type, op, value))

    def consent_as_boolean(self, op: str, value: Any) -> Q:
        opted_in = Q(whatsapp_consent=ConsentState.OPTED_IN)
        match op:
            case "any":
                return EVERYONE
            case "none":
                return NOTHING
            case "eq":
                return opted_in if value else ~opted_in
            case "noteq":
                return ~opted_in if value else opted_in
        raise ValueError(op)

    # ---- subscriber columns ----------------------------------------------------------------------

    def column(self, column: str, type_: str, op: str, value: Any, *, case: bool = False) -> Q:
        """A condition on a Subscriber column; an empty or NULL column is "not set"."""
        if type_ == t.CONSENT:
            positive = self.compare(column, TagType.STRING, "eq" if op in ("eq", "noteq") else "in", value)
            return ~positive if op in ("noteq", "notin") else positive
        present = Q(**{f"{column}__isnull": False})
        if type_ == TagType.STRING:
            present &= ~Q(**{column: ""})
        if op == "any":
            return present
        if op == "none":
            return ~present
        positive = {"noteq": "eq", "notin": "in"}.get(op, op)
        if type_ == TagType.STRING and column not in CANONICAL_COLUMNS:
            match = text_match(column, Fold(F(column)), positive, value, case=case)
        else:
            # Phone numbers and country codes are stored canonical (and their conditions are
            # validated so): compared as they are, they keep their indexes.
            match = self.compare(column, type_, positive, value)
        return present & ~match if positive != op else present & match

    # ---- comparisons shared by tag rows, columns and event attributes ---------------------------

    def compare(self, lhs: str, type_: str, op: str, value: Any) -> Q:
        """``lhs <op> value`` for a positive operator (not noteq/notin/any/none)."""
        if type_ == TagType.DATETIME:
            return self.compare_datetime(lhs, op, value)
        if type_ == TagType.DATE:
            value = self.date_value(op, value)
            if op == "within":
                return Q(**{f"{lhs}__gte": value[0], f"{lhs}__lte": value[1]})
        elif type_ in (TagType.INTEGER, TagType.DECIMAL) and lhs == "value_number":
            value = [Decimal(str(v)) for v in value] if isinstance(value, list) else Decimal(str(value))
        match op:
            case "eq":
                return Q(**{lhs: value})
            case "gt" | "after":
                return Q(**{f"{lhs}__gt": value})
            case "gte":
                return Q(**{f"{lhs}__gte": value})
            case "lt" | "before":
                return Q(**{f"{lhs}__lt": value})
            case "lte":
                return Q(**{f"{lhs}__lte": value})
            case "between":
                return Q(**{f"{lhs}__gte": value[0], f"{lhs}__lte": value[1]})
            case "in":
                return Q(**{f"{lhs}__in": value})
            case "contains":
                return Q(**{f"{lhs}__icontains": value})
            case "startswith":
                return Q(**{f"{lhs}__startswith": value})
        raise ValueError(op)

    def date_value(self, op: str, value: Any) -> Any:
        if op == "within":
            return [self.today - timedelta(days=value), self.today]
        if isinstance(value, list):
            return [parse_date(v) for v in value]
        return parse_date(value)

    def compare_datetime(self, lhs: str, op: str, value: Any) -> Q:
        """Datetimes against a date mean the whole day in the project's time zone."""
        if op == "within":
            return Q(**{f"{lhs}__gte": self.now - timedelta(days=value), f"{lhs}__lte": self.now})
        if op in ("between", "in"):
            if op == "in":
                parts = [self.compare_datetime(lhs, "eq", v) for v in value]
                q = parts[0]
                for part in parts[1:]:
                    q |= part
                return q
            start, _unused = self.bounds(value[0])
            high_start, high_end = self.bounds(value[1])
            upper = f"{lhs}__lte" if high_start == high_end else f"{lhs}__lt"
            return Q(**{f"{lhs}__gte": start, upper: high_end})
        start, end = self.bounds(value)
        exact = start == end
        match op:
            case "eq":
                return Q(**{lhs: start}) if exact else Q(**{f"{lhs}__gte": start, f"{lhs}__lt": end})
            case "gt" | "after":
                return Q(**{f"{lhs}__gt" if exact else f"{lhs}__gte": end})
            case "gte":
                return Q(**{f"{lhs}__gte": start})
            case "lt" | "before":
                return Q(**{f"{lhs}__lt": start})
            case "lte":
                return Q(**{f"{lhs}__lte" if exact else f"{lhs}__lt": end})
        raise ValueError(op)

    def bounds(self, value: str) -> tuple[datetime, datetime]:
        """(start, end) of a date value (end exclusive), or (dt, dt) for a full datetime."""
        day = parse_date(value) if len(value) == 10 else None
        if day is not None:
            return self.day_start(day), self.day_start(day + timedelta(days=1))
        parsed = parse_datetime(value)
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, self.tz)  # as dates: the project's time zone
        return parsed, parsed

    def day_start(self, day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=self.tz)

    # ---- events ----------------------------------------------------------------------------------

    def event(self, node: dict[str, Any]) -> Part:
        events = Event.objects.for_project(self.project).filter(name=node["event"]).order_by()
        window = node.get("window")
        if window:
            events = events.filter(self.window(window))
        schema = self.resolver.events()[node["event"]]
        for i, cond in enumerate(node.get("where") or []):
            events = self.attribute(events, f"attr_{i}", schema[cond["attribute"]], cond)
        op, n = node["op"], node["count"]
        # Counts zero satisfies become NOT (the complement), which zero does not satisfy.
        complement = {"eq": "noteq", "noteq": "eq", "lt": "gte", "lte": "gt", "gte": "lt", "gt": "lte"}
        if _zero_satisfies(op, n):
            return ~self.performed(events, complement[op], n)
        return self.performed(events, op, n)

    def performed(self, events: QuerySet, op: str, n: int) -> Part:
        """Subscribers with a number of matching events satisfying ``op n`` (never true at zero)."""
        if (op, n) in (("gte", 1), ("gt", 0), ("noteq", 0)):
            return Part(ids=events.values("subscriber"))
        if op == "lt":  # only "lt 0" gets here: no count is below zero
            return Part(q=NOTHING)
        grouped = (
            events.values("subscriber")
            .annotate(n=Count("*"))
            .filter(**{f"n__{'exact' if op == 'eq' else op}": n})
            .values("subscriber")
        )
        return Part(ids=grouped)

    def window(self, window: dict[str, Any]) -> Q:
        match window["kind"]:
            case "days":
                return Q(occurred_at__gte=self.now - timedelta(days=window["n"]))
            case "hours":
                return Q(occurred_at__gte=self.now - timedelta(hours=window["n"]))
            case "since":
                return Q(occurred_at__gte=self.day_start(parse_date(window["from"])))
            case "between":
                start = self.day_start(parse_date(window["from"]))
                end = self.day_start(parse_date(window["to"]) + timedelta(days=1))
                return Q(occurred_at__gte=start, occurred_at__lt=end)
        raise ValueError(window)

    def attribute(self, events: QuerySet, alias: str, type_: str, cond: dict[str, Any]) -> QuerySet:
        """Filter events on one JSON attribute; a missing attribute never matches (but ``none``)."""
        name, op, value = cond["attribute"], cond["op"], cond.get("value")
        # Facets (the attributes with long texts shortened to ``true``) are in the event index;
        # only "contains" and a comparison with a long text need the full attributes.
        # Key transforms as expressions, not "attributes__<name>" paths: an attribute may be
        # called "in" or "gt" without turning into a lookup.
        present = Q(facets__has_key=name)
        if op == "any":
            return events.filter(present)
        if op == "none":
            return events.exclude(present)
        if type_ == TagType.STRING:
            positive = {"noteq": "eq", "notin": "in"}.get(op, op)
            case = cond.get(t.MATCH_CASE, False)
            events, match = text_attribute(events, alias, name, positive, value, case=case)
            return events.filter(present).exclude(match) if positive != op else events.filter(match)
        column = "facets"
        if type_ == TagType.DATETIME:
            # Stored as ISO text with the sender's offset; compare the calendar date it names.
            events = events.alias(**{alias: attribute_value(name, type_, column)})
            type_ = TagType.DATE
            value = [v[:10] for v in value] if isinstance(value, list) else value
            if not isinstance(value, list) and op != "within":
                value = value[:10]
        else:
            events = events.alias(**{alias: attribute_value(name, type_, column)})
        # ISO dates are JSON strings that sort like the dates they name.
        if type_ == TagType.DATE and op == "within":
            start, end = self.date_value(op, value)
            return events.filter(**{f"{alias}__gte": start.isoformat(), f"{alias}__lte": end.isoformat()})
        if op in ("noteq", "notin"):
            positive = self.json_compare(alias, "eq" if op == "noteq" else "in", value)
            return events.filter(present).exclude(positive)
        # A missing key extracts as NULL, which no comparison matches.
        return events.filter(self.json_compare(alias, op, value))

    def json_compare(self, alias: str, op: str, value: Any) -> Q:
        match op:
            case "eq":
                return Q(**{alias: value})
            case "gt" | "after":
                return Q(**{f"{alias}__gt": value})
            case "gte":
                return Q(**{f"{alias}__gte": value})
            case "lt" | "before":
                return Q(**{f"{alias}__lt": value})
            case "lte":
                return Q(**{f"{alias}__lte": value})
            case "between":
                return Q(**{f"{alias}__gte": value[0], f"{alias}__lte": value[1]})
            case "in":
                return Q(**{f"{alias}__in": value})
        raise ValueError(op)

    # ---- reachability ----------------------------------------------------------------------------

    def reachability(self, channel: str) -> Q:
        match channel:
            case "whatsapp":
                return Q(whatsapp_consent=ConsentState.OPTED_IN)
            case "window":
                return Q(last_inbound_at__gt=service_window.opened_after(self.now))
            case "email":
                return (
                    ~Q(email="")
                    & Q(email_undeliverable_at__isnull=True)
                    & ~Q(email_consent=ConsentState.OPTED_OUT)
                )
            case "push":
                return ~Q(push_consent=ConsentState.OPTED_OUT) & Exists(
                    Device.objects.filter(
                        subscriber=OuterRef("pk"), removed_at__isnull=True, push_enabled=True
                    )
                )
        raise ValueError(channel)


def attribute_value(name: str, type_: str, column: str = "facets") -> Func | Transform:
    """The expression an attribute condition compares (but ``contains``, which needs text).

    Attribute indexes (``attribute_indexes.py``) are built on this same expression over
    ``facets``, which is what lets PostgreSQL use them.
    """
    if type_ == TagType.DATETIME:
        return Substr(KeyTextTransform(name, column), 1, 10)
    return KeyTransform(name, column)


# Stored canonical (E.164, ISO 3166 upper case): compared as they are.
CANONICAL_COLUMNS = frozenset({"phone", "country"})


def text_match(original: str | Expression, folded: str | Expression, op: str, value: Any, *, case: bool) -> Q:
    """``original <op> value`` for eq, in, contains and startswith, without case and accents
    (on ``folded``, the folded copy of ``original``) unless ``case``. A column or alias is named
    by a string (so that JSON keys get their JSON lookups), an expression is itself.

    A case-sensitive condition also compares ``folded`` (but for contains, which no index
    serves): the folded value is what the index is keyed on, and whatever equals the value
    exactly equals it folded too.
    """
    values = value if isinstance(value, list) else [value]
    folds = list(dict.fromkeys(fold(v) for v in values))
    match op:
        case "eq":
            q = _lookup(folded, "exact", folds[0])
            return q & _lookup(original, "exact", value) if case else q
        case "in":
            q = _lookup(folded, "in", folds)
            return q & _lookup(original, "in", values) if case else q
        case "contains":
            # strpos / instr, not LIKE: SQLite's LIKE ignores the case of ASCII letters.
            lhs, needle = (original, value) if case else (folded, folds[0])
            return Q(GreaterThan(StrIndex(_expression(lhs), Value(needle)), 0))
        case "startswith":
            q = _lookup(folded, "startswith", folds[0])
            if case:
                q &= Q(Exact(Substr(_expression(original), 1, len(value)), value))
            return q
    raise ValueError(op)


def _expression(ref: str | Expression) -> Expression:
    return F(ref) if isinstance(ref, str) else ref


def _lookup(lhs: str | Expression, lookup: str, rhs: Any) -> Q:
    if isinstance(lhs, str):
        return Q(**{f"{lhs}__{lookup}": rhs})
    return Q({"exact": Exact, "in": In, "startswith": StartsWith}[lookup](lhs, rhs))


def text_attribute(events: QuerySet, alias: str, name: str, op: str, value: Any, *, case: bool):
    """``events`` with the alias a text attribute condition (positive operator) needs, and the
    condition: folded facets from the event index; the original ``attributes`` only to match
    case or for texts too long for the facets (``true`` there; the database folds those:
    ``wcp_fold``)."""
    # JSON equality through the alias (facets -> 'cuisine' = '"asian"'): the attribute indexes'
    # expression. Texts as expressions: their generic lookups compare text on both databases.
    facet = f"{alias}_facet"
    events = events.alias(**{facet: KeyTransform(name, "facets")})
    facet_text, original = KeyTextTransform(name, "facets"), KeyTextTransform(name, "attributes")
    long_facet = Q(**{facet: True})
    values = value if isinstance(value, list) else [value]
    long_values = [v for v in values if len(v) > FACET_TEXT]
    if op in ("eq", "in"):
        short = [v for v in values if len(v) <= FACET_TEXT]
        q = NOTHING
        if short:
            one = len(short) == 1
            q = text_match(original, facet, "eq" if one else "in", short[0] if one else short, case=case)
        for v in long_values:
            q |= long_facet & text_match(original, Fold(original), "eq", v, case=case)
        return events, q
    # contains / startswith: a short text from the facets, a long one from the attributes.
    if case:
        return events, text_match(original, facet_text, op, value, case=True)
    from_facets = ~long_facet & text_match(facet_text, facet_text, op, value, case=False)
    return events, from_facets | (long_facet & text_match(original, Fold(original), op, value, case=False))


def _intersection(queries: list[QuerySet]) -> QuerySet:
    return queries[0].intersection(*queries[1:]) if len(queries) > 1 else queries[0]


def _union(queries: list[QuerySet]) -> QuerySet:
    return queries[0].union(*queries[1:]) if len(queries) > 1 else queries[0]


def _zero_satisfies(op: str, n: int) -> bool:
    """Whether a subscriber with no matching event satisfies ``count <op> n``."""
    zero = 0
    return {
        "eq": zero == n,
        "noteq": zero != n,
        "gt": zero > n,
        "gte": zero >= n,
        "lt": zero < n,
        "lte": zero <= n,
    }[op]
