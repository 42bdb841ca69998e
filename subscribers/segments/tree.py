"""The segment rule tree: a closed set of JSON node kinds and the operators each value type allows.

A rule is a JSON object stored in ``Segment.rule``. Node kinds:

- ``{"type": "group", "op": "and"|"or", "negate": bool, "children": [node, ...]}``
- ``{"type": "tag", "tag": "<name>", "op": "<op>", "value": ...}``  (no ``value`` for any/none)
- ``{"type": "field", "field": "<built-in field>", "op": "<op>", "value": ...}``
- ``{"type": "event", "event": "<name>", "op": "<count op>", "count": N, "window": <window> | null,
  "where": [{"attribute": "<name>", "op": "<op>", "value": ...}, ...]}`` where a window is
  ``{"kind": "days"|"hours", "n": N}``, ``{"kind": "since", "from": "YYYY-MM-DD"}`` or
  ``{"kind": "between", "from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}``
- ``{"type": "segment", "segment": "<public id>", "name": "<name>"}``
- ``{"type": "reachability", "channel": "whatsapp"|"window"|"email"|"push"}``
- ``{"type": "all"}`` and ``{"type": "none"}``: "match everyone" and "match nobody" are explicit,
  an empty group is refused rather than guessed.

Text conditions (``eq noteq in notin contains startswith`` on text tags, list tags, text fields
and text attributes) ignore case and accents; ``"match_case": true`` on the condition (on the
node, or on the attribute condition) compares exactly.

Semantics follow PostHog cohorts: a subscriber without the tag (or the event attribute) never
matches a condition on it, whatever the operator, except ``none`` ("is not set"). "Not" is only
ever explicit: a negated group, or ``noteq``/``notin`` which still require a value.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _

from ..models import TagType

GROUP, TAG, FIELD, EVENT, SEGMENT, REACHABILITY, ALL, NONE = (
    "group",
    "tag",
    "field",
    "event",
    "segment",
    "reachability",
    "all",
    "none",
)
NODE_TYPES = (GROUP, TAG, FIELD, EVENT, SEGMENT, REACHABILITY, ALL, NONE)
CONDITION_TYPES = (TAG, FIELD, EVENT, SEGMENT, REACHABILITY, ALL, NONE)

# Value types beyond the tag types: the WhatsApp consent state of a subscriber.
CONSENT = "consent"
CONSENT_VALUES = ("opted_in", "opted_out", "unknown")

OP_LABELS: dict[str, str] = {
    "eq": _("equals"),
    "noteq": _("does not equal"),
    "gt": _("greater than"),
    "gte": _("at least"),
    "lt": _("less than"),
    "lte": _("at most"),
    "between": _("between"),
    "in": _("is one of"),
    "notin": _("is none of"),
    "contains": _("contains"),
    "startswith": _("starts with"),
    "any": _("is set"),
    "none": _("is not set"),
    "before": _("before"),
    "after": _("after"),
    "within": _("within the last N days"),
}
# Operators that take no value, a list of two, a list, a number of days.
NO_VALUE_OPS = frozenset({"any", "none"})
RANGE_OPS = frozenset({"between"})
LIST_OPS = frozenset({"in", "notin"})
DAYS_OPS = frozenset({"within"})
ALL_OPS = tuple(OP_LABELS)
# Texts compare without case and accents ("Asian" = "asian", "Müller" = "muller"; textfold.py)
# unless the condition says ``"match_case": true``, written ``eq_cs`` (``in_cs``, ...) in text.
TEXT_OPS = frozenset({"eq", "noteq", "in", "notin", "contains", "startswith"})
MATCH_CASE = "match_case"
CASE_SUFFIX = "_cs"

_NUMBER_OPS = ("eq", "noteq", "gt", "gte", "lt", "lte", "between", "in", "notin", "any", "none")
_DATE_OPS = ("eq", "noteq", "before", "after", "within", "gt", "gte", "lt", "lte", "between", "any", "none")
OPS_BY_TYPE: dict[str, tuple[str, ...]] = {
    TagType.STRING: ("eq", "noteq", "in", "notin", "contains", "startswith", "any", "none"),
    TagType.INTEGER: _NUMBER_OPS,
    TagType.DECIMAL: _NUMBER_OPS,
    TagType.BOOLEAN: ("eq", "noteq", "any", "none"),
    TagType.DATE: _DATE_OPS,
    TagType.DATETIME: _DATE_OPS,
    # A list matches eq/contains when one of its items equals the value.
    TagType.LIST: ("contains", "eq", "noteq", "in", "notin", "any", "none"),
    CONSENT: ("eq", "noteq", "in", "notin"),
}
# Operator labels that read better for a list tag.
LIST_OP_LABELS = {"contains": _("contains"), "eq": _("contains"), "noteq": _("does not contain"),
                  "in": _("contains one of"), "notin": _("contains none of")}  # fmt: skip

# Built-in subscriber fields usable in F(...) conditions: name -> (column, value type, label).
FIELDS: dict[str, tuple[str, str, str]] = {
    "language": ("language", TagType.STRING, _("Language")),
    "country": ("country", TagType.STRING, _("Country")),
    "time_zone": ("time_zone", TagType.STRING, _("Time zone")),
    "name": ("name", TagType.STRING, _("Name")),
    "email": ("email", TagType.STRING, _("Email")),
    "phone": ("phone", TagType.STRING, _("Phone")),
    "external_id": ("external_id", TagType.STRING, _("External id")),
    "created_at": ("created_at", TagType.DATETIME, _("First seen")),
    "last_inbound_at": ("last_inbound_at", TagType.DATETIME, _("Last inbound message")),
    "whatsapp_consent": ("whatsapp_consent", CONSENT, _("WhatsApp consent")),
    "email_consent": ("email_consent", CONSENT, _("Email consent")),
    "push_consent": ("push_consent", CONSENT, _("Push consent")),
}

REACHABILITY_CHANNELS: dict[str, str] = {
    "whatsapp": _("WhatsApp opted in"),
    "window": _("inside the 24-hour service window"),
    "email": _("reachable by email (an address that did not bounce, not opted out)"),
    "push": _("reachable by push (an active device, not opted out)"),
}

COUNT_OPS: dict[str, str] = {
    "gte": _("at least"),
    "gt": _("more than"),
    "eq": _("exactly"),
    "noteq": _("not exactly"),
    "lte": _("at most"),
    "lt": _("fewer than"),
}
WINDOW_KINDS = ("days", "hours", "since", "between")

MAX_DEPTH = 12  # nesting of groups
MAX_NODES = 300  # conditions and groups in one rule
MAX_SEGMENT_DEPTH = 5  # segment includes segment includes ...
MAX_LIST_VALUES = 1000
MAX_COUNT = 1_000_000
MAX_DAYS = 36_500
MAX_HOURS = 24 * 36_500


def group(op: str, children: list[dict[str, Any]], *, negate: bool = False) -> dict[str, Any]:
    return {"type": GROUP, "op": op, "negate": negate, "children": children}


def is_group(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == GROUP


def negate(node: dict[str, Any]) -> dict[str, Any]:
    """NOT node, without stacking: !!A is A, and a group just flips its flag."""
    if is_group(node):
        if node.get("negate"):
            plain = {**node, "negate": False}
            children = plain["children"]
            return children[0] if len(children) == 1 else plain
        return {**node, "negate": True}
    return group("and", [node], negate=True)


def combine(op: str, left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """left AND/OR right, flattening plain groups of the same operator (A * B * C is one group)."""
    children: list[dict[str, Any]] = []
    for side in (left, right):
        if is_group(side) and side["op"] == op and not side.get("negate"):
            children.extend(side["children"])
        else:
            children.append(side)
    return group(op, children)


def walk(node: dict[str, Any]):
    """Every node of a tree, depth first."""
    yield node
    if is_group(node):
        for child in node.get("children") or []:
            if isinstance(child, dict):
                yield from walk(child)


def segment_refs(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The segment-membership nodes of a tree."""
    return [n for n in walk(node) if isinstance(n, dict) and n.get("type") == SEGMENT]


def ops_for(type_: str) -> tuple[str, ...]:
    return OPS_BY_TYPE[type_]


def op_choices(type_: str) -> list[tuple[str, str]]:
    labels = LIST_OP_LABELS if type_ == TagType.LIST else {}
    return [(op, labels.get(op, OP_LABELS[op])) for op in OPS_BY_TYPE[type_]]
