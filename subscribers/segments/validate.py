"""Checking a rule tree against a project: known tags, events, attributes, segments and operators.

``validate_rule`` returns the canonical form of the tree (names spelled as defined, values in
their JSON type, segment references carrying both public id and current name), which is what
gets stored and compiled. Every error is an ``InvalidInput`` with code ``invalid_rule`` and a
message naming the offending tag, event, attribute or segment; ``field`` is the node's path in
the tree (``rule``, ``rule.0``, ``rule.0.2``: child indexes from the root).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _

from controlpanel.models import Project

from .. import events as eventdefs
from .. import tags as tagtypes
from ..errors import InvalidInput
from ..models import Segment, TagDefinition, TagType
from . import tree as t

CODE = "invalid_rule"


class IncompleteRule(InvalidInput):
    """A condition still being filled in (no value yet): not wrong, just not finished."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message, field=field, code=CODE)


@dataclass(frozen=True)
class TagInfo:
    name: str
    type: str
    definition_id: int | None = None  # custom tag: TagValue rows
    column: str | None = None  # built-in tag: a Subscriber column


class Resolver:
    """Looks up a project's tags, events and segments once per rule (validation and compilation)."""

    def __init__(self, project: Project):
        self.project = project
        self._tags: dict[str, TagInfo] | None = None
        self._events: dict[str, dict[str, str]] | None = None
        self._segments: dict[str, Segment] | None = None
        # Validated rules of referenced segments by public id, for the compiler.
        self.segment_rules: dict[str, dict[str, Any]] = {}

    def tags(self) -> dict[str, TagInfo]:
        if self._tags is None:
            found = {
                key: TagInfo(b.name, str(b.type), column=b.field) for key, b in tagtypes.BUILTIN_TAGS.items()
            }
            for d in TagDefinition.objects.for_project(self.project).only("id", "name", "type"):
                found.setdefault(d.name.lower(), TagInfo(d.name, d.type, definition_id=d.pk))
            self._tags = found
        return self._tags

    def events(self) -> dict[str, dict[str, str]]:
        if self._events is None:
            self._events = eventdefs.all_definitions(self.project)
        return self._events

    def segments(self) -> dict[str, Segment]:
        """Every segment of the project by public id (a project has dozens, not thousands)."""
        if self._segments is None:
            self._segments = {
                str(s.public_id): s
                for s in Segment.objects.for_project(self.project).only("id", "public_id", "name", "rule")
            }
        return self._segments

    def segment_by_ref(self, node: dict[str, Any]) -> Segment | None:
        ref = node.get("segment")
        if ref:
            try:
                return self.segments().get(str(uuid.UUID(str(ref))))
            except ValueError:
                return None
        name = str(node.get("name") or "").strip().lower()
        return next((s for s in self.segments().values() if s.name.lower() == name), None)


def validate_rule(project: Project, tree: Any, *, segment: Segment | None = None) -> dict[str, Any]:
    """The canonical form of ``tree`` for ``project``; raises InvalidInput naming what is wrong.

    ``segment`` is the saved segment the rule belongs to (when editing one): a rule that
    includes it, directly or through other segments, is refused as a cycle.
    """
    return Checker(Resolver(project)).rule(tree, segment=segment)


