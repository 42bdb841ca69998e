"""Attribute conditions of entries, wait-for-event branches and goals (ADR 0007).

A condition is ``{"attribute", "op", "value"}``; a list of them holds when every one holds
(an empty list always holds). Ops: ``eq``, ``ne`` (exact; numbers numerically), ``contains``,
``starts_with``, ``keyword`` (folded text, ``keywords.fold``: case, accents and surrounding
punctuation do not count; a keyword value may be a list: any of them), ``regex`` (searched in the
folded text), ``gt``/``gte``/``lt``/``lte`` (numbers numerically, two texts such as ISO dates as
text) and ``exists`` (value true or false). A missing attribute never matches, except
``exists: false``: "missing" is never silently treated as "" or 0.

Regular expressions: marketers type them, and Python's ``re`` backtracks: ``(a+)+$`` on 30
characters takes minutes and a worker thread cannot be interrupted. The ``regex`` package (which
has a ``timeout=``) is not installed, so patterns run on a small engine of our own instead: the
pattern is parsed by Python's own parser (so the syntax is Python's), refused when it uses what is
not regular (back-references, look-around, conditionals, atomic groups, possessive repeats), and
compiled to a Thompson NFA that is simulated one character at a time: the cost is linear in the
text (at most ``MAX_STATES`` states per character), never exponential. On top of that the search
checks a clock and gives up after ``REGEX_TIME_LIMIT`` (50 ms): a condition that ran out of time
does not match and is logged. The folded text is searched, and literals of the pattern are folded
the same way, so ``PROMO`` and ``promo`` are one pattern. Only "does it match" is answered (no
groups), so greedy and lazy repeats are the same.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from re import _constants as sre  # the parser's opcodes (Python 3.11+)
from re import _parser as sre_parse
from typing import Any

from django.utils.translation import gettext as _

from subscribers import textfold

from .keywords import fold

logger = logging.getLogger(__name__)

OPS = ("eq", "ne", "contains", "starts_with", "keyword", "regex", "gt", "gte", "lt", "lte", "exists")
TEXT_OPS = ("contains", "starts_with", "keyword", "regex")
MAX_CONDITIONS = 20
MAX_PATTERN = 500  # characters of a regular expression
MAX_STATES = 2_000  # NFA states of one compiled pattern ({n,m} repeats are unrolled)
MAX_TEXT = 4_096  # characters searched (WhatsApp's longest text message)
REGEX_TIME_LIMIT = 0.05  # seconds per search
_CLOCK_EVERY = 32  # characters between two looks at the clock


class RegexRefused(ValueError):
    """A pattern that does not compile, or uses what the linear-time engine cannot run."""


class RegexTimeout(Exception):
    pass


# --- matching ------------------------------------------------------------------------------


def matches(conditions: Sequence[Mapping[str, Any]] | None, attributes: Mapping[str, Any] | None) -> bool:
    """True when every condition holds for ``attributes`` (an event's, or any flat mapping).

    Never raises on a malformed condition: it simply does not hold (``check`` reports it when
    the journey is saved).
    """
    attributes = attributes if isinstance(attributes, Mapping) else {}
    for condition in conditions or []:
        if not isinstance(condition, Mapping) or not _holds(condition, attributes):
            return False
    return True


_MISSING = object()


def _lookup(attributes: Mapping[str, Any], name: Any) -> Any:
    if not isinstance(name, str):
        return _MISSING
    if name in attributes:
        return attributes[name]
    # "order.cuisine" reads a nested object where an attribute is one.
    value: Any = attributes
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _holds(condition: Mapping[str, Any], attributes: Mapping[str, Any]) -> bool:
    op = condition.get("op")
    value = condition.get("value")
    actual = _lookup(attributes, condition.get("attribute"))
    if op == "exists":
        present = actual is not _MISSING and actual is not None
        return present if value is None else present == bool(value)
    if actual is _MISSING or actual is None:
        return False
    match op:
        case "eq":
            return _equal(actual, value)
        case "ne":
            return not _equal(actual, value)
        case "keyword":
            folded = fold(_text(actual))
            return any(folded == fold(v) for v in _values(value) if fold(v))
        case "contains":
            folded = fold(_text(actual))
            return any(fold(v) in folded for v in _values(value) if fold(v))
        case "starts_with":
            folded = fold(_text(actual))
            return any(folded.startswith(fold(v)) for v in _values(value) if fold(v))
        case "regex":
            return isinstance(value, str) and regex_search(value, fold(_text(actual)))
        case "gt" | "gte" | "lt" | "lte":
            return _compare(op, actual, value)
    return False


def _values(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def _number(value: Any) -> Decimal | None:
    """A number, or a text that is one ("42", "3.5"); booleans are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
    if isinstance(value, str) and _NUMBER.match(value):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def _equal(actual: Any, value: Any) -> bool:
    if isinstance(actual, bool) or isinstance(value, bool):
        return isinstance(actual, bool) and isinstance(value, bool) and actual == value
    a, b = _number(actual), _number(value)
    if a is not None and b is not None and not (isinstance(actual, str) and isinstance(value, str)):
        return a == b
    if isinstance(value, list):
        return any(_equal(actual, v) for v in value)
    return _text(actual) == _text(value) if value is not None else False


def _compare(op: str, actual: Any, value: Any) -> bool:
    a, b = _number(actual), _number(value)
    if a is None or b is None:
        if isinstance(actual, str) and isinstance(value, str) and a is None and b is None:
            a, b = actual, value  # ISO dates and times compare as text
        else:
            return False
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


# --- checking ------------------------------------------------------------------------------


def check(conditions: Any) -> list[str]:
    """The problems of a condition list, in plain words ("condition 2: ..."); [] when it is fine."""
    if conditions in (None, []):
        return []
    if not isinstance(conditions, list):
        return ["Conditions are a list of {attribute, op, value}."]
    if len(conditions) > MAX_CONDITIONS:
        return [f"At most {MAX_CONDITIONS} conditions."]
    problems: list[str] = []
    for index, condition in enumerate(conditions, start=1):
        where = f"condition {index}"
        if not isinstance(condition, dict):
            problems.append(f"{where}: a condition is an object with attribute, op and value.")
            continue
        attribute, op, value = condition.get("attribute"), condition.get("op"), condition.get("value")
        if not isinstance(attribute, str) or not attribute.strip() or len(attribute) > 64:
            problems.append(f"{where}: name the attribute (1-64 characters).")
        if op not in OPS:
            problems.append(f"{where}: op {op!r} is not one of {', '.join(OPS)}.")
            continue
        problem = _value_problem(op, value)
        if problem:
            problems.append(f"{where}: {problem}")
    return problems


def _value_problem(op: str, value: Any) -> str:
    if op == "exists":
        return "" if value is None or isinstance(value, bool) else "exists takes true or false."
    if op in ("keyword", "contains", "starts_with"):
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) for v in values):
            return _("%(op)s takes a text or a list of texts.") % {"op": op}
        if any(len(v) > 200 for v in values):
            return _("%(op)s: at most 200 characters per text.") % {"op": op}
        if not all(fold(v) for v in values):
            return _(
                "%(op)s: a text of only spaces or punctuation matches nothing (it folds to nothing)."
            ) % {"op": op}
        return ""
    if op == "regex":
        if not isinstance(value, str) or not value:
            return _("regex takes a regular expression.")
        try:
            _program(value)
        except RegexRefused as err:
            return str(err)
        return ""
    if op in ("gt", "gte", "lt", "lte"):
        if _number(value) is None and not isinstance(value, str):
            return _("%(op)s takes a number (or a date as text).") % {"op": op}
        return ""
    if value is None or isinstance(value, dict):
        return _("%(op)s takes a text, a number, true/false or a list of them.") % {"op": op}
    return ""


