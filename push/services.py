"""Writing push to the outbox: the one path for journeys, the panel's test send and the API.

STAND-IN (foundation): the signatures are the contract of ADR 0008; slice "push" implements them.
"""

from __future__ import annotations

from typing import Any

from campaigns.models import Message
from controlpanel.models import Project
from controlpanel.services import Actor
from subscribers.models import Subscriber

from .models import PushTemplate


def render_push(template: PushTemplate, context: dict[str, Any]) -> dict[str, Any]:
    """``{"title", "body", "image", "link", "data"}`` rendered with Liquid (data values too).
    Raises ``campaigns.services.SendRefused`` naming the field when a part fails or the title
    and body both render empty."""
    raise NotImplementedError


def send_push(
    *,
    project: Project,
    subscriber: Subscriber,
    template: PushTemplate,
    actor: Actor,
    context: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    origin: dict[str, str] | None = None,
) -> Message:
    """Queue one push (channel ``push``, ``content`` rendered) for ``subscriber``; the channel
    sender sends it to each of their active devices. Refuses (``SendRefused``, nothing written):
    no active device, opted out of push, a part renders empty. Same ``idempotency_key`` -> the same
    message. ``origin`` ({"journey": <public id>, "step": <step id>}) is kept in
    ``content["origin"]``: opens and clicks name it in their events."""
    raise NotImplementedError
