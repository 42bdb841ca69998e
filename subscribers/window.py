"""The 24-hour customer service window, defined once (Meta: reference section 6.4).

A person's message opens it and every further message restarts it: it lasts 24 hours from the
person's latest message, so it is open while ``last_inbound_at > now - SERVICE_WINDOW``. Inside it
a business may send free-form messages; outside it only templates. The send policy, the
conversation pages, the segment condition "inside the 24-hour service window" and the Cloud API
simulator all read it from here.
"""

from __future__ import annotations

from datetime import datetime, timedelta

SERVICE_WINDOW = timedelta(hours=24)


def closes_at(last_inbound_at: datetime | None) -> datetime | None:
    return last_inbound_at + SERVICE_WINDOW if last_inbound_at is not None else None


def opened_after(now: datetime) -> datetime:
    """The window is open for a person whose latest message is later than this (strictly)."""
    return now - SERVICE_WINDOW


def is_open(last_inbound_at: datetime | None, now: datetime) -> bool:
    return last_inbound_at is not None and last_inbound_at > opened_after(now)
