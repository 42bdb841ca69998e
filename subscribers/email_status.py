"""Whether a subscriber's email address can take mail: the one write path (ADR 0008).

STAND-IN (foundation): slice "mail-tracking" implements it (hard bounces and complaints mark the
address undeliverable; an operator can mark it deliverable again; a changed address is cleared by
the profile rule in ``subscribers/profile.py``).
"""

from __future__ import annotations

from datetime import datetime

from .models import Subscriber


def mark_undeliverable(subscriber: Subscriber, *, reason: str, at: datetime | None = None) -> bool:
    """Set ``email_undeliverable_at``/``_reason`` unless already set; True when it changed."""
    raise NotImplementedError


def mark_deliverable(subscriber: Subscriber) -> bool:
    """Clear the mark (an operator's decision, audited by the caller); True when it changed."""
    raise NotImplementedError
