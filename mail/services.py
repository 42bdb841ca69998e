"""Writing email to the outbox: the one path for journeys, the panel's test send and the API.

STAND-IN (foundation): the signatures are the contract of ADR 0008; slice "mail" implements them.
"""

from __future__ import annotations

from typing import Any

from campaigns.models import Message
from controlpanel.models import Project
from controlpanel.services import Actor
from subscribers.models import Subscriber

from .models import EmailTemplate


def render_email(template: EmailTemplate, context: dict[str, Any]) -> dict[str, str]:
    """``{"subject", "preheader", "html", "text"}`` rendered with Liquid (campaigns.bindings' sandbox
    and budget). Raises ``campaigns.services.SendRefused`` naming the field when a part fails to
    render or the subject renders empty."""
    raise NotImplementedError


def send_email(
    *,
    project: Project,
    subscriber: Subscriber,
    template: EmailTemplate,
    actor: Actor,
    context: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    origin: dict[str, str] | None = None,
) -> Message:
    """Queue one email (channel ``email``, ``content`` rendered) for ``subscriber``; the channel
    sender sends it. ``context``: the bindings context (a journey's, with ``event``); None: built
    from the subscriber and ``values``. Refuses (``SendRefused``, nothing written) when: no
    address, the address is undeliverable, opted out of email, marketing without email opt-in, a
    part renders empty. Same ``idempotency_key`` -> the same message, nothing new. ``origin``
    ({"journey": <public id>, "step": <step id>}) is kept in ``content["origin"]``: opens and
    clicks name it in their events."""
    raise NotImplementedError
