"""What the send path may decide about one outbox row instead of sending it now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Skip:
    """Do not send, ever: the row becomes ``skipped`` with this reason (plain words, shown to marketers)."""

    reason: str


@dataclass(frozen=True)
class Hold:
    """Not now: the row goes back to ``queued`` with ``send_after = until`` (quiet hours, a retry)."""

    until: datetime
    reason: str
