"""Simulated handsets: who they are, and the inbound messages they send (reference 4.3 and 4.5)."""

from __future__ import annotations

import base64
import functools
import hashlib
import secrets
import time
from typing import Any

import phonenumbers
from django.db import connection
from django.utils.translation import gettext_lazy

from subscribers.models import Subscriber
from whatsapp.models import WhatsAppAccount

from . import callbacks, dbthreads, store
from .errors import webhook_error


def new_wamid() -> str:
    raw = b"\x15\x02\x00\x11\x18\x12" + secrets.token_bytes(18)
    return "wamid.HBgL" + base64.b64encode(raw).decode().rstrip("=").replace("/", "_").replace("+", "-")


def digits(value: str) -> str:
    text = str(value or "")
    if text.isdigit():
        return text  # a recipient as senders write it: nothing to drop, no walk over its characters
    return "".join(ch for ch in text if ch.isdigit())


def region_of(phone: str) -> str:
    """``region_code_for_number(parse("+" + phone))``, "ZZ" where that fails.

    A number of 7 to 15 plain digits whose country code belongs to one region only is of that
    region whatever the rest is (what ``region_code_for_number`` answers, and ``parse`` cannot
    fail on such a number): no parse. Every other number (+1, +7, +44 ... shared by several
    regions, odd input) is parsed as before. Every new recipient of a load test comes through here.
    """
    if phone.isascii() and phone.isdigit() and 7 <= len(phone) <= 15 and phone[0] != "0":
        for size in (1, 2, 3):
            regions = phonenumbers.region_codes_for_country_code(int(phone[:size]))
            if not regions or regions == ("ZZ",):  # no region has this code: try a longer one
                continue
            if len(regions) == 1:
                return regions[0]
            break
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse("+" + phone)) or "ZZ"
    except phonenumbers.NumberParseException:
        return "ZZ"


@functools.lru_cache(maxsize=65_536)
def bsuid_for(phone: str) -> str:
    """A stable business-scoped user id like ``US.13491208655302741918`` (one per handset here).

    A pure function of the phone, cached: parsing the number for its region was a tenth of a
    simulated send's CPU, twice per new recipient."""
    region = region_of(phone)
    number = int(hashlib.sha256(f"bsuid:{phone}".encode()).hexdigest()[:16], 16)
    return f"{region}.{number:020d}"[:24]


def profile_name(phone: str, *, project_id: int | None = None) -> str:
    """The name the business (``project_id``) has for this phone, else any project's, else a neutral one.

    With the project the lookup is one probe of the (project, phone) unique index, written as
    plain SQL: every new recipient of a load test comes through here, and building the ORM query
    cost more CPU than running it. Without the project (a handset opened on the phone page) the
    phone alone can only use the trigram index, 15 ms at a million subscribers: fine for a click,
    never on the send path.
    """
    if project_id is not None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name FROM subscribers_subscriber WHERE project_id = %s AND phone = %s AND name <> ''",
                [project_id, f"+{phone}"],
            )
            row = cursor.fetchone()
        return row[0] if row else f"User {phone[-4:]}"
    name = (
        Subscriber.objects.filter(phone=f"+{phone}")
        .exclude(name="")
        .order_by("-updated_at")
        .values_list("name", flat=True)
        .first()
    )
    return name or f"User {phone[-4:]}"


def profile_names(phones: list[str], *, project_id: int) -> dict[str, str]:
    """``profile_name`` of each phone for the project, all in one probe of the (project, phone)
    index: the standalone simulator asks for the new recipients of concurrent sends together."""
    wanted = [f"+{phone}" for phone in phones]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT phone, name FROM subscribers_subscriber WHERE project_id = %s AND phone = ANY(%s)"
                " AND name <> ''",
                [project_id, wanted],
            )
        else:
            marks = ", ".join(["%s"] * len(wanted))
            cursor.execute(
                f"SELECT phone, name FROM subscribers_subscriber WHERE project_id = %s AND phone IN ({marks})"  # noqa: S608
                " AND name <> ''",
                [project_id, *wanted],
            )
        found = {phone[1:]: name for phone, name in cursor.fetchall()}
    return {phone: found.get(phone) or f"User {phone[-4:]}" for phone in phones}


