"""Opens, clicks and unsubscribes of emails we sent: signed URLs and the headers of RFC 8058.

STAND-IN (foundation): the signatures are the contract of ADR 0008; slice "mail-tracking"
implements them. Until then: no pixel, links untouched, no unsubscribe headers.
"""

from __future__ import annotations

from campaigns.models import Message


def instrument(html: str, message: Message) -> str:
    """``html`` with an open pixel and every http(s) link through a signed click redirect that
    records ``EmailClicked``; ``{{ unsubscribe_url }}`` placeholders already rendered by Liquid."""
    return html


def unsubscribe_url(message: Message) -> str:
    """The signed one-click unsubscribe URL of ``message`` (absolute, PUBLIC_BASE_URL)."""
    return ""


def headers(message: Message) -> dict[str, str]:
    """``List-Unsubscribe`` and ``List-Unsubscribe-Post`` for a marketing email; {} otherwise."""
    return {}
