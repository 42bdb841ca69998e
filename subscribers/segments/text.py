"""The text form of a rule, in the spirit of Pushwoosh's segmentation language.

Grammar (whitespace is free between tokens)::

    expr      := term (("+" | "\\") term)*          OR, AND NOT: left to right
    term      := unary ("*" unary)*                 AND binds tighter than + and \\
    unary     := "!" unary | primary
    primary   := "(" expr ")" | condition | "ALL" | "NONE"
    condition := T("<tag>", op[, value])
               | F("<field>", op[, value])
               | E("<event>", count-op, N[, window]("," "<attribute>" op [value])*)
    op        := eq | noteq | ... | startswith, and for texts eq_cs, in_cs, ...: match case
               | S("<segment name>")
               | R(whatsapp | window | email | push)
    window    := <N>d | <N>h | since "<date>" | between "<date>" and "<date>"
    value     := "string" | number | true | false | [value, ...]

``parse_rule`` is a hand-written recursive-descent parser: every error carries the 0-based
position where it was noticed. ``rule_to_text`` writes a tree back; text -> tree -> text -> tree
is stable (the parser flattens ``A * (B * C)`` into one group and ``A \\ B`` into ``A * !B``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext as _

from . import tree as t


class RuleSyntaxError(ValueError):
    """The text is not a rule. ``position`` is 0-based; ``message`` says what and where."""

    def __init__(self, reason: str, position: int, found: Token | None = None):
        self.reason = reason
        self.position = position
        self.message = f"{reason} at position {position}"
        if found is not None:
            self.message += f", found {_describe(found)}"
        super().__init__(self.message)


@dataclass(frozen=True)
class Token:
    kind: str  # ( ) [ ] , * + \ ! string number duration ident end
    value: Any
    pos: int
    text: str


# ASCII digits only: str.isdigit() also accepts "¹" or "٣", which int() refuses or reads silently.
_DIGITS = frozenset("0123456789")
MAX_NUMBER_LENGTH = 40
_PUNCT = {"(": "(", ")": ")", "[": "[", "]": "]", ",": ",", "*": "*", "+": "+", "\\": "\\", "!": "!"}
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "/": "/"}


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "the end of the rule"
    return repr(token.text)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in _PUNCT:
            tokens.append(Token(_PUNCT[ch], ch, i, ch))
            i += 1
            continue
        if ch == '"':
            start, i, out = i, i + 1, []
            while True:
                if i >= n:
                    raise RuleSyntaxError(_("unterminated string"), start)
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\x00" or "\ud800" <= c <= "\udfff":
                    # Neither can be stored or compared as text (PostgreSQL refuses NUL, UTF-8 surrogates).
                    raise RuleSyntaxError(
                        _("a text cannot contain the character U+%(value)s") % {"value": f"{ord(c):04X}"}, i
                    )
                if c == "\\":
                    if i + 1 >= n or text[i + 1] not in _ESCAPES:
                        raise RuleSyntaxError(_('unknown escape in string (use \\" or \\\\)'), i)
                    out.append(_ESCAPES[text[i + 1]])
                    i += 2
                    continue
                out.append(c)
                i += 1
            tokens.append(Token("string", "".join(out), start, text[start:i]))
            continue
        if ch in _DIGITS or (ch == "-" and i + 1 < n and text[i + 1] in _DIGITS):
            start = i
            i += 1
            while i < n and text[i] in _DIGITS:
                i += 1
            is_float = False
            if i < n and text[i] == "." and i + 1 < n and text[i + 1] in _DIGITS:
                is_float = True
                i += 1
                while i < n and text[i] in _DIGITS:
                    i += 1
            raw = text[start:i]
            if len(raw) > MAX_NUMBER_LENGTH:
                # int() refuses more than 4,300 digits and float() turns 400 into inf: refuse
                # here, with the position, what no tag or count could hold anyway.
                raise RuleSyntaxError(
                    _("a number may have at most %(max_number_length)s characters")
                    % {"max_number_length": MAX_NUMBER_LENGTH},
                    start,
                )
            # 30d / 12h: a whole number glued to its unit.
            if not is_float and i < n and text[i] in "dh" and not (i + 1 < n and _is_word(text[i + 1])):
                if raw.startswith("-"):
                    raise RuleSyntaxError(_("a time window cannot be negative"), start)
                tokens.append(Token("duration", (int(raw), text[i]), start, text[start : i + 1]))
                i += 1
                continue
            if i < n and _is_word(text[i]):
                raise RuleSyntaxError(_("unexpected %(value)r after the number") % {"value": text[i]}, i)
            value: int | float = float(raw) if is_float else int(raw)
            tokens.append(Token("number", value, start, raw))
            continue
        if _is_word(ch):
            start = i
            while i < n and _is_word(text[i]):
                i += 1
            word = text[start:i]
            tokens.append(Token("ident", word, start, word))
            continue
        raise RuleSyntaxError(_("unexpected character %(ch)r") % {"ch": ch}, i)
    tokens.append(Token("end", None, n, ""))
    return tokens


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


MAX_NESTING = 50


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        if token.kind != "end":
            self.i += 1
        return token

    def expect(self, kind: str, what: str | None = None) -> Token:
        if self.tok.kind != kind:
            raise RuleSyntaxError(
                _("expected %(value)s") % {"value": what or repr(kind)}, self.tok.pos, self.tok
            )
        return self.advance()

    def ident(self) -> str:
        return self.tok.value.lower() if self.tok.kind == "ident" else ""

    # expr := term (("+" | "\") term)*
    def expr(self) -> dict[str, Any]:
        node = self.term()
        while self.tok.kind in ("+", "\\"):
            op = self.advance().kind
            right = self.term()
            node = t.combine("or", node, right) if op == "+" else t.combine("and", node, t.negate(right))
        return node

    def term(self) -> dict[str, Any]:
        node = self.unary()
        while self.tok.kind == "*":
            self.advance()
            node = t.combine("and", node, self.unary())
        return node

    def unary(self) -> dict[str, Any]:
        if self.tok.kind == "!":
            tok = self.advance()
            self._enter(tok)
            node = t.negate(self.unary())
            self.depth -= 1
            return node
        return self.primary()

    def _enter(self, tok: Token) -> None:
        # A recursive-descent parser must not let input decide how deep Python recurses.
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise RuleSyntaxError(
                _("nested more than %(max_nesting)s levels deep") % {"max_nesting": MAX_NESTING}, tok.pos, tok
            )

    def primary(self) -> dict[str, Any]:
        tok = self.tok
        if tok.kind == "(":
            self.advance()
            self._enter(tok)
            node = self.expr()
            self.expect(")", "')'")
            self.depth -= 1
            return node
        if tok.kind == "ident":
            word = tok.value
            upper = word.upper()
            if upper == "ALL":
                self.advance()
                return {"type": t.ALL}
            if upper == "NONE":
                self.advance()
                return {"type": t.NONE}
            handler = {"T": self.tag, "F": self.field, "E": self.event, "S": self.segment, "R": self.reach}
            if upper in handler:
                self.advance()
                self.expect("(", f"'(' after {word}")
                node = handler[upper]()
                self.expect(")", "')'")
                return node
            raise RuleSyntaxError(
                _("unknown condition %(word)r (use T, E, F, S, R, ALL or NONE)") % {"word": word},
                tok.pos,
            )
        raise RuleSyntaxError(
            _("expected a condition like T(...), E(...), F(...), S(...) or R(...)"),
            tok.pos,
            tok,
        )

    def string(self, what: str) -> str:
        return self.expect("string", what).value

    def operator(self, allowed: tuple[str, ...] | dict[str, str], what: str = "an operator") -> str:
        tok = self.tok
        if tok.kind != "ident":
            raise RuleSyntaxError(_("expected %(what)s") % {"what": what}, tok.pos, tok)
        op = tok.value.lower()
        if op not in allowed:
            raise RuleSyntaxError(
                _("unknown operator %(value)r (use one of %(value2)s)")
                % {"value": tok.value, "value2": ", ".join(allowed)},
                tok.pos,
            )
        self.advance()
        return op

    def condition_op(self) -> tuple[str, dict[str, Any]]:
        """An operator of a tag, field or attribute condition: ``eq``, or ``eq_cs`` (match case)."""
        tok = self.tok
        word = tok.value.lower() if tok.kind == "ident" else ""
        base = word.removesuffix(t.CASE_SUFFIX)
        if word != base and base in t.TEXT_OPS:
            self.advance()
            return base, {t.MATCH_CASE: True}
        return self.operator(t.ALL_OPS), {}

    def op_value(self, op: str) -> dict[str, Any]:
        """The value after ``op`` (preceded by a comma for T/F), shaped by the operator."""
        start = self.tok
        value = self.value()
        if op in t.RANGE_OPS and not (isinstance(value, list) and len(value) == 2):
            raise RuleSyntaxError(_("between needs a list of two values like [10, 20]"), start.pos)
        if op in t.LIST_OPS and not isinstance(value, list):
            raise RuleSyntaxError(_('%(op)s needs a list like ["a", "b"]') % {"op": op}, start.pos)
        if op not in t.RANGE_OPS | t.LIST_OPS and isinstance(value, list):
            raise RuleSyntaxError(_("%(op)s needs a single value, not a list") % {"op": op}, start.pos)
        return {"value": value}

    def value(self) -> Any:
        tok = self.tok
        if tok.kind in ("string", "number"):
            self.advance()
            return tok.value
        if tok.kind == "ident" and tok.value.lower() in ("true", "false"):
            self.advance()
            return tok.value.lower() == "true"
        if tok.kind == "[":
            self.advance()
            items: list[Any] = []
            if self.tok.kind != "]":
                while True:
                    if self.tok.kind == "[":
                        raise RuleSyntaxError(_("lists cannot be nested"), self.tok.pos)
                    items.append(self.value())
                    if self.tok.kind != ",":
                        break
                    self.advance()
            self.expect("]", "',' or ']'")
            return items
        raise RuleSyntaxError(_('expected a value ("text", a number, true, false or [a list])'), tok.pos, tok)

    def tag(self) -> dict[str, Any]:
        name = self.string('the tag name in quotes, like "city"')
        self.expect(",", "','")
        op, case = self.condition_op()
        return {"type": t.TAG, "tag": name, "op": op, **case, **self.tail_value(op)}

    def field(self) -> dict[str, Any]:
        tok = self.tok
        name = self.string('the field name in quotes, like "language"')
        if name not in t.FIELDS:
            raise RuleSyntaxError(
                _("unknown field %(name)r (use one of %(value)s)")
                % {"name": name, "value": ", ".join(t.FIELDS)},
                tok.pos,
            )
        self.expect(",", "','")
        op, case = self.condition_op()
        return {"type": t.FIELD, "field": name, "op": op, **case, **self.tail_value(op)}

    def tail_value(self, op: str) -> dict[str, Any]:
        if op in t.NO_VALUE_OPS:
            if self.tok.kind == ",":
                raise RuleSyntaxError(_("%(op)s takes no value") % {"op": op}, self.tok.pos)
            return {}
        self.expect(",", f"',' and a value after {op}")
        return self.op_value(op)

    def event(self) -> dict[str, Any]:
        name = self.string('the event name in quotes, like "OrderPlaced"')
        self.expect(",", "','")
        op = self.operator(t.COUNT_OPS, "a count operator (gte, gt, eq, noteq, lte, lt)")
        self.expect(",", "',' and a count")
        tok = self.tok
        if tok.kind != "number" or not isinstance(tok.value, int) or tok.value < 0:
            raise RuleSyntaxError(_("expected a count (a whole number)"), tok.pos, tok)
        self.advance()
        node: dict[str, Any] = {
            "type": t.EVENT, "event": name, "op": op, "count": tok.value, "window": None, "where": []
        }  # fmt: skip
        if self.tok.kind == "," and self.tokens[self.i + 1].kind in ("duration", "ident"):
            self.advance()
            node["window"] = self.window()
        while self.tok.kind == ",":
            self.advance()
            attribute = self.string('an attribute condition like "cuisine" eq "asian"')
            attr_op, case = self.condition_op()
            cond: dict[str, Any] = {"attribute": attribute, "op": attr_op, **case}
            if attr_op not in t.NO_VALUE_OPS:
                cond.update(self.op_value(attr_op))
            node["where"].append(cond)
        return node

    def window(self) -> dict[str, Any]:
        tok = self.tok
        if tok.kind == "duration":
            self.advance()
            n, unit = tok.value
            if n < 1:
                raise RuleSyntaxError(_("a time window must be at least 1"), tok.pos)
            return {"kind": "days" if unit == "d" else "hours", "n": n}
        word = self.ident()
        if word == "since":
            self.advance()
            return {"kind": "since", "from": self.string('a date in quotes, like "2026-01-01"')}
        if word == "between":
            self.advance()
            start = self.string('a date in quotes, like "2026-01-01"')
            if self.ident() != "and":
                raise RuleSyntaxError(_("expected 'and'"), self.tok.pos, self.tok)
            self.advance()
            return {
                "kind": "between",
                "from": start,
                "to": self.string('a date in quotes, like "2026-01-31"'),
            }
        raise RuleSyntaxError(
            _('expected a time window (30d, 12h, since "2026-01-01" or between "..." and "...")'),
            tok.pos,
            tok,
        )

    def segment(self) -> dict[str, Any]:
        return {"type": t.SEGMENT, "name": self.string('the segment name in quotes, like "VIP"')}

    def reach(self) -> dict[str, Any]:
        tok = self.tok
        channel = self.ident()
        if channel not in t.REACHABILITY_CHANNELS:
            raise RuleSyntaxError(
                _("expected one of %(value)s") % {"value": ", ".join(t.REACHABILITY_CHANNELS)}, tok.pos, tok
            )
        self.advance()
        return {"type": t.REACHABILITY, "channel": channel}


def parse_rule(text: str) -> dict[str, Any]:
    """Parse the text form into a rule tree (not yet checked against a project)."""
    if not isinstance(text, str):
        raise RuleSyntaxError(_("the rule must be text"), 0)
    parser = _Parser(text)
    if parser.tok.kind == "end":
        raise RuleSyntaxError(_("the rule is empty: expected a condition"), 0)
    node = parser.expr()
    if parser.tok.kind != "end":
        tok = parser.tok
        hint = "an operator (*, +, \\) or the end of the rule"
        if tok.kind == ")":
            raise RuleSyntaxError(_("unmatched ')'"), tok.pos)
        raise RuleSyntaxError(_("expected %(hint)s") % {"hint": hint}, tok.pos, tok)
    return node


# ---- tree -> text -----------------------------------------------------------------------------


def rule_to_text(node: dict[str, Any]) -> str:
    """The text form of a rule tree. Raises ValueError for a tree that is not a rule."""
    return _expr(node)


def _expr(node: dict[str, Any], parent: str | None = None) -> str:
    if not isinstance(node, dict):
        raise ValueError(f"not a rule node: {node!r}")
    if not t.is_group(node):
        return _condition(node)
    children = node.get("children") or []
    if not children:
        raise ValueError("an empty group has no text form")
    if node.get("negate"):
        inner = _unwrap({**node, "negate": False})
        if not t.is_group(inner):
            return "!" + _condition(inner)
        if inner.get("negate"):
            return "!" + _expr(inner)
        return "!(" + _expr(inner) + ")"
    if len(children) == 1:
        return _expr(children[0], parent)
    op = node["op"]
    text = (" * " if op == "and" else " + ").join(_expr(c, op) for c in children)
    # An OR inside an AND needs parentheses; everything else binds tightly enough.
    return f"({text})" if op == "or" and parent == "and" else text


def _unwrap(node: dict[str, Any]) -> dict[str, Any]:
    """A plain group of one child means that child."""
    while t.is_group(node) and not node.get("negate") and len(node.get("children") or []) == 1:
        node = node["children"][0]
    return node


def _condition(node: dict[str, Any]) -> str:
    kind = node.get("type")
    if kind == t.TAG:
        return f"T({_string(node['tag'])}, {_op(node)}{_tail(node)})"
    if kind == t.FIELD:
        return f"F({_string(node['field'])}, {_op(node)}{_tail(node)})"
    if kind == t.EVENT:
        parts = [_string(node["event"]), node["op"], str(node["count"])]
        window = node.get("window")
        if window:
            parts.append(_window(window))
        for cond in node.get("where") or []:
            value = "" if cond["op"] in t.NO_VALUE_OPS else " " + _value(cond.get("value"))
            parts.append(f"{_string(cond['attribute'])} {_op(cond)}{value}")
        return f"E({', '.join(parts)})"
    if kind == t.SEGMENT:
        return f"S({_string(node.get('name') or node.get('segment') or '')})"
    if kind == t.REACHABILITY:
        return f"R({node['channel']})"
    if kind == t.ALL:
        return "ALL"
    if kind == t.NONE:
        return "NONE"
    raise ValueError(f"unknown rule node type {kind!r}")


def _op(node: dict[str, Any]) -> str:
    return node["op"] + (t.CASE_SUFFIX if node.get(t.MATCH_CASE) else "")


def _tail(node: dict[str, Any]) -> str:
    return "" if node["op"] in t.NO_VALUE_OPS else ", " + _value(node.get("value"))


def _window(window: dict[str, Any]) -> str:
    match window.get("kind"):
        case "days":
            return f"{window['n']}d"
        case "hours":
            return f"{window['n']}h"
        case "since":
            return f"since {_string(window['from'])}"
        case "between":
            return f"between {_string(window['from'])} and {_string(window['to'])}"
    raise ValueError(f"unknown window {window!r}")


def _string(value: str) -> str:
    return (
        '"'
        + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        + '"'
    )


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} has no text form")
        text = format(Decimal(repr(value)), "f")
        return text if "." in text else text + ".0"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ValueError(f"{json.dumps(value, default=str)} has no text form")
