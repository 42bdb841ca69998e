"""What each claimed outbox row of a campaign sends: its language's template, components, body.

Campaign rows are written at launch without content (one INSERT ... SELECT); they are rendered
here, a batch at a time, when a sender has claimed them. Rows sent one by one (composer, API,
confirmations) carry their components already and are not rendered again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .models import Message
from .outcomes import Skip


@dataclass(frozen=True)
class Rendered:
    template_id: int | None
    template_name: str
    language: str
    components: list[dict[str, Any]]  # Meta's send components, parameters filled in
    body: str  # the body text as the recipient reads it, for the panel


def render_batch(messages: Sequence[Message]) -> dict[int, Rendered | Skip]:
    """Render campaign rows (``campaign_id`` set), by id. Rows without a campaign are not included."""
    raise NotImplementedError("campaign rendering lands with bindings.py (issue 9, slice core)")
