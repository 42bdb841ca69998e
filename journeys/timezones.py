"""Local times in a subscriber's zone: the next "09:00", silent hours, dates without an offset.

One place for the rules, so wait steps, silent hours and the dry run agree:

- A subscriber's zone is ``Subscriber.time_zone`` when it names an IANA zone, else the journey's
  ``settings.fallback_time_zone`` when the definition sets one, else the project's time zone (as a
  campaign falls back: its own fallback zone, else the project's), else UTC. ``subscriber_zone``
  is that rule; segment entries' firing times (``segment_entry.journey_zone``) use its fallback.
- A local time that does not exist (the hour skipped when clocks go forward) is taken as the same
  wall time shifted by the gap (``02:30`` on a spring-forward night is ``03:30``); an ambiguous one
  (clocks go back) is its first occurrence. Both are what ``zoneinfo`` does with ``fold=0`` once
  normalised through UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from controlpanel.models import Project

    from .definition import Definition

HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return None


def zone(name: str | None, fallback: str | None = "UTC") -> ZoneInfo:
    """The zone called ``name``; ``fallback`` when it is empty or unknown; UTC as the last resort."""
    for candidate in (name, fallback):
        if candidate:
            found = _zone(str(candidate))
            if found is not None:
                return found
    return ZoneInfo("UTC")


def fallback_name(definition: Definition, project: Project) -> str:
    """The zone name for a journey's subscribers without a zone of their own (module docstring).

    Read from the raw settings: the parsed ``Settings.fallback_time_zone`` says "UTC" when the
    journey does not set one, which cannot be told apart from a journey that chose UTC.
    """
    settings = definition.raw.get("settings") if isinstance(definition.raw, dict) else None
    name = settings.get("fallback_time_zone") if isinstance(settings, dict) else None
    return name if isinstance(name, str) and name else project.time_zone


def subscriber_zone(name: str | None, definition: Definition, project: Project) -> ZoneInfo:
    """The zone of a subscriber whose ``time_zone`` is ``name`` in this journey (module docstring)."""
    return zone(name, fallback_name(definition, project))


def is_zone(name: str) -> bool:
    return bool(name) and _zone(name) is not None


def parse_hhmm(text: object) -> time | None:
    """``"09:00"`` -> time(9, 0); None when it is not a 24-hour HH:MM."""
    if not isinstance(text, str):
        return None
    match = HHMM.match(text.strip())
    return time(int(match[1]), int(match[2])) if match else None


def at_local(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The instant (UTC) of ``wall`` on ``day`` in ``tz`` (see the module docstring for DST)."""
    naive = datetime.combine(day, wall)
    # Through UTC and back: a wall time inside a spring-forward gap comes out shifted by the gap.
    return naive.replace(tzinfo=tz).astimezone(UTC)


def next_local_time(after: datetime, wall: time, tz: ZoneInfo) -> datetime:
    """The first instant strictly after ``after`` whose wall clock in ``tz`` reads ``wall``."""
    local_day = after.astimezone(tz).date()
    for offset in range(3):
        candidate = at_local(local_day + timedelta(days=offset), wall, tz)
        if candidate > after:
            return candidate
    raise AssertionError("unreachable: a wall time recurs every day")  # pragma: no cover


def silent_until(now: datetime, start: time, end: time, tz: ZoneInfo) -> datetime | None:
    """When the silent hours ``start``-``end`` (wall times in ``tz``) that contain ``now`` end; None
    when ``now`` is outside them. ``start > end`` spans midnight (21:00-08:00); start == end is no
    silent hours at all."""
    if start == end:
        return None
    local = now.astimezone(tz)
    wall = local.time().replace(tzinfo=None)
    inside = start <= wall < end if start < end else (wall >= start or wall < end)
    if not inside:
        return None
    return next_local_time(now, end, tz)


# A wait's instant comes from outside (an event attribute, a tag); one near year 1 or 9999 cannot
# be moved to UTC or have a 3-year offset added (OverflowError in the engine): it is "not a date".
INSTANT_YEARS = (1000, 9000)  # a birthday in 1950 is a date


def parse_instant(value: object, tz: ZoneInfo) -> datetime | None:
    """An ISO date or date-time as an aware instant: a date is its midnight in ``tz``, a date-time
    without an offset is a wall time in ``tz``. None when it is not one
    (or lies outside the years 1000-9000)."""
    try:
        instant = _parse_instant(value, tz)
    except OverflowError:
        return None
    if instant is not None and not INSTANT_YEARS[0] <= instant.year <= INSTANT_YEARS[1]:
        return None
    return instant


def _parse_instant(value: object, tz: ZoneInfo) -> datetime | None:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        return at_local(value, time(0, 0), tz)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            try:
                return at_local(date.fromisoformat(text), time(0, 0), tz)
            except ValueError:
                return None
        if len(text) == 10:  # "2026-12-24": fromisoformat reads it as midnight, naive
            return at_local(parsed.date(), time(0, 0), tz)
    else:
        return None
    if parsed.tzinfo is None:
        return at_local(parsed.date(), parsed.time(), tz)
    return parsed.astimezone(UTC)