# --- the linear-time regular expression engine -----------------------------------------------

_CHAR, _SPLIT, _ASSERT, _MATCH = 0, 1, 2, 3


class _Program:
    """A Thompson NFA: ``kinds[i]`` with ``args[i]`` (a predicate, an assertion) and ``outs[i]``."""

    __slots__ = ("args", "kinds", "outs", "start")

    def __init__(self) -> None:
        self.kinds: list[int] = []
        self.args: list[Any] = []
        self.outs: list[list[int]] = []
        self.start = 0

    def add(self, kind: int, arg: Any, outs: list[int]) -> int:
        if len(self.kinds) >= MAX_STATES:
            raise RegexRefused(
                "The regular expression is too large (repeats such as {1,500} are unrolled); simplify it."
            )
        self.kinds.append(kind)
        self.args.append(arg)
        self.outs.append(outs)
        return len(self.kinds) - 1


def _fold_char(code: int) -> str:
    """A pattern literal folded as ``keywords.fold`` folds text (accents off, case folded)."""
    ch = chr(code)
    plain = textfold.fold(ch)
    return plain if len(plain) == 1 else ch.lower()


_CATEGORIES: dict[Any, Callable[[str], bool]] = {
    sre.CATEGORY_DIGIT: str.isdecimal,
    sre.CATEGORY_NOT_DIGIT: lambda c: not c.isdecimal(),
    sre.CATEGORY_SPACE: str.isspace,
    sre.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
    sre.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    sre.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
    sre.CATEGORY_LINEBREAK: lambda c: c == "\n",
    sre.CATEGORY_NOT_LINEBREAK: lambda c: c != "\n",
}