def ensure(
    phone: str, *, name: str = "", created_by: int | None = None, project_id: int | None = None
) -> dict[str, Any]:
    handset = store.get_handset(phone)
    if handset is not None and (handset["name"] or not name):
        return handset
    return store.ensure_handset(
        phone,
        name=name or dbthreads.run(profile_name, phone, project_id=project_id),
        user_id=bsuid_for(phone),
        created_by=created_by,
    )


def contact(handset: dict[str, Any]) -> dict[str, Any]:
    return {"profile": {"name": handset["name"]}, "wa_id": handset["phone"], "user_id": handset["user_id"]}


# --- inbound ------------------------------------------------------------------------------------
MEDIA = {
    "image": ("image/jpeg", {}),
    "video": ("video/mp4", {}),
    "audio": ("audio/ogg; codecs=opus", {"voice": True}),
    "document": ("application/pdf", {"filename": "invoice.pdf"}),
    "sticker": ("image/webp", {"animated": False}),
}
KINDS = {
    "text": gettext_lazy("Text"),
    "image": gettext_lazy("Photo"),
    "video": gettext_lazy("Video"),
    "audio": gettext_lazy("Voice message"),
    "document": gettext_lazy("Document"),
    "sticker": gettext_lazy("Sticker"),
    "location": gettext_lazy("Location"),
    "contacts": gettext_lazy("Contact card"),
    "order": gettext_lazy("Order from the catalog"),
    "referral": gettext_lazy("Text from a click-to-WhatsApp ad"),
    "unsupported": gettext_lazy("Unsupported message"),
    "system": gettext_lazy("Changed phone number (system)"),
}


def _context(account: WhatsAppAccount, context_id: str) -> dict[str, str]:
    return {"from": account.display_phone_number, "id": context_id}


def build(
    kind: str,
    *,
    account: WhatsAppAccount,
    handset: dict[str, Any],
    text: str = "",
    payload: str = "",
    title: str = "",
    description: str = "",
    context_id: str = "",
    emoji: str = "",
) -> dict[str, Any]:
    """The type-specific part of an inbound message of ``kind`` (every type of reference 4.3)."""
    if kind == "text":
        message: dict[str, Any] = {"type": "text", "text": {"body": text}}
        if context_id:
            message["context"] = _context(account, context_id)
        return message
    if kind == "referral":
        return {
            "type": "text",
            "text": {"body": text or "Hi! I saw your ad and want to know more."},
            "referral": {
                "source_url": "https://fb.me/3cr4Wqqkv",
                "source_id": "120214000000000000",
                "source_type": "ad",
                "body": "Free delivery this week only",
                "headline": "Autumn sale",
                "media_type": "image",
                "image_url": "https://example.com/ad.jpg",
                "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0",
            },
        }
    if kind == "button":
        return {
            "type": "button",
            "button": {"payload": payload or text, "text": text},
            "context": _context(account, context_id),
        }
    if kind == "button_reply":
        return {
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": payload, "title": title or text}},
            "context": _context(account, context_id),
        }
    if kind == "list_reply":
        reply = {"id": payload, "title": title or text}
        if description:
            reply["description"] = description
        return {
            "type": "interactive",
            "interactive": {"type": "list_reply", "list_reply": reply},
            "context": _context(account, context_id),
        }
    if kind in MEDIA:
        mime, extra = MEDIA[kind]
        media: dict[str, Any] = {
            "id": str(10**15 + secrets.randbelow(9 * 10**15)),
            "mime_type": mime,
            "sha256": base64.b64encode(secrets.token_bytes(32)).decode(),
            **extra,
        }
        if text and kind in ("image", "video", "document"):
            media["caption"] = text
        return {"type": kind, kind: media}
    if kind == "location":
        location = {"latitude": 52.516275, "longitude": 13.377704}
        location.update(name=text or "Brandenburger Tor", address="Pariser Platz, 10117 Berlin")
        return {"type": "location", "location": location}
    if kind == "contacts":
        name = text or "Ana Example"
        first, _, last = name.partition(" ")
        card_name = {"formatted_name": name, "first_name": first}
        if last:
            card_name["last_name"] = last
        return {
            "type": "contacts",
            "contacts": [
                {
                    "name": card_name,
                    "phones": [{"phone": "+49 151 23456789", "wa_id": "4915123456789", "type": "CELL"}],
                }
            ],
        }
    if kind == "reaction":
        return {"type": "reaction", "reaction": {"message_id": context_id, "emoji": emoji}}
    if kind == "order":
        return {
            "type": "order",
            "order": {
                "catalog_id": "1537113007123456",
                "text": text or "Please deliver after 6 pm.",
                "product_items": [
                    {"product_retailer_id": "SKU-1001", "quantity": 2, "item_price": 12.5, "currency": "EUR"}
                ],
            },
        }
    if kind == "unsupported":
        return {
            "type": "unsupported",
            "errors": [webhook_error(131051, "Message type is currently not supported.")],
        }
    if kind == "system":
        new = text or (handset["phone"][:-1] + str((int(handset["phone"][-1]) + 1) % 10))
        return {
            "type": "system",
            "system": {
                "body": f"User {handset['name']} changed from {handset['phone']} to {new}",
                "wa_id": new,
                "type": "user_changed_number",
            },
        }
    raise ValueError(f"unknown inbound kind {kind!r}")


