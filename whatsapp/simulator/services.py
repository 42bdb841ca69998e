"""The simulator's front door for the panel, commands and tests: who sees what, demo seeding, inbound."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from controlpanel.models import Project
from subscribers.models import Subscriber
from whatsapp.models import WhatsAppAccount

from . import callbacks, config, handsets, messages, store, templates

SIMULATOR_PATH = "/simulator/"


def callback_base(request: HttpRequest | None = None) -> str:
    """Where webhooks go: SIMULATOR_CALLBACK_BASE, else PUBLIC_BASE_URL, else the host we are served on."""
    override = config.callback_base_override() or settings.PUBLIC_BASE_URL
    if override or request is None:
        return (override or "http://127.0.0.1:8000").rstrip("/")
    return request.build_absolute_uri("/").rstrip("/")


def simulated_accounts() -> QuerySet[WhatsAppAccount]:
    return WhatsAppAccount.objects.filter(base_url__contains=SIMULATOR_PATH).select_related("project")


def visible_accounts(user) -> QuerySet[WhatsAppAccount]:
    """Simulator connections of the user's projects (staff: all). Phone pages show no other business."""
    accounts = simulated_accounts()
    if user.is_staff:
        return accounts
    return accounts.filter(project__in=Project.objects.for_user(user))


def visible_handsets(
    user, accounts: list[WhatsAppAccount], limit: int = 30, query: str = ""
) -> list[dict[str, Any]]:
    """Handsets this user may open: subscribers of their simulator projects, chats with those numbers,
    handsets they created (staff: every handset). ``query`` keeps those whose name contains it or
    whose number contains its digits ("ana", "+49 151", "5678")."""
    project_ids = {a.project_id for a in accounts}
    words = query.strip().lower()
    digits = handsets.digits(query) if any(ch.isdigit() for ch in query) else ""
    subscribers = Subscriber.objects.filter(project_id__in=project_ids, phone__isnull=False)
    if words:
        subscribers = subscribers.filter(
            Q(name__icontains=words) | (Q(phone__contains=digits) if digits else Q())
        )
    subscribers = subscribers.order_by("-updated_at").values_list("phone", "name")[:limit]
    talking = store.phones_talking_to([a.phone_number_id for a in accounts])
    rows: dict[str, dict[str, Any]] = {}
    known = store.list_handsets(
        None if user.is_staff else talking, created_by=None if user.is_staff else user.pk
    )
    for handset in known:
        if words and words not in handset["name"].lower() and not (digits and digits in handset["phone"]):
            continue
        rows[handset["phone"]] = {
            "phone": handset["phone"],
            "name": handset["name"],
            "active": handset["phone"] in talking,
        }
    for phone, name in subscribers:
        number = handsets.digits(phone)
        rows.setdefault(number, {"phone": number, "name": name or "", "active": False})
    order = {phone: i for i, phone in enumerate(talking)}
    return sorted(
        rows.values(), key=lambda r: (order.get(r["phone"], len(order)), r["name"].lower(), r["phone"])
    )


def can_open_handset(user, phone: str, accounts: list[WhatsAppAccount]) -> bool:
    if user.is_staff:
        return True
    handset = store.get_handset(phone)
    if handset is not None and handset["created_by"] == user.pk:
        return True
    if phone in store.phones_talking_to([a.phone_number_id for a in accounts]):
        return True
    return Subscriber.objects.filter(
        project_id__in={a.project_id for a in accounts}, phone=f"+{phone}"
    ).exists()


