"""How a handset shows its chat: stored messages turned into bubbles like WhatsApp draws them."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import unescape
from typing import Any

from django.utils import timezone
from django.utils.html import escape, strip_tags
from django.utils.safestring import SafeString, mark_safe

from whatsapp import placeholders

OTP_PREFIX = "https://www.whatsapp.com/otp/code/"
MEDIA_ICONS = {"image": "Photo", "video": "Video", "audio": "Voice message", "document": "Document",
               "sticker": "Sticker"}  # fmt: skip


def formatted(text: str) -> SafeString:
    """WhatsApp's *bold*, _italic_, ~strike~ and ```mono```, on escaped text, newlines kept."""
    html = escape(text or "")
    html = re.sub(r"```(.+?)```", r"<code>\1</code>", html, flags=re.S)
    html = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<strong>\1</strong>", html)
    html = re.sub(r"(?<![\w_])_(?!\s)(.+?)(?<!\s)_(?![\w_])", r"<em>\1</em>", html)
    html = re.sub(r"(?<![\w~])~(?!\s)(.+?)(?<!\s)~(?![\w~])", r"<s>\1</s>", html)
    return mark_safe(html.replace("\n", "<br>"))


@dataclass
class Bubble:
    wamid: str
    side: str  # "in": from the business to this handset; "out": the handset's own; "note": centered
    at: datetime
    kind: str
    header: dict[str, str] | None = None
    body: SafeString | str = ""
    footer: str = ""
    buttons: list[dict[str, Any]] = field(default_factory=list)
    menu: dict[str, Any] | None = None
    ticks: str = ""
    note: str = ""
    failed: bool = False
    reaction: str = ""
    quoted: str = ""


def _link(url: Any) -> str:
    """Only web links become hrefs: a business could send ``javascript:`` as a media link."""
    text = str(url or "").strip()
    return text if text.lower().startswith(("https://", "http://")) else ""


def _when(ts: float) -> datetime:
    return timezone.localtime(datetime.fromtimestamp(ts, tz=UTC))


def _value(param: dict) -> str:
    kind = str(param.get("type") or "text").lower()
    if kind == "text":
        return str(param.get("text") or "")
    if kind in ("currency", "date_time"):
        return str((param.get(kind) or {}).get("fallback_value") or "")
    return ""


def _fill(text: str, params: list[dict], named: bool) -> str:
    if named:
        values = {str(p.get("parameter_name")): _value(p) for p in params}
    else:
        values = {str(i): _value(p) for i, p in enumerate(params, start=1)}
    return placeholders.fill(text, values)


def _template_bubble(bubble: Bubble, payload: dict) -> None:
    template = payload.get("_template") or {}
    sent = payload.get("template") or {}
    named = template.get("parameter_format") == "NAMED"
    given: dict[str, Any] = {"header": [], "body": [], "buttons": {}}
    for component in sent.get("components") or []:
        kind = str(component.get("type") or "").lower()
        if kind in ("header", "body"):
            given[kind] = component.get("parameters") or []
        elif kind == "button":
            try:
                given["buttons"][int(component.get("index"))] = component.get("parameters") or []
            except (TypeError, ValueError):
                continue
    for component in template.get("components") or []:
        kind = str(component.get("type") or "").upper()
        if kind == "HEADER":
            fmt = str(component.get("format") or "TEXT").upper()
            if fmt == "TEXT":
                bubble.header = {
                    "kind": "text",
                    "text": _fill(component.get("text") or "", given["header"], named),
                }
            else:
                param = (given["header"] or [{}])[0]
                media = param.get(fmt.lower()) or {}
                label = media.get("name") or media.get("filename") or fmt.title()
                bubble.header = {
                    "kind": fmt.lower(),
                    "text": str(label),
                    "link": _link(media.get("link")),
                }
        elif kind == "BODY":
            bubble.body = formatted(_fill(component.get("text") or "", given["body"], named))
        elif kind == "FOOTER":
            bubble.footer = str(component.get("text") or "")
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons") or []):
                bubble.buttons.append(_template_button(index, button, given["buttons"].get(index) or []))