def _in_range(ch: str, lo: int, hi: int) -> bool:
    # The text is lower case: [A-Z] must still find it.
    return lo <= ord(ch) <= hi or any(lo <= ord(u) <= hi for u in ch.upper() if len(ch.upper()) == 1)


def _class_predicate(items: list[tuple[Any, Any]]) -> Callable[[str], bool]:
    negate = bool(items) and items[0][0] is sre.NEGATE
    tests: list[Callable[[str], bool]] = []
    literals: set[str] = set()
    for op, av in items[1:] if negate else items:
        if op is sre.LITERAL:
            literals.add(_fold_char(av))
            literals.add(chr(av))
        elif op is sre.RANGE:
            lo, hi = av
            tests.append(lambda c, lo=lo, hi=hi: _in_range(c, lo, hi))
        elif op is sre.CATEGORY and av in _CATEGORIES:
            tests.append(_CATEGORIES[av])
        else:
            raise RegexRefused("The regular expression uses a character class this engine does not know.")

    def test(ch: str) -> bool:
        found = ch in literals or any(t(ch) for t in tests)
        return found != negate

    return test


_REFUSED = {
    sre.GROUPREF: "back-references (\\1)",
    sre.GROUPREF_EXISTS: "conditional groups",
    sre.ASSERT: "look-ahead or look-behind",
    sre.ASSERT_NOT: "negative look-ahead or look-behind",
    sre.ATOMIC_GROUP: "atomic groups",
    sre.POSSESSIVE_REPEAT: "possessive repeats",
}


def _emit(program: _Program, items: Any, nxt: int) -> int:
    """Compile a parsed sequence backwards: every element gets the state that follows it."""
    for op, av in reversed(list(items)):
        nxt = _emit_one(program, op, av, nxt)
    return nxt


