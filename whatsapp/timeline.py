"""How WhatsApp events read in a subscriber's timeline (see ``subscribers.timeline``)."""

from __future__ import annotations

from subscribers.models import Event
from subscribers.timeline import Description, register

STATUS_STEPS = {
    "WhatsAppSent": ("Sent", ""),
    "WhatsAppDelivered": ("Delivered", "success"),
    "WhatsAppRead": ("Read", "success"),
    "WhatsAppFailed": ("Failed", "danger"),
}


def describe_status(event: Event) -> Description:
    attributes = event.attributes
    template = attributes.get("template") or ""
    campaign = attributes.get("campaign") or ""
    title = f"WhatsApp template {template}" if template else "WhatsApp message"
    if campaign:
        title += f" (campaign {campaign})"
    label, tone = STATUS_STEPS[event.name]
    detail = ""
    if event.name == "WhatsAppFailed":
        code, reason = attributes.get("error_code"), attributes.get("error_title") or "no reason given"
        detail = f"Failed: ({code}) {reason}" if code is not None else f"Failed: {reason}"
    message_id = attributes.get("message_id") or ""
    return Description(
        title=title, detail=detail, step=label, tone=tone, group=f"wa:{message_id}" if message_id else ""
    )


def describe_received(event: Event) -> Description:
    attributes = event.attributes
    kind = attributes.get("type") or "message"
    text = attributes.get("text") or ""
    if attributes.get("button_text") or attributes.get("button_payload"):
        return Description(
            title="Tapped a WhatsApp button", detail=text or attributes.get("button_payload", "")
        )
    title = "Wrote on WhatsApp" if kind == "text" else f"Sent a WhatsApp {kind}"
    return Description(title=title, detail=text)


def describe_click(event: Event) -> Description:
    attributes = event.attributes
    return Description(
        title="Tapped a WhatsApp button",
        detail=attributes.get("button_text") or attributes.get("button_payload") or "",
    )


def register_descriptions() -> None:
    register(STATUS_STEPS, describe_status)
    register(["WhatsAppReceived"], describe_received)
    register(["WhatsAppButtonClicked"], describe_click)