def _template_button(index: int, button: dict, params: list[dict]) -> dict[str, Any]:
    kind = str(button.get("type") or "").upper()
    text = str(button.get("text") or "")
    first = params[0] if params else {}
    if kind == "QUICK_REPLY":
        return {
            "kind": "quick_reply",
            "text": text,
            "payload": str(first.get("payload") or text),
            "index": index,
        }
    if kind == "URL":
        suffix = str(first.get("text") or "")
        url = placeholders.TOKEN.sub(lambda _m: suffix, str(button.get("url") or ""))
        if url.startswith(OTP_PREFIX):
            return {"kind": "copy_code", "text": text or "Copy code", "code": suffix}
        return {"kind": "url", "text": text, "url": _link(url)}
    if kind == "PHONE_NUMBER":
        phone = "".join(ch for ch in str(button.get("phone_number") or "") if ch.isdigit() or ch == "+")
        return {"kind": "phone", "text": text, "url": "tel:" + phone}
    if kind == "COPY_CODE":
        return {
            "kind": "copy_code",
            "text": text or "Copy offer code",
            "code": str(first.get("coupon_code") or ""),
        }
    return {"kind": "other", "text": text or kind.replace("_", " ").title()}


def _interactive_bubble(bubble: Bubble, body: dict) -> None:
    header = body.get("header") or {}
    if header.get("type") == "text":
        bubble.header = {"kind": "text", "text": str(header.get("text") or "")}
    elif header.get("type") in ("image", "video", "document"):
        media = header.get(header["type"]) or {}
        bubble.header = {
            "kind": header["type"],
            "text": header["type"].title(),
            "link": _link(media.get("link")),
        }
    bubble.body = formatted(str((body.get("body") or {}).get("text") or ""))
    bubble.footer = str((body.get("footer") or {}).get("text") or "")
    action = body.get("action") or {}
    kind = body.get("type")
    if kind == "button":
        for button in action.get("buttons") or []:
            reply = button.get("reply") or {}
            bubble.buttons.append(
                {
                    "kind": "reply",
                    "text": str(reply.get("title") or ""),
                    "payload": str(reply.get("id") or ""),
                }
            )
    elif kind == "list":
        bubble.menu = {
            "button": str(action.get("button") or "Options"),
            "sections": [
                {"title": str(s.get("title") or ""), "rows": [dict(r) for r in s.get("rows") or []]}
                for s in action.get("sections") or []
            ],
        }
    elif kind == "cta_url":
        params = action.get("parameters") or {}
        bubble.buttons.append(
            {
                "kind": "url",
                "text": str(params.get("display_text") or ""),
                "url": _link(params.get("url")),
            }
        )
    else:
        bubble.buttons.append({"kind": "other", "text": f"{kind} message"})


def _summary(kind: str, data: Any) -> str:
    """A one-line rendering of a message body of any type."""
    data = data if isinstance(data, dict) else {}
    if kind in MEDIA_ICONS:
        return " ".join(
            p for p in (MEDIA_ICONS[kind], str(data.get("caption") or data.get("filename") or "")) if p
        )
    if kind == "location":
        name = " · ".join(str(data.get(k)) for k in ("name", "address") if data.get(k))
        return f"Location: {name or ''} ({data.get('latitude')}, {data.get('longitude')})".replace(
            ":  (", ": ("
        )
    if kind == "order":
        items = data.get("product_items") or []
        count = sum(int(i.get("quantity") or 0) for i in items)
        return f"Order of {count} item(s): {data.get('text') or ''}".strip()
    return ""