class Checker:
    def __init__(self, resolver: Resolver):
        self.resolver = resolver
        self.nodes = 0

    def rule(self, tree: Any, *, segment: Segment | None = None) -> dict[str, Any]:
        chain = (str(segment.public_id),) if segment is not None and segment.pk else ()
        names = (segment.name,) if chain else ()
        return self.node(tree, path="rule", depth=0, chain=chain, names=names)

    def fail(self, message: str, path: str) -> InvalidInput:
        return InvalidInput(message, field=path, code=CODE)

    def node(self, node: Any, *, path: str, depth: int, chain: tuple[str, ...], names: tuple[str, ...]):
        if not isinstance(node, dict):
            raise self.fail(_("A rule must be a JSON object with a type."), path)
        self.nodes += 1
        if self.nodes > t.MAX_NODES:
            raise self.fail(
                _("A rule may have at most %(max_nodes)s conditions and groups.")
                % {"max_nodes": t.MAX_NODES},
                path,
            )
        kind = node.get("type")
        if kind == t.GROUP:
            return self.group(node, path=path, depth=depth, chain=chain, names=names)
        if kind == t.TAG:
            return self.tag(node, path)
        if kind == t.FIELD:
            return self.field(node, path)
        if kind == t.EVENT:
            return self.event(node, path)
        if kind == t.SEGMENT:
            return self.segment(node, path=path, chain=chain, names=names)
        if kind == t.REACHABILITY:
            channel = node.get("channel")
            if channel not in t.REACHABILITY_CHANNELS:
                raise self.fail(
                    _("Unknown reachability %(channel)r; use one of %(value)s.")
                    % {"channel": channel, "value": ", ".join(t.REACHABILITY_CHANNELS)},
                    path,
                )
            return {"type": t.REACHABILITY, "channel": channel}
        if kind in (t.ALL, t.NONE):
            return {"type": kind}
        raise self.fail(_("Unknown condition type %(kind)r.") % {"kind": kind}, path)

    def group(self, node, *, path, depth, chain, names) -> dict[str, Any]:
        if depth >= t.MAX_DEPTH:
            raise self.fail(
                _("Groups may be nested at most %(max_depth)s levels deep.") % {"max_depth": t.MAX_DEPTH},
                path,
            )
        op = node.get("op", "and")
        if op not in ("and", "or"):
            raise self.fail(_("A group joins its conditions with and/or, not %(op)r.") % {"op": op}, path)
        negate = node.get("negate", False)
        if not isinstance(negate, bool):
            raise self.fail(_("A group's negate must be true or false."), path)
        children = node.get("children")
        if not isinstance(children, list) or not children:
            raise self.fail(
                _("This group has no conditions: add one, or use “everyone” / “nobody” explicitly."), path
            )
        checked = [
            self.node(child, path=f"{path}.{i}", depth=depth + 1, chain=chain, names=names)
            for i, child in enumerate(children)
        ]
        return t.group(op, checked, negate=negate)

    def tag(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        name = node.get("tag")
        if not isinstance(name, str) or not name.strip():
            raise self.fail(_("A tag condition needs a tag name."), path)
        info = self.resolver.tags().get(name.strip().lower())
        if info is None:
            raise self.fail(
                _("Unknown tag %(value)r: this project has no tag of that name.") % {"value": name.strip()},
                path,
            )
        op, value = self.op_value(node, info.type, f"tag {info.name!r}", path)
        return {"type": t.TAG, "tag": info.name, "op": op, **value}

    def field(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        name = node.get("field")
        if name not in t.FIELDS:
            raise self.fail(
                _("Unknown field %(name)r; use one of %(value)s.")
                % {"name": name, "value": ", ".join(t.FIELDS)},
                path,
            )
        _unused, type_, _unused = t.FIELDS[name]
        op, value = self.op_value(node, type_, f"field {name!r}", path)
        if name == "country" and "value" in value:
            value = {**value, "value": _upper(value["value"])}
        return {"type": t.FIELD, "field": name, "op": op, **value}

    def event(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        name = node.get("event")
        if not isinstance(name, str) or not name.strip():
            raise self.fail(_("An event condition needs an event name."), path)
        events = self.resolver.events()
        name = name.strip()
        if name not in events:
            folded = [n for n in events if n.lower() == name.lower()]
            if len(folded) != 1:
                raise self.fail(
                    _("Unknown event %(name)r: this project has never defined or received it.")
                    % {"name": name},
                    path,
                )
            name = folded[0]
        op = node.get("op", "gte")
        if op not in t.COUNT_OPS:
            raise self.fail(
                _("Event count operator %(op)r is not one of %(value)s.")
                % {"op": op, "value": ", ".join(t.COUNT_OPS)},
                path,
            )
        count = node.get("count", 1)
        if count in ("", None):
            raise IncompleteRule(f"How many times {name!r}? The count is missing.", field=path)
        if isinstance(count, str) and count.strip().isdigit():
            count = int(count)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= t.MAX_COUNT:
            raise self.fail(
                _("The count for %(name)r must be a whole number from 0 to %(max_count)s.")
                % {"name": name, "max_count": t.MAX_COUNT},
                path,
            )
        window = self.window(node.get("window"), name, path)
        where = node.get("where") or []
        if not isinstance(where, list):
            raise self.fail(_("An event's attribute conditions must be a list."), path)
        schema = events[name]
        checked = []
        for cond in where:
            if not isinstance(cond, dict):
                raise self.fail(
                    _("An attribute condition of %(name)r must be an object.") % {"name": name}, path
                )
            attribute = cond.get("attribute")
            if not isinstance(attribute, str) or attribute not in schema:
                known = ", ".join(sorted(schema)) or "none"
                raise self.fail(
                    _("Event %(name)r has no attribute %(attribute)r (its attributes: %(known)s).")
                    % {"name": name, "attribute": attribute, "known": known},
                    path,
                )
            op_, value = self.op_value(cond, schema[attribute], f"attribute {attribute!r} of {name!r}", path)
            if schema[attribute] == TagType.LIST:
                raise self.fail(
                    _("Attribute %(attribute)r of %(name)r is a list; lists cannot be compared.")
                    % {"attribute": attribute, "name": name},
                    path,
                )
            checked.append({"attribute": attribute, "op": op_, **value})
        return {"type": t.EVENT, "event": name, "op": op, "count": count, "window": window, "where": checked}

    def window(self, window: Any, name: str, path: str) -> dict[str, Any] | None:
        if window in (None, {}, ""):
            return None
        if not isinstance(window, dict) or window.get("kind") not in t.WINDOW_KINDS:
            raise self.fail(
                _("The time window of %(name)r must be last N days/hours, since or between.")
                % {"name": name},
                path,
            )
        kind = window["kind"]
        if kind in ("days", "hours"):
            n = window.get("n")
            if n in ("", None):
                raise IncompleteRule(f"The time window of {name!r} needs a number of {kind}.", field=path)
            if isinstance(n, str) and n.strip().isdigit():
                n = int(n)
            limit = t.MAX_DAYS if kind == "days" else t.MAX_HOURS
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= limit:
                raise self.fail(
                    _("The window of %(name)r must be 1 to %(limit)s %(kind)s.")
                    % {"name": name, "limit": limit, "kind": kind},
                    path,
                )
            return {"kind": kind, "n": n}
        start = _date(window.get("from"))
        if start is None:
            raise self.fail(
                _("The window of %(name)r needs a start date like 2026-01-31.") % {"name": name}, path
            )
        if kind == "since":
            return {"kind": "since", "from": start.isoformat()}
        end = _date(window.get("to"))
        if end is None:
            raise self.fail(
                _("The window of %(name)r needs an end date like 2026-01-31.") % {"name": name}, path
            )
        if end < start:
            raise self.fail(_("The window of %(name)r ends before it starts.") % {"name": name}, path)
        return {"kind": "between", "from": start.isoformat(), "to": end.isoformat()}

    def segment(self, node, *, path, chain, names) -> dict[str, Any]:
        if not node.get("segment") and not node.get("name"):
            raise IncompleteRule("Choose the segment this condition refers to.", field=path)
        target = self.resolver.segment_by_ref(node)
        if target is None:
            label = node.get("name") or node.get("segment")
            raise self.fail(
                _("Unknown segment %(label)r: this project has no segment of that name.") % {"label": label},
                path,
            )
        ref = str(target.public_id)
        if ref in chain:
            loop = " → ".join([*names, target.name])
            raise self.fail(_("Segments cannot include themselves: %(loop)s.") % {"loop": loop}, path)
        if len(chain) >= t.MAX_SEGMENT_DEPTH:
            raise self.fail(
                _("Segments may include other segments at most %(max_segment_depth)s levels deep.")
                % {"max_segment_depth": t.MAX_SEGMENT_DEPTH},
                path,
            )
        if ref not in self.resolver.segment_rules or chain:
            # Check the included segment's own rule in this chain: cycles through it show up here.
            try:
                inner = Checker(self.resolver).node(
                    target.rule, path="rule", depth=0, chain=(*chain, ref), names=(*names, target.name)
                )
            except InvalidInput as exc:
                if exc.message.startswith("Segments "):
                    raise self.fail(exc.message, path) from None
                raise self.fail(
                    _("Segment %(name)r has an invalid rule: %(message)s")
                    % {"name": target.name, "message": exc.message},
                    path,
                ) from None
            self.resolver.segment_rules[ref] = inner
        return {"type": t.SEGMENT, "segment": ref, "name": target.name}

    # ---- operators and values ----------------------------------------------------------------

    def op_value(self, node: dict[str, Any], type_: str, what: str, path: str) -> tuple[str, dict[str, Any]]:
        op = node.get("op")
        allowed = t.OPS_BY_TYPE.get(type_, ())
        if op not in allowed:
            raise self.fail(
                _("Operator %(op)r is not allowed for %(what)s (%(value)s); use one of: %(value2)s.")
                % {"op": op, "what": what, "value": _type_label(type_), "value2": ", ".join(allowed)},
                path,
            )
        case = node.get(t.MATCH_CASE, False)
        if not isinstance(case, bool):
            raise self.fail(_("“match case” on %(what)s must be true or false.") % {"what": what}, path)
        if case and (type_ not in (TagType.STRING, TagType.LIST) or op not in t.TEXT_OPS):
            raise self.fail(
                _("“match case” applies to text conditions only, not to %(what)s %(op)s.")
                % {"what": what, "op": op},
                path,
            )
        op, value = self._op_value(node, op, type_, what, path)
        return op, {**value, t.MATCH_CASE: True} if case else value

    def _op_value(self, node, op: str, type_: str, what: str, path: str) -> tuple[str, dict[str, Any]]:
        if op in t.NO_VALUE_OPS:
            return op, {}
        if "value" not in node or node["value"] is None or node["value"] == "" or node["value"] == []:
            raise IncompleteRule(f"The condition on {what} ({op}) needs a value.", field=path)
        raw = node["value"]
        if op in t.DAYS_OPS:
            days = raw
            if isinstance(days, str) and days.strip().isdigit():
                days = int(days)
            if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= t.MAX_DAYS:
                raise self.fail(
                    _("“within” on %(what)s needs a number of days from 1 to %(max_days)s.")
                    % {"what": what, "max_days": t.MAX_DAYS},
                    path,
                )
            return op, {"value": days}
        if op in t.RANGE_OPS:
            if not isinstance(raw, list) or len(raw) != 2:
                raise self.fail(
                    _("“between” on %(what)s needs two values: from and to.") % {"what": what}, path
                )
            if "" in raw or None in raw:
                raise IncompleteRule(f"“between” on {what} needs both values.", field=path)
            low, high = (self.scalar(v, type_, what, path) for v in raw)
            tz = ZoneInfo(self.resolver.project.time_zone or "UTC")
            if _sort_key(type_, high, tz) < _sort_key(type_, low, tz):
                raise self.fail(
                    _("“between” on %(what)s: the first value must not be above the second.")
                    % {"what": what},
                    path,
                )
            return op, {"value": [low, high]}
        if op in t.LIST_OPS:
            items = raw if isinstance(raw, list) else [raw]
            if not items or len(items) > t.MAX_LIST_VALUES:
                raise self.fail(
                    _("“%(op)s” on %(what)s needs 1 to %(max_list_values)s values.")
                    % {"op": op, "what": what, "max_list_values": t.MAX_LIST_VALUES},
                    path,
                )
            values = [self.scalar(v, type_, what, path) for v in items]
            return op, {"value": list(dict.fromkeys(values))}
        if isinstance(raw, list):
            raise self.fail(
                _("“%(op)s” on %(what)s needs a single value, not a list.") % {"op": op, "what": what}, path
            )
        if op in ("contains", "startswith") and type_ == TagType.STRING:
            if not isinstance(raw, str | int) or isinstance(raw, bool):
                raise self.fail(_("“%(op)s” on %(what)s needs text.") % {"op": op, "what": what}, path)
            return op, {"value": self.scalar(str(raw), type_, what, path)}
        return op, {"value": self.scalar(raw, type_, what, path)}

    def scalar(self, value: Any, type_: str, what: str, path: str) -> Any:
        """One comparison value in its canonical JSON type, or a message naming the expected type."""
        expected = _type_label(type_)
        wrong = self.fail(
            _("%(value)s%(value2)s is %(expected)s; %(value3)r is not.")
            % {"value": what[0].upper(), "value2": what[1:], "expected": expected, "value3": value},
            path,
        )
        match type_:
            case TagType.STRING | TagType.LIST:
                if isinstance(value, bool) or not isinstance(value, str | int):
                    raise wrong
                text = str(value)
                if len(text) > tagtypes.MAX_TEXT:
                    raise self.fail(
                        _("A value for %(what)s is longer than %(max_text)s characters.")
                        % {"what": what, "max_text": tagtypes.MAX_TEXT},
                        path,
                    )
                if any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in text):
                    # The database cannot hold or compare either: a clear refusal, not a 500.
                    raise self.fail(
                        _("A value for %(what)s contains a character that text cannot hold.")
                        % {"what": what},
                        path,
                    )
                return text
            case TagType.INTEGER | TagType.DECIMAL:
                number = _number(value)
                if number is None:
                    raise wrong
                return number
            case TagType.BOOLEAN:
                if isinstance(value, str) and value.lower() in ("true", "false"):
                    return value.lower() == "true"
                if not isinstance(value, bool):
                    raise wrong
                return value
            case TagType.DATE:
                parsed = _date(value)
                if parsed is None:
                    raise self.fail(
                        (
                            _(
                                "%(value)s%(value2)s is a date: use YYYY-MM-DD (years "
                                "%(min_year)s-%(max_year)s), not %(value3)r."
                            )
                            % {
                                "value": what[0].upper(),
                                "value2": what[1:],
                                "min_year": MIN_YEAR,
                                "max_year": MAX_YEAR,
                                "value3": value,
                            }
                        ),
                        path,
                    )
                return parsed.isoformat()
            case TagType.DATETIME:
                if _date(value) is not None:
                    return _date(value).isoformat()
                parsed = _datetime(value)
                if parsed is None:
                    raise self.fail(
                        (
                            _(
                                "%(value)s%(value2)s is a date and time: use YYYY-MM-DD or "
                                "YYYY-MM-DDTHH:MM, not %(value3)r."
                            )
                            % {"value": what[0].upper(), "value2": what[1:], "value3": value}
                        ),
                        path,
                    )
                return parsed.isoformat()
            case t.CONSENT:
                if value not in t.CONSENT_VALUES:
                    raise self.fail(
                        _("%(value)s%(value2)s is a consent state, one of %(value3)s, not %(value4)r.")
                        % {
                            "value": what[0].upper(),
                            "value2": what[1:],
                            "value3": ", ".join(t.CONSENT_VALUES),
                            "value4": value,
                        },
                        path,
                    )
                return value
        raise wrong


def _type_label(type_: str) -> str:
    if type_ == t.CONSENT:
        return "a consent state"
    return {
        TagType.STRING: "text",
        TagType.INTEGER: "a whole number",
        TagType.DECIMAL: "a number",
        TagType.BOOLEAN: "true or false",
        TagType.DATE: "a date",
        TagType.DATETIME: "a date and time",
        TagType.LIST: "a list of text",
    }.get(type_, str(type_))


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) < 1e16 else None
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        if not number.is_finite() or abs(number) >= Decimal(10) ** 16:
            return None
        return int(number) if number == number.to_integral_value() and "." not in value else float(number)
    return None


# A day at either end of the calendar has no day after (or before) it in Python, nor in UTC.
MIN_YEAR, MAX_YEAR = 2, 9998


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value.strip()) != 10:
        return None
    try:
        parsed = parse_date(value.strip())
    except ValueError:
        return None
    return parsed if parsed is not None and MIN_YEAR <= parsed.year <= MAX_YEAR else None


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:
        return None
    # Without an offset it stays without one: the compiler reads it in the project's time zone,
    # as it reads dates, so a saved rule follows the project's zone like the panel does.
    return parsed if parsed is not None and MIN_YEAR <= parsed.year <= MAX_YEAR else None


def _sort_key(type_: str, value: Any, tz: tzinfo) -> Any:
    if type_ == TagType.DATETIME:
        parsed = _date(value)
        if parsed is not None:
            return datetime(parsed.year, parsed.month, parsed.day, tzinfo=tz)
        parsed = _datetime(value)
        return timezone.make_aware(parsed, tz) if timezone.is_naive(parsed) else parsed
    return value


def _upper(value: Any) -> Any:
    if isinstance(value, list):
        return [v.upper() for v in value]
    return value.upper() if isinstance(value, str) else value
