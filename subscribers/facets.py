"""Event facets: the short form of an event's attributes that the segment index carries.

Its own module (no model imports) so that the Event model derives facets itself, on save and
in bulk_create, and no write path can forget them.

Texts in facets are folded (``textfold.fold``: no case, no accents): segments compare
attributes folded by default ("Asian" finds "asian"), from the index, and compare the
original ``attributes`` only for a case-sensitive condition.
"""

from __future__ import annotations

from typing import Any

from .textfold import fold

# Texts up to this length are kept verbatim in Event.facets; the facets of one event may take
# at most MAX_FACETS_BYTES as compact JSON (jsonb is about that size), which keeps a segment
# index entry safely below PostgreSQL's btree limit of 2,704 bytes.
FACET_TEXT = 64
MAX_FACETS_BYTES = 1800


def facets_of(attributes: dict[str, Any]) -> dict[str, Any]:
    """Every key, with its value as it is but texts folded, except texts longer than FACET_TEXT
    characters, which become ``true``: present, and equal to no text.

    An index entry must stay below about 2.7 kB in PostgreSQL, and an inbound WhatsApp message
    alone may carry 8 kB of text; segments compare those long texts (``contains``, or equality
    with a long value) in ``attributes``.
    """
    return {key: _facet(value) for key, value in (attributes or {}).items()}


def _facet(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return True if len(value) > FACET_TEXT else fold(value)