def send_inbound(
    *,
    account: WhatsAppAccount,
    phone: str,
    message: dict[str, Any],
    callback_base: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The handset sends ``message`` (from ``build``): stored in the chat, window opened, webhook queued.

    Returns the full inbound message as it appears in the webhook.
    """
    now = time.time() if now is None else now
    handset = ensure(phone)
    wamid = new_wamid()
    full = {"from": phone, "id": wamid, "timestamp": str(int(now)), **message}
    value: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": callbacks.metadata(account)}
    if message["type"] != "system":  # system messages come without contacts (reference 4.2)
        full["from_user_id"] = handset["user_id"]
        value["contacts"] = [contact(handset)]
    value["messages"] = [full]
    payload = callbacks.envelope(account, "messages", value)
    row = callbacks.callback_row(account, callback_base, payload, due_at=now, kind="inbound", wamid=wamid)
    with store.transaction() as tx:
        store.insert_message(
            {
                "wamid": wamid,
                "phone_number_id": account.phone_number_id,
                "phone": phone,
                "direction": "user",
                "type": message["type"],
                "payload": full,
                "created_at": now,
                "sent_at": now,
            },
            tx,
        )
        if message["type"] == "reaction":
            target = message["reaction"]["message_id"]
            tx.execute(
                "UPDATE messages SET reaction = ? WHERE wamid = ?", (message["reaction"]["emoji"], target)
            )
        callbacks.queue([row], tx)
    if message["type"] != "system":
        store.open_window(account.phone_number_id, phone, now)
    callbacks.wake()
    return full


def set_marketing_preference(
    *, account: WhatsAppAccount, phone: str, stop: bool, callback_base: str, now: float | None = None
) -> None:
    """The user stops (or resumes) marketing messages in WhatsApp: ``user_preferences`` webhook (4.5)."""
    now = time.time() if now is None else now
    handset = ensure(phone)
    value = {
        "messaging_product": "whatsapp",
        "metadata": callbacks.metadata(account),
        "contacts": [contact(handset)],
        "user_preferences": [
            {
                "wa_id": phone,
                "user_id": handset["user_id"],
                "detail": "User requested to stop marketing messages"
                if stop
                else "User requested to resume marketing messages",
                "category": "marketing_messages",
                "value": "stop" if stop else "resume",
                "timestamp": int(now),
            }
        ],
    }
    payload = callbacks.envelope(account, "user_preferences", value)
    store.set_marketing_stopped(account.phone_number_id, phone, stop)
    with store.transaction() as tx:
        store.insert_message(
            {
                "wamid": "note." + secrets.token_hex(8),
                "phone_number_id": account.phone_number_id,
                "phone": phone,
                "direction": "note",
                "type": "user_preferences",
                "payload": {"value": "stop" if stop else "resume"},
                "created_at": now,
                "sent_at": now,
            },
            tx,
        )
        callbacks.queue(
            [callbacks.callback_row(account, callback_base, payload, due_at=now, kind="preference")], tx
        )
    callbacks.wake()