# --- demo -------------------------------------------------------------------------------------
DEMO_TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "autumn_promo",
        "language": "en_US",
        "category": "MARKETING",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Autumn sale"},
            {
                "type": "BODY",
                "text": "Hi {{1}}, our autumn sale is on! Use code {{2}} for 20% off until Sunday.",
                "example": {"body_text": [["Mark", "AUTUMN20"]]},
            },
            {"type": "FOOTER", "text": "Not interested? Tap Stop promotions"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Shop now"},
                    {"type": "QUICK_REPLY", "text": "Stop promotions"},
                ],
            },
        ],
    },
    {
        "name": "order_update",
        "language": "en_US",
        "category": "UTILITY",
        "components": [
            {
                "type": "BODY",
                "text": "Hi {{1}}, your order {{2}} has shipped and arrives {{3}}.",
                "example": {"body_text": [["Mark", "#8812", "tomorrow"]]},
            },
            {"type": "FOOTER", "text": "Demo Shop"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {
                        "type": "URL",
                        "text": "Track order",
                        "url": "https://shop.example.com/orders/{{1}}",
                        "example": ["https://shop.example.com/orders/8812"],
                    }
                ],
            },
        ],
    },
    {
        "name": "login_code",
        "language": "en_US",
        "category": "AUTHENTICATION",
        "components": [
            {"type": "BODY", "add_security_recommendation": True},
            {"type": "FOOTER", "code_expiration_minutes": 10},
            {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}]},
        ],
    },
]


# Meta's sample template: every new WhatsApp Business Account starts with it, approved.
HELLO_WORLD: dict[str, Any] = {
    "name": "hello_world",
    "language": "en_US",
    "category": "UTILITY",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Hello World"},
        {
            "type": "BODY",
            "text": "Welcome and congratulations!! This message demonstrates your ability to send a WhatsApp "
            "message notification from the Cloud API, hosted by Meta. Thank you for taking the time to test "
            "with us.",
        },
        {"type": "FOOTER", "text": "WhatsApp Business Platform sample message"},
    ],
}


def open_waba(waba_id: str) -> None:
    """The first time the simulator sees a WABA, it gets hello_world, as a new account at Meta does.

    Once only: a hello_world deleted later stays deleted.
    """
    if store.register_waba(waba_id):
        seed_templates(waba_id=waba_id, definitions=[HELLO_WORLD])


def seed_templates(*, waba_id: str, definitions: list[dict[str, Any]] | None = None) -> int:
    """Put approved templates into the WABA's store (no review, no webhook). Idempotent."""
    created = 0
    for definition in definitions or DEMO_TEMPLATES:
        if store.find_template(waba_id, definition["name"], definition["language"]) is not None:
            continue
        category = definition["category"]
        parameter_format = definition.get("parameter_format", "POSITIONAL")
        components = templates.review(category, definition["components"], parameter_format)
        store.insert_template(
            {
                "id": templates.new_id(),
                "waba_id": waba_id,
                "name": definition["name"],
                "language": definition["language"],
                "category": category,
                "status": "APPROVED",
                "parameter_format": parameter_format,
                "components": components,
                "quality": "GREEN",
                "created_at": time.time(),
            }
        )
        created += 1
    return created


# --- what a handset does ------------------------------------------------------------------------
def send_inbound(
    *, account: WhatsAppAccount, phone: str, kind: str, callback_base: str, **fields: str
) -> dict[str, Any]:
    """The handset ``phone`` sends a message of ``kind`` (see handsets.build) to the account's number."""
    handset = handsets.ensure(phone, project_id=account.project_id)
    message = handsets.build(kind, account=account, handset=handset, **fields)
    return handsets.send_inbound(account=account, phone=phone, message=message, callback_base=callback_base)


def set_marketing_preference(*, account: WhatsAppAccount, phone: str, stop: bool, callback_base: str) -> None:
    handsets.set_marketing_preference(account=account, phone=phone, stop=stop, callback_base=callback_base)


def read_on_open(*, account: WhatsAppAccount, phone: str, callback_base: str) -> int:
    return messages.read_on_open(account=account, phone=phone, callback_base=callback_base)


def pending_webhooks() -> dict[str, int]:
    return store.callback_stats()


def deliver_due(**kwargs) -> int:
    return callbacks.deliver_due(**kwargs)
