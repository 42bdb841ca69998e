"""Frozen versions of a journey's definition, parsed once per process."""

from __future__ import annotations

import uuid
from functools import lru_cache

from .definition import Definition, parse
from .models import Journey, JourneyVersion


@lru_cache(maxsize=512)
def _parsed(journey_public_id: uuid.UUID, number: int) -> Definition:
    # Keyed by the public id: integer ids can come back (SQLite after a rollback), uuids do not.
    version = JourneyVersion.objects.get(journey__public_id=journey_public_id, number=number)
    return parse(version.definition)


def definition_of(journey: Journey, number: int) -> Definition:
    """The parsed definition of ``journey``'s version ``number`` (versions never change)."""
    return _parsed(journey.public_id, number)
