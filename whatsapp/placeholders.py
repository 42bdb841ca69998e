"""The template placeholder grammar, in one place: what a parameter in a template text looks like.

Meta writes parameters in double braces: numbered ``{{1}}``, ``{{2}}`` (parameter_format
POSITIONAL) or named ``{{first_name}}`` (NAMED: lowercase letters, digits and underscores, not
starting with a digit). Whitespace inside the braces (``{{ 1 }}``) names the same parameter: the
authoring linter asks people to remove it, but a template that has it is counted, filled and
previewed the same way everywhere, so a send never carries a parameter the text does not show.

Everything that finds, counts or fills parameters uses this module: the linter, the send policy,
the outbox's rendering, the conversation composer, the template pages and the simulator. The
browser gets the same patterns through ``browser_grammar()`` (see the ``placeholder_grammar``
template tag), never a copy written in JavaScript.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

POSITIONAL, NAMED = "POSITIONAL", "NAMED"

# Anything between a pair of double braces; whether it is a parameter is decided on the name.
# No braces inside, so "{{ {{1}} }}" finds "{{1}}" and leaves unmatched braces for the linter.
TOKEN = re.compile(r"\{\{([^{}]*)\}\}")
POSITIONAL_NAME = re.compile(r"[0-9]+")
NAMED_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class Token:
    raw: str  # what stood between the braces
    name: str  # stripped
    kind: str  # POSITIONAL, NAMED or "" (not a parameter Meta accepts)
    start: int
    end: int

    @property
    def text(self) -> str:
        return "{{" + self.raw + "}}"


def kind_of(name: str) -> str:
    if POSITIONAL_NAME.fullmatch(name):
        return POSITIONAL
    if NAMED_NAME.fullmatch(name):
        return NAMED
    return ""


def tokens(text: str) -> list[Token]:
    """Every ``{{...}}`` of ``text`` in order, parameters and non-parameters alike."""
    found = []
    for match in TOKEN.finditer(text or ""):
        raw = match.group(1)
        name = raw.strip()
        found.append(Token(raw=raw, name=name, kind=kind_of(name), start=match.start(), end=match.end()))
    return found


def parameters(text: str, parameter_format: str | None = None) -> list[str]:
    """The parameter names of ``text``, each once.

    Without ``parameter_format``: both kinds, in order of first appearance (what an author wrote).
    With it: only parameters of that kind, in the order a send passes their values: numbered ones
    by number (Meta matches positional values by array position, so "{{2}} … {{1}}" takes the
    value of {{1}} first), named ones as they appear.
    """
    names = list(dict.fromkeys(t.name for t in tokens(text) if t.kind and parameter_format in (None, t.kind)))
    return sorted(names, key=int) if parameter_format == POSITIONAL else names


def has_parameter(text: str, parameter_format: str | None = None) -> bool:
    return bool(parameters(text, parameter_format))


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each parameter that has a value replaced by it; the others stay as written."""

    def replace(match: re.Match) -> str:
        name = match.group(1).strip()
        return values[name] if kind_of(name) and name in values else match.group(0)

    return TOKEN.sub(replace, text or "")


def link_prefix(url: str) -> str:
    """A link's fixed part, before its parameter: Meta's sample of a link button is the whole
    address, a send passes only what replaces the parameter."""
    found = tokens(url)
    return url[: found[0].start] if found else url


def browser_grammar() -> dict[str, str]:
    """The same patterns for JavaScript (``new RegExp(source, "g")``): the sources are written in
    the subset of regular expressions that Python and JavaScript read alike."""
    return {
        "token": TOKEN.pattern,
        "name": f"^(?:{POSITIONAL_NAME.pattern}|{NAMED_NAME.pattern})$",
    }
