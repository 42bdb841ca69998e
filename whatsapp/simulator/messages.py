"""POST /<phone-number-id>/messages: validation, acceptance, and the status webhooks that follow."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from subscribers import window
from whatsapp.models import WhatsAppAccount

from . import callbacks, config, dbthreads, handsets, store, templates
from .errors import ApiError, webhook_error

TYPES = ("text", "template", "interactive", "image", "video", "audio", "document", "sticker", "location",
         "contacts", "reaction")  # fmt: skip
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
WINDOW_SECONDS = int(window.SERVICE_WINDOW.total_seconds())


def _require(condition: bool, code: int, details: str) -> None:
    if not condition:
        raise ApiError(code, details)


def _length(value: Any, low: int, high: int, what: str) -> str:
    text = str(value or "")
    if not low <= len(text) <= high:
        raise ApiError(131009, f"{what} length invalid. Min length: {low}, Max length: {high}")
    return text


# --- per-type validation (reference 1.2-1.5) -----------------------------------------------------
def _check_text(body: dict) -> None:
    _require("body" in body, 100, "The parameter text['body'] is required.")
    text = str(body.get("body") or "")
    _require(bool(text.strip()), 131008, "text['body'] is empty.")
    _require(len(text) <= 4096, 100, "Param text['body'] must be at most 4096 characters long.")


def _check_interactive(body: dict) -> None:
    kind = str(body.get("type") or "")
    allowed = ("button", "list", "cta_url", "flow", "product", "product_list", "catalog_message",
               "call_permission_request")  # fmt: skip
    _require(kind in allowed, 100, f"interactive['type'] must be one of {', '.join(allowed)}.")
    header = body.get("header") or {}
    if header.get("type") == "text":
        _length(header.get("text"), 1, 60, "Header text")
    if kind not in ("product", "catalog_message"):
        _require(
            bool((body.get("body") or {}).get("text")), 131008, "interactive['body']['text'] is required."
        )
    if body.get("body"):
        _length(body["body"].get("text"), 1, 1024, "Body text")
    if body.get("footer"):
        _length(body["footer"].get("text"), 1, 60, "Footer text")
    action = body.get("action") or {}
    _require(isinstance(action, dict) and bool(action), 131008, "interactive['action'] is required.")
    if kind == "button":
        buttons = action.get("buttons") or []
        _require(1 <= len(buttons) <= 3, 131009, "Buttons count is invalid. Min: 1, Max: 3")
        ids = []
        for button in buttons:
            reply = button.get("reply") or {}
            _require(button.get("type") == "reply", 131009, "Every button must have type reply.")
            ids.append(_length(reply.get("id"), 1, 256, "Button id"))
            _length(reply.get("title"), 1, 20, "Button title")
        _require(len(set(ids)) == len(ids), 131009, "Button ids must be unique.")
    elif kind == "list":
        _length(action.get("button"), 1, 20, "List button label")
        sections = action.get("sections") or []
        _require(1 <= len(sections) <= 10, 131009, "Sections count is invalid. Min: 1, Max: 10")
        rows = [row for section in sections for row in section.get("rows") or []]
        _require(1 <= len(rows) <= 10, 131009, "Rows count is invalid. Min: 1, Max: 10")
        ids = []
        for row in rows:
            ids.append(_length(row.get("id"), 1, 200, "Row id"))
            _length(row.get("title"), 1, 24, "Row title")
            if row.get("description"):
                _length(row["description"], 1, 72, "Row description")
        _require(len(set(ids)) == len(ids), 131009, "Row ids must be unique.")
    elif kind == "cta_url":
        params = action.get("parameters") or {}
        _length(params.get("display_text"), 1, 20, "Button display_text")
        _require(
            str(params.get("url") or "").startswith(("http://", "https://")),
            131009,
            "A valid url is required.",
        )


def _check_media(kind: str, body: dict) -> None:
    _require(bool(body.get("link") or body.get("id")), 131008, f"{kind} needs a link or an id.")
    if body.get("caption") is not None:
        _require(kind in ("image", "video", "document"), 131009, f"{kind} messages have no caption.")
        _length(body["caption"], 0, 1024, "Caption")


def _check_location(body: dict) -> None:
    for key, limit in (("latitude", 90), ("longitude", 180)):
        try:
            value = float(body[key])
        except (KeyError, TypeError, ValueError):
            raise ApiError(131008, f"location['{key}'] is required.") from None
        _require(-limit <= value <= limit, 131009, f"location['{key}'] is out of range.")


def _check_contacts(body: Any) -> None:
    _require(isinstance(body, list) and bool(body), 131008, "contacts must be a non-empty list.")
    for card in body:
        _require(
            bool((card.get("name") or {}).get("formatted_name")),
            131008,
            "contacts[].name.formatted_name is required.",
        )


def _check_reaction(body: dict) -> str:
    target = str(body.get("message_id") or "")
    _require(bool(target), 131008, "reaction['message_id'] is required.")
    _require("emoji" in body, 131008, "reaction['emoji'] is required (empty string removes a reaction).")
    return target


def _template_for(account: WhatsAppAccount, body: dict) -> dict:
    name = str(body.get("name") or "")
    language = body.get("language")
    code = str((language or {}).get("code") or "") if isinstance(language, dict) else ""
    _require(bool(name), 100, "The parameter template['name'] is required.")
    _require(bool(code), 100, "The parameter template['language']['code'] is required.")
    template, expected = _find_template(account.waba_id, name, code)
    if template is None:
        raise ApiError(132001, f"template name ({name}) does not exist in {code}")
    if template["status"] == "PAUSED":
        raise ApiError(132015, f"template name ({name}) in {code} is paused.")
    if template["status"] == "DISABLED":
        raise ApiError(132016, f"template name ({name}) in {code} is disabled.")
    if template["status"] != "APPROVED":
        raise ApiError(
            132001, f"template name ({name}) does not exist in {code} (status {template['status']})"
        )
    templates.check_parameters(template, body.get("components"), expected)
    return template


_templates: dict[tuple[str, str, str], tuple[float, dict | None, dict | None]] = {}


def _find_template(waba_id: str, name: str, language: str) -> tuple[dict | None, dict | None]:
    """The template as the store has it and what a send must fill in (``expected_parameters``,
    parsed from its texts once per lookup, not per send). Under ``runsimulator`` kept as long as
    accounts are (SIMULATOR_ACCOUNT_CACHE_SECONDS), so a load test reads it once every few seconds,
    not on every send. A template paused or approved meanwhile counts after that many seconds (as
    at Meta, where a status change also takes a moment to reach every server)."""
    ttl = config.account_cache_seconds()
    key = (waba_id, name, language)
    if ttl:
        hit = _templates.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1], hit[2]
    template = store.find_template(waba_id, name, language)
    expected = templates.expected_parameters(template) if template is not None else None
    if ttl:
        _templates[key] = (time.monotonic() + ttl, template, expected)
    return template, expected


# --- recipient ----------------------------------------------------------------------------------
def _valid_phone(raw: str) -> str:
    """The digits of a ``to`` Meta would take, else ''."""
    phone = handsets.digits(raw)
    stripped = raw.replace("+", "").replace(" ", "").replace("-", "").replace("(", "").replace(")", "")
    return phone if stripped.isdigit() and 7 <= len(phone) <= 15 else ""


def new_recipient(payload: Any) -> str:
    """The phone of the handset a send of ``payload`` would create (none is stored for it yet), else ''."""
    given = payload.get("to") if isinstance(payload, dict) else None
    phone = _valid_phone(str(given)) if given else ""
    return phone if phone and store.get_handset(phone) is None else ""


def _recipient(payload: dict) -> tuple[str, str, str, dict | None]:
    """(input as given, wa_id digits, user_id, handset or None) of the addressee; BSUID via
    ``recipient`` (reference 4.6)."""
    recipient_type = str(payload.get("recipient_type") or "individual")
    _require(
        recipient_type == "individual", 100, "recipient_type must be individual (groups are not simulated)."
    )
    given = payload.get("to")
    if given:
        raw = str(given)
        phone = _valid_phone(raw)
        _require(bool(phone), 100, f"Invalid 'to' parameter: {raw!r}.")
        handset = store.get_handset(phone)
        return raw, phone, handset["user_id"] if handset else handsets.bsuid_for(phone), handset
    user_id = str(payload.get("recipient") or "")
    _require(bool(user_id), 100, "The parameter to (or recipient) is required.")
    handset = store.handset_by_user_id(user_id)
    if handset is None:
        return user_id, "", user_id, None
    return user_id, handset["phone"], user_id, handset


# --- the endpoint -------------------------------------------------------------------------------
def mark_read(account: WhatsAppAccount, payload: dict) -> dict:
    wamid = str(payload.get("message_id") or "")
    message = store.get_message(wamid) if wamid else None
    if (
        message is None
        or message["phone_number_id"] != account.phone_number_id
        or message["direction"] != "user"
    ):
        raise ApiError(100, f"message_id {wamid!r} is not a message this number received.")
    now = time.time()
    store.mark_user_messages_read(account.phone_number_id, message["phone"], message["created_at"], now)
    return {"success": True}


@dataclass(slots=True)
class Prepared:
    """A validated send: what to accept (``store.Send``; None when nothing is, a read receipt) and the
    answer once it is accepted (``result``)."""

    send: store.Send | None
    answer: dict

    def result(self, accepted: bool) -> dict:
        if self.send is None:
            return self.answer
        if not accepted:
            raise ApiError(130429, http_status=429)  # the number's last second was full
        if self.send.callback_rows:
            callbacks.wake()
        return self.answer


def send(*, account: WhatsAppAccount, payload: Any, callback_base: str, now: float | None = None) -> dict:
    """Validate and accept one message exactly as Meta would; the outcome arrives by status webhooks."""
    prepared = prepare(account=account, payload=payload, callback_base=callback_base, now=now)
    return prepared.result(prepared.send is not None and store.accept(prepared.send))


def prepare(
    *,
    account: WhatsAppAccount,
    payload: Any,
    callback_base: str,
    now: float | None = None,
    new_recipient_name: str | None = None,
    arrival: bool = False,
) -> Prepared:
    """``send`` up to its acceptance, which the caller does (``store.accept``, or a commit shared with
    other sends on the event loop). Raises ``ApiError`` as Meta answers a bad request.

    ``new_recipient_name``: the name of the recipient's handset if it is new, looked up by the caller
    (the asynchronous send route awaits it instead of blocking its event loop); else looked up here.
    ``arrival``: the send's throughput slot is its arrival, now (sends accepted in one transaction on
    the event loop keep their own times); else the moment the state file's lock is held."""
    _require(isinstance(payload, dict), 100, "The request body must be a JSON object.")
    _require(
        payload.get("messaging_product") == "whatsapp", 100, "The parameter messaging_product is required."
    )
    if payload.get("status") == "read":
        return Prepared(None, mark_read(account, payload))
    kind = str(payload.get("type") or "text").lower()
    _require(kind in TYPES, 100, f'Param type must be one of {{{", ".join(TYPES)}}} - got "{kind}".')
    given, phone, user_id, handset = _recipient(payload)
    _require(kind in payload, 100, f"The parameter {kind} is required.")
    body = payload[kind]
    if kind != "contacts":
        _require(isinstance(body, dict), 100, f"Param {kind} must be a JSON object.")
    template = None
    if kind == "text":
        _check_text(body)
    elif kind == "template":
        template = _template_for(account, body)
    elif kind == "interactive":
        _check_interactive(body)
    elif kind in MEDIA_TYPES:
        _check_media(kind, body)
    elif kind == "location":
        _check_location(body)
    elif kind == "contacts":
        _check_contacts(body)
    elif kind == "reaction":
        _check_reaction(body)
    callback_data = payload.get("biz_opaque_callback_data")
    if callback_data is not None:
        _length(callback_data, 0, 512, "biz_opaque_callback_data")
    if phone and phone == handsets.digits(account.display_phone_number):
        raise ApiError(131021, "The recipient is the sender's own phone number.")
    handset, new_handset = _handset(account, phone, user_id, handset, new_recipient_name)
    # The throughput slot is counted once the state file's lock is held (store.accept_sends); a time
    # given by a test, or the arrival on the event loop, counts the slot too.
    clock = None if now is None else (lambda: now)
    now = time.time() if now is None else now
    wamid = handsets.new_wamid()
    send = _plan(account, payload, kind, template, phone, user_id, handset, new_handset, wamid,
                 callback_base, now, clock)  # fmt: skip
    if arrival:
        send.at = now
    contact: dict[str, str] = {"input": given}
    if phone:
        contact["wa_id"] = phone
    if payload.get("recipient") and not payload.get("to"):
        contact["user_id"] = user_id
    message = {"id": wamid, "message_status": "accepted"}
    return Prepared(send, {"messaging_product": "whatsapp", "contacts": [contact], "messages": [message]})


