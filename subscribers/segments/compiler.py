"""Compiling a validated rule tree into one ORM query over the project's subscribers.

Only ORM expressions (Q, Exists, OuterRef, Count, JSON key transforms): no SQL text is ever built.
The shapes are chosen for PostgreSQL at a million subscribers and ten million events:

- A tag condition is ``EXISTS (tag value rows of that tag matching the value)``. Under AND (or
  NOT) PostgreSQL turns it into a semi-join (anti-join) fed by the partial ``tagvalue_*`` index
  on (tag, value, subscriber). TagValue rows are not filtered by project: the tag definition
  was resolved within the project, so its rows are the project's.
- An event condition filters project, name and occurred_at inside the subquery, so the
  ``(project, name, occurred_at) INCLUDE (subscriber)`` index drives it. "At least once" is an
  EXISTS; "at least N times" is ``id IN (... GROUP BY subscriber HAVING COUNT(*) >= N)``, one
  aggregate over the matching events instead of a count per subscriber. A count that zero
  satisfies (never, fewer than N, at most N) is the NOT of the opposite condition, so
  subscribers without any such event are counted, and "never" stays an anti-join. (NOT over
  "at least N" with N >= 2 is ``NOT IN`` over the grouped subquery, which PostgreSQL runs as a
  hashed subplan: fast while the set of subscribers with N+ events fits in work_mem.)
- Event attributes compare JSON values natively (``attributes -> 'cuisine' = '"asian"'`` on
  PostgreSQL, ``JSON_EXTRACT`` on SQLite): numbers compare as numbers. Attribute types are
  enforced when events are recorded, so a numeric attribute only ever holds numbers.
- A segment-membership condition inlines the included segment's rule (validated for cycles).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Substr
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from controlpanel.models import Project

from ..models import ConsentState, Event, Subscriber, TagType, TagValue
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


def audience(project: Project, tree: Any, *, now: datetime | None = None) -> QuerySet[Subscriber]:
    """The project's subscribers matching ``tree``. Validates first (raises InvalidInput)."""
    resolver = Resolver(project)
    checked = Checker(resolver).rule(tree)
    q = Compiler(project, resolver, now=now).compile(checked)
    return Subscriber.objects.for_project(project).filter(q)


def count(project: Project, tree: Any) -> int:
    """How many of the project's subscribers match ``tree``."""
    return audience(project, tree).count()


class Compiler:
    def __init__(self, project: Project, resolver: Resolver, *, now: datetime | None = None):
        self.project = project
        self.resolver = resolver
        self.now = now or timezone.now()
        self.tz = ZoneInfo(project.time_zone or "UTC")
        self.today = timezone.localtime(self.now, self.tz).date()

    def compile(self, node: dict[str, Any]) -> Q:
        match node["type"]:
            case t.GROUP:
                parts = [self.compile(child) for child in node["children"]]
                q = parts[0]
                for part in parts[1:]:
                    q = q & part if node["op"] == "and" else q | part
                return ~q if node.get("negate") else q
            case t.TAG:
                return self.tag(node)
            case t.FIELD:
                column, type_, _ = t.FIELDS[node["field"]]
                return self.column(column, type_, node["op"], node.get("value"))
            case t.EVENT:
                return self.event(node)
            case t.SEGMENT:
                return self.compile(self.resolver.segment_rules[node["segment"]])
            case t.REACHABILITY:
                return self.reachability(node["channel"])
            case t.ALL:
                return EVERYONE
            case t.NONE:
                return NOTHING
        raise ValueError(f"cannot compile {node!r}")

    # ---- tags ----------------------------------------------------------------------------------

    def tag(self, node: dict[str, Any]) -> Q:
        info: TagInfo = self.resolver.tags()[node["tag"].lower()]
        op, value = node["op"], node.get("value")
        if info.column is not None:
            if info.column == "whatsapp_consent":
                return self.consent_as_boolean(op, value)
            return self.column(info.column, info.type, op, value)
        rows = TagValue.objects.filter(tag_id=info.definition_id)
        col = VALUE_COLUMN[info.type]

        def has(q: Q | None = None) -> Q:
            matching = rows.filter(q) if q is not None else rows
            return Q(Exists(matching.filter(subscriber=OuterRef("pk"))))

        if op == "any":
            return has()
        if op == "none":
            return ~has()
        if info.type == TagType.LIST:
            # One row per item: "does not contain" means the tag is set and no item matches.
            if op in ("eq", "contains"):
                return has(Q(**{col: value}))
            if op == "in":
                return has(Q(**{f"{col}__in": value}))
            if op == "noteq":
                return has() & ~has(Q(**{col: value}))
            if op == "notin":
                return has() & ~has(Q(**{f"{col}__in": value}))
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

    def column(self, column: str, type_: str, op: str, value: Any) -> Q:
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
        if op in ("noteq", "notin"):
            return present & ~self.compare(column, type_, "eq" if op == "noteq" else "in", value)
        return present & self.compare(column, type_, op, value)

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
            start, _ = self.bounds(value[0])
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
            parsed = timezone.make_aware(parsed, timezone.UTC)
        return parsed, parsed

    def day_start(self, day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=self.tz)

    # ---- events ----------------------------------------------------------------------------------

    def event(self, node: dict[str, Any]) -> Q:
        events = Event.objects.for_project(self.project).filter(name=node["event"])
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

    def performed(self, events: QuerySet, op: str, n: int) -> Q:
        """Subscribers with a number of matching events satisfying ``op n`` (never true at zero)."""
        if (op, n) in (("gte", 1), ("gt", 0), ("noteq", 0)):
            return Q(Exists(events.filter(subscriber=OuterRef("pk"))))
        if op == "lt":  # only "lt 0" gets here: no count is below zero
            return NOTHING
        grouped = (
            events.order_by()
            .values("subscriber")
            .annotate(n=Count("*"))
            .filter(**{f"n__{'exact' if op == 'eq' else op}": n})
            .values("subscriber")
        )
        return Q(pk__in=grouped)

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
        # Key transforms as expressions, not "attributes__<name>" paths: an attribute may be
        # called "in" or "gt" without turning into a lookup.
        present = Q(attributes__has_key=name)
        if op == "any":
            return events.filter(present)
        if op == "none":
            return events.exclude(present)
        if type_ == TagType.DATETIME:
            # Stored as ISO text with the sender's offset; compare the calendar date it names.
            events = events.alias(**{alias: Substr(KeyTextTransform(name, "attributes"), 1, 10)})
            type_ = TagType.DATE
            value = [v[:10] for v in value] if isinstance(value, list) else value
            if not isinstance(value, list) and op != "within":
                value = value[:10]
        elif op == "contains":
            events = events.alias(**{alias: KeyTextTransform(name, "attributes")})
        else:
            events = events.alias(**{alias: KeyTransform(name, "attributes")})
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
            case "contains":
                return Q(**{f"{alias}__icontains": value})
        raise ValueError(op)

    # ---- reachability ----------------------------------------------------------------------------

    def reachability(self, channel: str) -> Q:
        match channel:
            case "whatsapp":
                return Q(whatsapp_consent=ConsentState.OPTED_IN)
            case "window":
                return Q(last_inbound_at__gte=self.now - timedelta(hours=24))
            case "email":
                return ~Q(email="")
            case "push":
                return Q(push_devices__isnull=False) & ~Q(push_devices=[])
        raise ValueError(channel)


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
