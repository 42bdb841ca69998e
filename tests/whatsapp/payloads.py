"""Webhook payloads shaped exactly like reference section 4 (and 3.5), built per test."""

from __future__ import annotations

import itertools
import json

WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY = "15550783881"
_ids = itertools.count(1)


def wamid() -> str:
    return f"wamid.HBgLTEST{next(_ids):08d}AAA"


def envelope(value: dict, field: str = "messages") -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": field, "value": value}]}],
    }


def body(payload: dict) -> bytes:
    # Like Meta: JSON with non-ASCII escaped, serialized once, signed and sent as these bytes.
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()


def contact(wa_id: str, name: str = "Sheena Nelson", user_id: str = "US.13491208655302741918") -> dict:
    return {"profile": {"name": name}, "wa_id": wa_id, "user_id": user_id}


def inbound(message: dict, wa_id: str = "16505551234", **contact_kw) -> dict:
    message = {"from": wa_id, "id": wamid(), "timestamp": "1749416383", **message}
    return envelope(
        {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [contact(wa_id, **contact_kw)],
            "messages": [message],
        }
    )


def text(body_text: str, **kw) -> dict:
    return inbound({"type": "text", "text": {"body": body_text}}, **kw)


INBOUND_TYPES = {
    "text": {"type": "text", "text": {"body": "Does it come in another color?"}},
    "button": {
        "type": "button",
        "button": {"payload": "STOP_PROMOS", "text": "Stop promotions"},
        "context": {"from": DISPLAY, "id": "wamid.TEMPLATE1"},
    },
    "interactive_button": {
        "type": "interactive",
        "interactive": {"type": "button_reply", "button_reply": {"id": "slot_yes", "title": "Yes"}},
        "context": {"from": DISPLAY, "id": "wamid.INTERACTIVE1"},
    },
    "interactive_list": {
        "type": "interactive",
        "interactive": {
            "type": "list_reply",
            "list_reply": {
                "id": "priority_express",
                "title": "Priority Mail Express",
                "description": "Next Day",
            },
        },
    },
    "image": {
        "type": "image",
        "image": {
            "id": "1479537139650973",
            "mime_type": "image/jpeg",
            "sha256": "abc=",
            "caption": "My receipt",
        },
    },
    "document": {
        "type": "document",
        "document": {"id": "2", "mime_type": "application/pdf", "sha256": "x", "filename": "invoice.pdf"},
    },
    "audio": {"type": "audio", "audio": {"id": "3", "mime_type": "audio/ogg", "sha256": "x", "voice": True}},
    "video": {"type": "video", "video": {"id": "4", "mime_type": "video/mp4", "sha256": "x"}},
    "sticker": {
        "type": "sticker",
        "sticker": {"id": "5", "mime_type": "image/webp", "sha256": "x", "animated": False},
    },
    "location": {
        "type": "location",
        "location": {"latitude": 52.52, "longitude": 13.405, "name": "Alexanderplatz", "address": "Berlin"},
    },
    "reaction": {"type": "reaction", "reaction": {"message_id": "wamid.OUT1", "emoji": "\U0001f600"}},
    "contacts": {
        "type": "contacts",
        "contacts": [{"name": {"formatted_name": "Barbara Johnson", "first_name": "Barbara"}, "phones": []}],
    },
    "referral": {
        "type": "text",
        "text": {"body": "Hi from the ad"},
        "referral": {
            "source_url": "https://fb.me/x",
            "source_id": "1",
            "source_type": "ad",
            "ctwa_clid": "c1",
        },
    },
    "unsupported": {
        "type": "unsupported",
        "errors": [
            {
                "code": 131051,
                "title": "Message type unknown",
                "message": "Message type unknown",
                "error_data": {"details": "Message type is currently not supported."},
            }
        ],
    },
    "order": {"type": "order", "order": {"catalog_id": "1", "product_items": [], "text": "please"}},
}


def status(
    message_id: str,
    state: str,
    ts: int,
    *,
    wa_id: str = "16505551234",
    callback: str = "",
    errors: list | None = None,
) -> dict:
    element = {"id": message_id, "status": state, "timestamp": str(ts), "recipient_id": wa_id}
    if callback:
        element["biz_opaque_callback_data"] = callback
    if state in ("sent", "delivered", "read"):
        element["pricing"] = {
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": "marketing",
        }
    if errors:
        element["errors"] = errors
    return envelope(
        {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [contact(wa_id)],
            "statuses": [element],
        }
    )


def user_preference(wa_id: str, value: str, ts: int = 1731705721) -> dict:
    return envelope(
        {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [contact(wa_id)],
            "user_preferences": [
                {"wa_id": wa_id, "detail": "User requested to stop marketing messages",
                 "category": "marketing_messages", "value": value, "timestamp": ts}
            ],
        },
        field="user_preferences",
    )  # fmt: skip


def template_status(name: str, language: str, event: str, reason: str = "NONE", template_id: int = 0) -> dict:
    value = {
        "event": event,
        "message_template_id": template_id or 1689556908129835,
        "message_template_name": name,
        "message_template_language": language,
        "reason": reason,
        "message_template_category": "MARKETING",
    }
    if event == "REJECTED":
        value["rejection_info"] = {
            "reason": "Parameters placed next to each other",
            "recommendation": "Separate them",
        }
    return envelope(value, field="message_template_status_update")