def _pricing(category: str, in_window: bool) -> dict[str, Any]:
    free = category in ("service", "utility") and in_window
    kind = "free_customer_service" if free else "regular"
    return {"billable": not free, "pricing_model": "PMP", "type": kind, "category": category}


def _handset(
    account: WhatsAppAccount, phone: str, user_id: str, known: dict | None, name: str | None = None
) -> tuple[dict, dict | None]:
    """(the recipient's handset, the same if it is new and must be stored with the send, else None).

    What ``handsets.ensure`` gives for a send (a known handset as it is; a new one named after the
    business's subscriber), without writing: the send's one state transaction stores it."""
    if phone and known is not None and known["phone"] == phone:
        return known, None
    if phone:
        if name is None:
            name = dbthreads.profile_name(phone, project_id=account.project_id)
        new = {"phone": phone, "name": name, "user_id": handsets.bsuid_for(phone)}
        return new, new
    return {"phone": "", "name": "", "user_id": user_id}, None


def _plan(
    account: WhatsAppAccount,
    payload: dict,
    kind: str,
    template: dict | None,
    phone: str,
    user_id: str,
    handset: dict,
    new_handset: dict | None,
    wamid: str,
    callback_base: str,
    now: float,
    clock: Callable[[], float] | None = None,
) -> store.Send:
    """Decide the fate of a message: what its acceptance stores in one state transaction, if the
    number's throughput slot is there (``store.accept_sends``): the message in the handset's chat
    and its statuses. ``new_handset``: the recipient's handset to store with it (a new one), else None."""
    category = template["category"].lower() if template else "service"
    last = store.last_inbound(account.phone_number_id, phone) if phone else None
    in_window = last is not None and now - last < WINDOW_SECONDS
    sent_ms, delivered_ms, read_ms = config.delays_ms()
    plan: list[tuple[str, float]] = []
    error_code = None
    if not phone or phone.startswith(config.undeliverable_prefixes() or ("\0",)):
        error_code, plan = 131026, [("failed", sent_ms)]
    elif not template and not in_window:
        error_code, plan = 131047, [("failed", sent_ms)]
    elif template and category == "marketing" and store.marketing_stopped(account.phone_number_id, phone):
        error_code, plan = 131050, [("failed", sent_ms)]
    elif random.random() < config.failure_rate():  # noqa: S311 - a simulation
        error_code, plan = 131026, [("sent", sent_ms), ("failed", delivered_ms)]
    else:
        plan = [("sent", sent_ms), ("delivered", delivered_ms)]
        if read_ms >= 0:
            plan.append(("read", read_ms))
    conversation_id = hashlib.md5(  # noqa: S324 - an id, not security
        f"{account.phone_number_id}:{phone}:{category}:{int(now // 86400)}".encode()
    ).hexdigest()
    rows = []
    times: dict[str, float] = {}
    url = callbacks.webhook_url(account, callback_base)
    webhooks = config.status_webhooks()
    for status, delay_ms in plan:
        at = now + delay_ms / 1000
        times[status] = at
        if not webhooks:
            continue  # a load test of the send path alone: the chat still shows the ticks
        item: dict[str, Any] = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(at)),
            "recipient_id": phone or user_id,
            "recipient_user_id": handset["user_id"],
        }
        if payload.get("biz_opaque_callback_data") is not None:
            item["biz_opaque_callback_data"] = payload["biz_opaque_callback_data"]
        if status == "failed":
            item["errors"] = [webhook_error(error_code or 131026)]
        else:
            item["conversation"] = {"id": conversation_id, "origin": {"type": category}}
            if status == "sent":
                item["conversation"]["expiration_timestamp"] = str(int(now) + WINDOW_SECONDS)
            item["pricing"] = _pricing(category, in_window)
        value = {
            "messaging_product": "whatsapp",
            "metadata": callbacks.metadata(account),
            "contacts": [handsets.contact(handset)]
            if phone
            else [{"profile": {"name": ""}, "user_id": user_id}],
            "statuses": [item],
        }
        envelope = callbacks.envelope(account, "messages", value)
        rows.append(
            callbacks.callback_row(
                account, callback_base, envelope, due_at=at, kind=status, wamid=wamid, url=url
            )
        )
    stored_payload = {key: value for key, value in payload.items() if key != "access_token"}
    if template is not None:
        stored_payload["_template"] = {
            key: template[key] for key in ("name", "language", "category", "parameter_format", "components")
        }
    message = {
        "wamid": wamid,
        "phone_number_id": account.phone_number_id,
        "phone": phone or user_id,
        "direction": "business",
        "type": kind,
        "payload": stored_payload,
        "created_at": now,
        "sent_at": times.get("sent"),
        "delivered_at": times.get("delivered"),
        "read_at": times.get("read"),
        "failed_at": times.get("failed"),
        "error_code": error_code,
        "error_title": webhook_error(error_code)["title"] if error_code else "",
    }
    reaction = None
    if kind == "reaction":
        reaction = (str(payload["reaction"].get("emoji") or ""), str(payload["reaction"]["message_id"]))
    return store.Send(
        phone_number_id=account.phone_number_id,
        limit=max(1, account.throughput_mps),
        now=now,
        new_handset=new_handset,
        message=message,
        callback_rows=callbacks.maybe_duplicate(rows),
        reaction=reaction,
        clock=clock,
    )


