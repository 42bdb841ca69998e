"""Folding text for matching the way marketers expect: "Asian" = "asian", "Müller" ~ "muller".

One place for the rule, used by every writer of a folded copy and by every reader comparing
against one:

- ``fold(text)``: NFKD, combining marks dropped, ``casefold`` ("ß" -> "ss", "É" -> "e",
  "ﬁ" -> "fi"). Segments compare tag values (``TagValue.value_folded``) and event attributes
  (``Event.facets``) folded by default; both are written folded at write time, in Python, so
  that SQLite and PostgreSQL hold (and so compare) the very same strings, and the indexes on
  them keep serving the lookups. Writers: ``TagValue.save`` / ``bulk_create`` and the Event
  model derive theirs; a raw COPY must call ``fold_tag_text`` for its ``value_folded`` column.
- ``search_key(text)``: ``fold`` plus the German transliteration read backwards (ue -> u,
  oe -> o, ae -> a), so that "mueller", "muller" and "Müller" are one key. Only for search,
  where more recall is fine.

Subscriber columns (name, email, ...) have no folded copy: their writers are many and the
database computes it instead, with the SQL functions ``wcp_fold`` / ``wcp_search_key``
(PostgreSQL: ``migrations/0009``; SQLite: ``register_sqlite_functions``, which calls the
Python functions here). The SQL version (``lower`` of NFKD without the combining diacritical
marks, "ß" -> "ss") equals ``fold`` for Latin text; other scripts (a Greek final sigma, Hebrew
points) may fold differently in a built-in field condition or a search on PostgreSQL. Tag and
attribute conditions never depend on it.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from django.db.models import Func, TextField

_GERMAN = (("ae", "a"), ("oe", "o"), ("ue", "u"))


@lru_cache(maxsize=65536)  # tag values repeat a lot (cities, plans): fold each once
def fold(text: str) -> str:
    """``text`` without case and accents; see the module docstring."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def fold_tag_text(value: str | None) -> str | None:
    """The ``TagValue.value_folded`` of a ``value_text`` (NULL stays NULL)."""
    return None if value is None else fold(value)


def search_key(text: str) -> str:
    key = fold(text)
    for spelled, plain in _GERMAN:
        key = key.replace(spelled, plain)
    return key


class Fold(Func):
    """``wcp_fold(expression)`` in SQL: the database's ``fold`` of a column."""

    function = "wcp_fold"
    output_field = TextField()


class SearchKey(Func):
    """``wcp_search_key(expression)``: the database's ``search_key`` (name search, trigram index)."""

    function = "wcp_search_key"
    output_field = TextField()


def _null_safe(function):
    return lambda value: None if value is None else function(str(value))


def register_sqlite_functions(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: SQLite gets the SQL functions from this module."""
    if connection.vendor != "sqlite":
        return
    raw = connection.connection
    raw.create_function("wcp_fold", 1, _null_safe(fold), deterministic=True)
    raw.create_function("wcp_search_key", 1, _null_safe(search_key), deterministic=True)
