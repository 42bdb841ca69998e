"""Segments: a rule tree over tags, fields, events, other segments and reachability.

Public functions (other apps call these names):

- ``parse_rule(text) -> tree``: the text form into a tree; raises ``RuleSyntaxError``
  (``.position`` 0-based, ``.message``).
- ``rule_to_text(tree) -> str``: the text form of a tree.
- ``validate_rule(project, tree) -> tree``: the canonical tree; raises ``InvalidInput``.
- ``audience(project, tree) -> QuerySet[Subscriber]`` and ``count(project, tree) -> int``.
- ``sample(project, tree, limit=N)``: the newest matches, and how many of all the matches are
  opted in to WhatsApp with a number.
- ``save_segment``, ``refresh_count``, ``delete_segment``: writes on ``Segment``.

See ``tree.py`` for the node kinds, ``text.py`` for the grammar, ``compiler.py`` for the SQL shapes.
"""

from .compiler import REACHABLE_ON_WHATSAPP, audience, count, sample
from .service import count_unsaved, delete_segment, refresh_count, save_segment, segments_including
from .text import RuleSyntaxError, parse_rule, rule_to_text
from .validate import validate_rule

__all__ = [
    "REACHABLE_ON_WHATSAPP",
    "RuleSyntaxError",
    "audience",
    "count",
    "count_unsaved",
    "delete_segment",
    "parse_rule",
    "refresh_count",
    "rule_to_text",
    "sample",
    "save_segment",
    "segments_including",
    "validate_rule",
]