def read_on_open(*, account: WhatsAppAccount, phone: str, callback_base: str) -> int:
    """With a negative read delay, the handset reads its messages when the chat is opened."""
    if config.delays_ms()[2] >= 0:
        return 0
    now = time.time()
    seen = store.read_business_messages(account.phone_number_id, phone, now)
    if not seen:
        return 0
    handset = handsets.ensure(phone, project_id=account.project_id)
    last = store.last_inbound(account.phone_number_id, phone)
    rows = []
    for message in seen:
        template = (message["payload"] or {}).get("_template")
        category = template["category"].lower() if template else "service"
        in_window = last is not None and message["created_at"] - last < WINDOW_SECONDS
        item: dict[str, Any] = {
            "id": message["wamid"],
            "status": "read",
            "timestamp": str(int(now)),
            "recipient_id": phone,
            "recipient_user_id": handset["user_id"],
            "pricing": _pricing(category, in_window),
        }
        callback_data = (message["payload"] or {}).get("biz_opaque_callback_data")
        if callback_data is not None:
            item["biz_opaque_callback_data"] = callback_data
        value = {
            "messaging_product": "whatsapp",
            "metadata": callbacks.metadata(account),
            "contacts": [handsets.contact(handset)],
            "statuses": [item],
        }
        envelope = callbacks.envelope(account, "messages", value)
        rows.append(callbacks.callback_row(account, callback_base, envelope, due_at=now, kind="read",
                                           wamid=message["wamid"]))  # fmt: skip
    callbacks.queue(rows)
    return len(rows)
