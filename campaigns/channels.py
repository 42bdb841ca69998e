"""Email and push in the one outbox: the transport contract (ADR 0008).

A ``Message`` row of channel ``email`` or ``push`` carries its rendered ``content`` (Liquid done when
the row was written by ``mail.services.send_email`` / ``push.services.send_push``). The channel
sender (``campaigns.channel_sending``) claims due rows of a channel set-based, asks
``sendpolicy.decide`` (consent of that channel, frequency cap, quiet hours: the same rules as
WhatsApp), hands the sendable rows of one project to the channel's transport, and writes the
results back in one statement. A transport knows only its provider: it never touches the
database rows' state (the sender does), so a channel is one module that registers a transport.

Transports register themselves from their app's ``ready()``: ``register(EmailTransport())``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from controlpanel.models import Project

    from .models import Message


@dataclass(frozen=True)
class Delivery:
    """What the provider answered for one message.

    ``ok``: accepted (SMTP 250, the ESP's API, FCM's message name) -> ``sent``.
    Not ok and ``retry``: transient (SMTP 4xx, connection refused, FCM 429/500/503) -> queued
    again after ``retry_after`` seconds (the sender's backoff when None), failed after the
    sender's attempt limit. Not ok, no retry: permanent -> ``failed`` with ``error_code`` (the
    provider's, as text: "550", "UNREGISTERED") and ``error`` in plain words.
    ``unknown``: the request may have reached the provider (a timeout after sending) -> ``unknown``,
    never resent blindly.
    """

    ok: bool
    provider_message_id: str = ""
    error_code: str = ""
    error: str = ""
    retry: bool = False
    retry_after: float | None = None
    unknown: bool = False


class Transport(Protocol):
    channel: str  # "email" or "push" (campaigns.models.Channel)

    def send(self, project: Project, messages: Sequence[Message]) -> list[Delivery]:
        """Send ``messages`` (one project, claimed, policy-checked, ``subscriber`` loaded) and
        answer one Delivery per message, in order. Never raises for a per-message problem; an
        exception means "nothing of this batch was posted" and the sender queues it again."""
        ...


_transports: dict[str, Transport] = {}


def register(transport: Transport) -> Transport:
    _transports[transport.channel] = transport
    return transport


def transport_for(channel: str) -> Transport | None:
    return _transports.get(channel)


def channels() -> list[str]:
    return list(_transports)