def bubble_for(message: dict[str, Any], now: float) -> Bubble | None:
    payload = message["payload"] or {}
    kind = message["type"]
    side = {"business": "in", "user": "out"}.get(message["direction"], "note")
    bubble = Bubble(wamid=message["wamid"], side=side, at=_when(message["created_at"]), kind=kind,
                    reaction=message["reaction"])  # fmt: skip
    if side == "note":
        stopped = payload.get("value") == "stop"
        bubble.note = (
            "You stopped marketing messages from this business."
            if stopped
            else "You allowed marketing messages again."
        )
        return bubble
    if side == "in":
        if kind == "reaction":
            return None  # shown on the message it reacts to
        if message["failed_at"] is not None and message["failed_at"] <= now:
            bubble.failed = True
            bubble.note = f"Not delivered: ({message['error_code']}) {message['error_title']}"
        elif message["sent_at"] is None or message["sent_at"] > now:
            return None  # still on its way to the handset
        elif message["read_at"] is not None and message["read_at"] <= now:
            bubble.note = "read"
        elif message["delivered_at"] is not None and message["delivered_at"] <= now:
            bubble.note = "delivered"
        else:
            bubble.note = "sent"
        if kind == "template":
            _template_bubble(bubble, payload)
        elif kind == "text":
            bubble.body = formatted(str((payload.get("text") or {}).get("body") or ""))
        elif kind == "interactive":
            _interactive_bubble(bubble, payload.get("interactive") or {})
        elif kind == "contacts":
            names = [
                str((c.get("name") or {}).get("formatted_name") or "") for c in payload.get("contacts") or []
            ]
            bubble.body = "Contact: " + ", ".join(n for n in names if n)
        else:
            data = payload.get(kind) or {}
            if kind in ("image", "video", "document") and data.get("link"):
                bubble.header = {"kind": kind, "text": kind.title(), "link": _link(data["link"])}
                bubble.body = formatted(str(data.get("caption") or ""))
            else:
                bubble.body = _summary(kind, data)
        return bubble
    # the handset's own message
    if kind == "reaction":
        return None
    if message["read_at"] is not None:
        bubble.ticks = "read"
    elif message["delivered_at"] is not None:
        bubble.ticks = "delivered"
    elif message["failed_at"] is not None:
        bubble.ticks, bubble.failed = "failed", True
        bubble.note = f"Our webhook did not accept it: {message['error_title']}"
    else:
        bubble.ticks = "sent"
    if kind == "text":
        bubble.body = formatted(str((payload.get("text") or {}).get("body") or ""))
        if payload.get("referral"):
            bubble.quoted = "From an ad: " + str(payload["referral"].get("headline") or "")
    elif kind == "button":
        bubble.body = str((payload.get("button") or {}).get("text") or "")
    elif kind == "interactive":
        inner = payload.get("interactive") or {}
        reply = inner.get(inner.get("type") or "") or {}
        bubble.body = str(reply.get("title") or "")
    elif kind == "contacts":
        names = [
            str((c.get("name") or {}).get("formatted_name") or "") for c in payload.get("contacts") or []
        ]
        bubble.body = "Contact: " + ", ".join(n for n in names if n)
    elif kind == "unsupported":
        bubble.body = "This message type is not supported."
    elif kind == "system":
        bubble.side, bubble.ticks = "note", ""
        bubble.note = str((payload.get("system") or {}).get("body") or "")
    else:
        bubble.body = _summary(kind, payload.get(kind))
    return bubble


def thread(messages: list[dict[str, Any]], now: float | None = None) -> tuple[list[Bubble], str]:
    """The bubbles to show, and a version that changes whenever what is shown changes."""
    now = time.time() if now is None else now
    by_id = {m["wamid"]: m for m in messages}
    bubbles = []
    for message in messages:
        bubble = bubble_for(message, now)
        if bubble is None:
            continue
        context = (message["payload"] or {}).get("context") or {}
        quoted = by_id.get(str(context.get("id") or context.get("message_id") or ""))
        if quoted is not None and not bubble.quoted:
            bubble.quoted = _quote(quoted)
        bubbles.append(bubble)
    fingerprint = "|".join(f"{b.wamid}:{b.ticks}:{b.note}:{b.reaction}:{b.quoted}" for b in bubbles)
    return bubbles, hashlib.sha1(fingerprint.encode()).hexdigest()[:16]  # noqa: S324 - a version tag


def _quote(message: dict[str, Any]) -> str:
    payload = message["payload"] or {}
    if message["type"] == "template":
        return "Template: " + str((payload.get("template") or {}).get("name") or "")
    if message["type"] == "text":
        return str((payload.get("text") or {}).get("body") or "")[:80]
    if message["type"] == "interactive":
        return str(((payload.get("interactive") or {}).get("body") or {}).get("text") or "")[:80]
    return message["type"].title()


def preview(message: dict[str, Any] | None) -> str:
    """One line for the chat list."""
    if message is None:
        return ""
    bubble = bubble_for(message, float("inf"))
    if bubble is None:
        return message["type"]
    text = strip_tags(
        str(bubble.body or bubble.note or (bubble.header or {}).get("text") or "").replace("<br>", " ")
    )
    return " ".join(unescape(text).split())[:80]