def _emit_one(program: _Program, op: Any, av: Any, nxt: int) -> int:
    if op in _REFUSED:
        raise RegexRefused(
            f"Regular expressions here may not use {_REFUSED[op]}: they cannot be matched in bounded time."
        )
    if op is sre.LITERAL:
        want = _fold_char(av)
        return program.add(_CHAR, lambda c, want=want: c == want, [nxt])
    if op is sre.NOT_LITERAL:
        want = _fold_char(av)
        return program.add(_CHAR, lambda c, want=want: c != want, [nxt])
    if op is sre.ANY:
        return program.add(_CHAR, lambda c: c != "\n", [nxt])
    if op is sre.IN:
        return program.add(_CHAR, _class_predicate(list(av)), [nxt])
    if op is sre.AT:
        return program.add(_ASSERT, av, [nxt])
    if op is sre.SUBPATTERN:
        return _emit(program, av[3], nxt)
    if op is sre.BRANCH:
        starts = [_emit(program, branch, nxt) for branch in av[1]]
        state = starts[-1]
        for start in reversed(starts[:-1]):
            state = program.add(_SPLIT, None, [start, state])
        return state
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        low, high, body = av
        tail = nxt
        if high is sre.MAXREPEAT:
            loop = program.add(_SPLIT, None, [-1, nxt])
            program.outs[loop][0] = _emit(program, body, loop)
            tail = loop
        else:
            for _ in range(high - low):
                tail = program.add(_SPLIT, None, [_emit(program, body, tail), nxt])
        for _ in range(low):
            tail = _emit(program, body, tail)
        return tail
    raise RegexRefused(f"The regular expression uses {str(op).lower()}, which this engine does not run.")


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> _Program | RegexRefused:
    if len(pattern) > MAX_PATTERN:
        return RegexRefused(f"A regular expression may have at most {MAX_PATTERN} characters.")
    try:
        parsed = sre_parse.parse(pattern, 0)
    except re.error as err:
        return RegexRefused(f"Not a valid regular expression: {err}.")
    except (RecursionError, OverflowError):
        return RegexRefused("The regular expression is nested too deeply.")
    program = _Program()
    try:
        match = program.add(_MATCH, None, [])
        program.start = _emit(program, parsed, match)
    except RegexRefused as err:
        return err
    except RecursionError:
        return RegexRefused("The regular expression is nested too deeply.")
    return program


def _program(pattern: str) -> _Program:
    """The compiled pattern (cached per process), or RegexRefused saying why not."""
    compiled = _compiled(pattern)
    if isinstance(compiled, RegexRefused):
        raise compiled
    return compiled


def _word(text: str, i: int) -> bool:
    return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")


def _assertion(at: Any, text: str, i: int) -> bool:
    n = len(text)
    if at in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING, sre.AT_BEGINNING_LINE):
        return i == 0
    if at in (sre.AT_END, sre.AT_END_LINE):
        return i == n or (i == n - 1 and text[i] == "\n")
    if at is sre.AT_END_STRING:
        return i == n
    if at is sre.AT_BOUNDARY:
        return _word(text, i - 1) != _word(text, i)
    if at is sre.AT_NON_BOUNDARY:
        return _word(text, i - 1) == _word(text, i)
    return False


def _closure(program: _Program, state: int, text: str, i: int, into: list[int], seen: set[int]) -> None:
    stack = [state]
    kinds, outs, args = program.kinds, program.outs, program.args
    while stack:
        s = stack.pop()
        if s in seen:
            continue
        seen.add(s)
        kind = kinds[s]
        if kind == _SPLIT:
            stack.extend(reversed(outs[s]))
        elif kind == _ASSERT:
            if _assertion(args[s], text, i):
                stack.append(outs[s][0])
        else:
            into.append(s)


def _search(program: _Program, text: str, deadline: float) -> bool:
    """Is there a match anywhere in ``text``: every position is a start, states run in lockstep."""
    kinds, outs, args = program.kinds, program.outs, program.args
    current: list[int] = []
    seen: set[int] = set()
    for i in range(len(text) + 1):
        _closure(program, program.start, text, i, current, seen)
        if any(kinds[s] == _MATCH for s in current):
            return True
        if i == len(text):
            return False
        if i % _CLOCK_EVERY == 0 and time.perf_counter() > deadline:
            raise RegexTimeout
        ch = text[i]
        following: list[int] = []
        following_seen: set[int] = set()
        for s in current:
            if kinds[s] == _CHAR and args[s](ch):
                _closure(program, outs[s][0], text, i + 1, following, following_seen)
        current, seen = following, following_seen
    return False


def regex_search(pattern: str, text: str, *, time_limit: float = REGEX_TIME_LIMIT) -> bool:
    """Does ``pattern`` occur in ``text`` (already folded)?

    False for a refused pattern, and when the search ran out of ``time_limit`` seconds.
    """
    try:
        program = _program(pattern)
    except RegexRefused:
        return False
    try:
        return _search(program, text[:MAX_TEXT], time.perf_counter() + time_limit)
    except RegexTimeout:
        logger.warning(
            "journey condition: regex search gave up after %.0f ms (%d characters)",
            time_limit * 1000,
            len(text),
        )
        return False
