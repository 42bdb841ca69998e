"""Graph API errors as Meta shapes them (reference 5.1 for sync answers, 5.2 for webhook errors)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

ERROR_DOCS = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"

# Titles as Meta words them (the part after "(#code) " in a sync answer, ``title`` in webhooks).
TITLES = {
    2: "Service temporarily unavailable",
    100: "Invalid parameter",
    190: "Invalid OAuth access token - Cannot parse access token",
    130429: "Rate limit hit",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131021: "Recipient cannot be sender",
    131026: "Message undeliverable",
    131047: "Re-engagement message",
    131050: (
        "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages "
        "on WhatsApp from your business"
    ),
    131051: "Message type unknown",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132012: "Parameter format does not match format in the created template",
    132015: "Template is Paused",
    132016: "Template is Disabled",
}

DETAILS = {
    130429: "Cloud API message throughput has been reached.",
    131026: (
        "Unable to deliver message. Reasons can include: The recipient phone number is not a WhatsApp "
        "phone number; the recipient has not accepted our new Terms of Service and Privacy Policy; the "
        "recipient is using an old WhatsApp version."
    ),
    131047: (
        "Message failed to send because more than 24 hours have passed since the customer last replied "
        "to this number."
    ),
    131050: "The recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
    132015: "Template is paused due to low quality so it cannot be sent in a template message.",
    132016: "Template has been paused too many times due to low quality and is now permanently disabled.",
}


def trace_id() -> str:
    # The same alphabet as 22 secrets.choice() calls, at a twentieth of their CPU (one per answer).
    return "A" + secrets.token_urlsafe(17)[:22]


@dataclass
class ApiError(Exception):
    """A synchronous Graph API error answer."""

    code: int
    details: str = ""
    http_status: int = 400
    title: str = ""
    subcode: int | None = None

    def __post_init__(self) -> None:
        self.title = self.title or TITLES.get(self.code, "An unknown error occurred")
        self.details = self.details or DETAILS.get(self.code, "")
        super().__init__(f"({self.code}) {self.title}: {self.details}")

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": f"(#{self.code}) {self.title}",
            "type": "OAuthException",
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details or self.title},
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["fbtrace_id"] = trace_id()
        return {"error": error}


def webhook_error(code: int, details: str = "") -> dict[str, Any]:
    """An error object of a ``failed`` status or an unsupported inbound message (reference 4.4)."""
    title = TITLES.get(code, "Something went wrong")
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details or DETAILS.get(code, title)},
        "href": ERROR_DOCS,
    }
