"""The /api/v1/messages endpoints: one transactional, verification or service message, and its state.

A send names one recipient (``phone``, ``external_id`` or ``subscriber_id``; ``auto_register``
creates an unknown phone's subscriber) and either a template (``name`` + ``language``, its
parameters as Liquid ``bindings`` or as Meta's raw ``components``) or a free-form ``text`` (only
inside the 24-hour window). Everything goes through ``services.send_whatsapp``, the one write path
of a single message, so the API refuses exactly what the panel's composer refuses.

``Idempotency-Key``: the first request with a key creates the message; the same key with the same
request answers that message again (200, ``duplicate: true``) without sending anything; the same
key with another request is a 409. "The same request" is compared by a hash of the request after
normalising it (phone as E.164, defaults and nulls dropped, keys sorted), stored on the message.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from django.db import transaction
from django.utils.translation import gettext as _
from ninja import Field, Header, Router, Schema, Status
from pydantic import ConfigDict

from controlpanel.api import ApiError, ErrorOut, api, error
from controlpanel.models import Project
from controlpanel.services import Actor
from subscribers import tags
from subscribers.errors import InvalidInput
from subscribers.models import ConsentSource, Subscriber
from subscribers.phones import normalize_phone
from subscribers.services import clean_subscriber_data, upsert_subscriber
from whatsapp.errors import explain
from whatsapp.models import MessageTemplate, TemplateCategory, TemplateStatus, WhatsAppAccount

from . import policy
from .conversations import build_components, template_fields, template_parts
from .models import Message, MessageKind
from .outcomes import Skip
from .services import SendRefused, default_account, idempotent_message, send_whatsapp

router = Router(tags=["messages"])

MAX_KEY = 128
# What an Idempotency-Key may hold: visible ASCII, as in the header conventions of Stripe and the IETF
# draft; stored with a prefix, so a key can never match one of the outbox's own keys.
KEY_PATTERN = re.compile(r"[\x21-\x7e]+")
KEY_PREFIX = "api:"
COMPONENT_TYPES = ("header", "body", "button")
MAX_COMPONENTS = 20
BUTTON_INDEXES = {str(i) for i in range(10)}
MAX_VALUES = 50


# --- request -------------------------------------------------------------------------------------


class StrictSchema(Schema):
    model_config = ConfigDict(extra="forbid")


class TemplateIn(StrictSchema):
    name: str = Field(examples=["order_update"], json_schema_extra={"maxLength": 512})
    language: str = Field(
        description="The approved language, exactly as in GET /templates.",
        examples=["en_US"],
        json_schema_extra={"maxLength": 16},
    )
    bindings: dict[str, dict[str, str]] | None = Field(
        None,
        description="Liquid per placeholder, keyed like the template's `placeholders` (GET /templates): "
        '`{"body": {"1": "{{ subscriber.name | default: \\"Kunde\\" }}", "2": "{{ values.order_id }}"}}`. '
        "A literal value is Liquid too. Context: `subscriber` (name, phone, email, language, country, "
        "time_zone, external_id), `tags`, `values` (from this request). A binding that renders empty "
        "without a `default` is a 422. Authentication templates: the copy-code button takes the body's "
        "code when it has no binding of its own.",
        examples=[{"body": {"1": "{{ subscriber.name | default: 'there' }}", "2": "{{ values.order_id }}"}}],
    )
    components: list[dict[str, Any]] | None = Field(
        None,
        description="Meta's send components as they are (`type` header/body/button, `parameters`, and "
        "`sub_type` + `index` for buttons), instead of `bindings`.",
        json_schema_extra={"maxItems": MAX_COMPONENTS},
    )


class MessageIn(StrictSchema):
    phone: str | None = Field(
        None,
        description="The recipient's phone; without a leading + it is a number of the project's country.",
        examples=["+4915112345678"],
    )
    external_id: str | None = Field(
        None, description="The recipient by your own user id.", json_schema_extra={"maxLength": 200}
    )
    subscriber_id: UUID | None = Field(None, description="The recipient by the subscriber's id.")
    auto_register: bool = Field(
        False,
        description="With `phone`: create the subscriber when the project has nobody with that number "
        "(consent unknown, so only transactional and verification templates can reach them).",
    )
    template: TemplateIn | None = Field(None, description="Send an approved template ...")
    text: str | None = Field(
        None,
        description="... or a free-form text (only within 24 hours of the person's last message).",
        json_schema_extra={"maxLength": 4096},
    )
    values: dict[str, Any] | None = Field(
        None,
        description="Values for the bindings' `{{ values.<name> }}`, e.g. an order id or a one-time code.",
        examples=[{"order_id": "8812"}],
        json_schema_extra={"maxProperties": MAX_VALUES},
    )
    phone_number_id: str | None = Field(
        None,
        description="The sending number, when the project has several (default: the template's, else "
        "the first connected one).",
    )


# --- response ------------------------------------------------------------------------------------

MessageStatusName = Literal["queued", "sending", "sent", "delivered", "read", "failed", "skipped", "unknown"]


class RecipientOut(Schema):
    id: UUID
    phone: str | None


class TemplateRefOut(Schema):
    name: str
    language: str


class RenderedOut(Schema):
    header: str = Field(description="Header text; empty for none or a media header.")
    header_media: str = Field(description="image, video, document or location; empty for none.")
    body: str = Field(description="The text as the recipient reads it.")
    footer: str
    buttons: list[str] = Field(description="Button labels.")


class HistoryOut(Schema):
    status: str
    at: datetime
    note: str = ""


class MessageErrorOut(Schema):
    code: int | None = Field(description="Meta's error code; null when Meta could not be reached.")
    title: str = Field(description="Meta's words.")
    details: str
    explanation: str = Field(description="What it means and what to do, in plain words.")


class PricingOut(Schema):
    category: str = Field(description="Meta's pricing category, e.g. authentication, marketing, utility.")
    type: str = Field(description="regular, free_customer_service or free_entry_point.")
    billable: bool | None


class MessageOut(Schema):
    id: UUID
    status: MessageStatusName = Field(
        description="queued -> sending -> sent -> delivered -> read; or failed, skipped (never sent, see "
        "`reason`), unknown (sent or not: a status from Meta settles it)."
    )
    kind: Literal["template", "text"]
    recipient: RecipientOut
    template: TemplateRefOut | None
    campaign_id: UUID | None = Field(description="The campaign that sent it; null for single sends.")
    wamid: str | None = Field(description="Meta's message id, once Meta accepted it.")
    rendered: RenderedOut
    values: dict[str, Any]
    reason: str = Field(description="Why it was skipped or failed, in plain words; empty otherwise.")
    error: MessageErrorOut | None
    pricing: PricingOut | None = Field(description="From Meta's status webhooks, once delivered.")
    history: list[HistoryOut] = Field(description="Each change of state with its time, oldest first.")
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None
    replied_at: datetime | None = Field(description="The person's first message within 72 h of the send.")
    clicked_at: datetime | None = Field(description="The person's first tap on a quick-reply button.")


class MessageSentOut(MessageOut):
    duplicate: bool = Field(
        description="True when the Idempotency-Key was seen before: this is the earlier message, "
        "nothing was sent again."
    )


def message_out(message: Message) -> dict[str, Any]:
    parts = template_parts(message) if message.kind == MessageKind.TEMPLATE else {}
    has_error = message.error_code is not None or bool(message.error_title)
    return {
        "id": message.public_id,
        "status": message.status,
        "kind": message.kind,
        "recipient": {"id": message.subscriber.public_id, "phone": message.subscriber.phone},
        "template": {"name": message.template_name, "language": message.template_language}
        if message.kind == MessageKind.TEMPLATE
        else None,
        "campaign_id": message.campaign.public_id if message.campaign_id else None,
        "wamid": message.wamid,
        "rendered": {
            "header": parts.get("header", ""),
            "header_media": parts.get("header_media", ""),
            "body": message.body,
            "footer": parts.get("footer", ""),
            "buttons": parts.get("buttons", []),
        },
        "values": message.values or {},
        "reason": message.reason,
        "error": {
            "code": message.error_code,
            "title": message.error_title,
            "details": message.error_details,
            "explanation": message.reason or explain(message.error_code, message.error_title),
        }
        if has_error
        else None,
        "pricing": {
            "category": message.pricing_category,
            "type": message.pricing_type,
            "billable": message.billable,
        }
        if message.pricing_category
        else None,
        "history": [
            {"status": h.get("status", ""), "at": h.get("at"), "note": h.get("note", "")}
            for h in message.history or []
            if isinstance(h, dict) and h.get("at")
        ],
        "created_at": message.created_at,
        "sent_at": message.sent_at,
        "delivered_at": message.delivered_at,
        "read_at": message.read_at,
        "failed_at": message.failed_at,
        "replied_at": message.replied_at,
        "clicked_at": message.clicked_at,
    }


def _messages(project: Project):
    return Message.objects.for_project(project).select_related("subscriber", "template", "campaign")


# --- errors --------------------------------------------------------------------------------------


@api.exception_handler(SendRefused)
def on_send_refused(request, exc: SendRefused):
    status = 409 if exc.code == "idempotency_conflict" else 422
    field = {"parameter_mismatch": "template.components", "idempotency_conflict": "Idempotency-Key"}.get(
        exc.code
    )
    return error(request, status, exc.code, str(exc), field)


def _not_found(code: str, message: str, field: str) -> ApiError:
    return ApiError(404, code, message, field=field)


# --- the send ------------------------------------------------------------------------------------


def clean_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > MAX_KEY or not KEY_PATTERN.fullmatch(key):
        raise InvalidInput(
            _("Idempotency-Key must be 1 to %(max)s visible ASCII characters (e.g. a UUID).")
            % {"max": MAX_KEY},
            field="Idempotency-Key",
            code="invalid_idempotency_key",
        )
    return KEY_PREFIX + key


def request_hash(project: Project, payload: MessageIn) -> str:
    """SHA-256 of the request as the send reads it: two bodies that would send the same hash alike."""
    data = payload.model_dump(mode="json", exclude_none=True)
    if not data.get("auto_register"):
        data.pop("auto_register", None)
    if payload.phone is not None:
        # An invalid phone is refused later with the reason; its raw text is as good a fingerprint.
        with contextlib.suppress(InvalidInput):
            data["phone"] = normalize_phone(payload.phone, project.default_country)
    for name in ("text", "external_id", "phone_number_id"):
        if isinstance(data.get(name), str):
            data[name] = data[name].strip()
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_shape(payload: MessageIn) -> None:
    """What the schema cannot say: one recipient, one kind of content, one way to fill a template."""
    given = [name for name in ("phone", "external_id", "subscriber_id") if getattr(payload, name) is not None]
    if len(given) != 1:
        raise InvalidInput(
            _("Name exactly one recipient: phone, external_id or subscriber_id."),
            field=given[1] if len(given) > 1 else "phone",
        )
    if payload.auto_register and payload.phone is None:
        raise InvalidInput(_("auto_register needs the recipient's phone."), field="auto_register")
    if (payload.template is None) == (payload.text is None):
        raise InvalidInput(_("Send either a template or a text."), field="template")
    if payload.template and payload.template.bindings is not None and payload.template.components is not None:
        raise InvalidInput(
            _("Give the template's parameters either as bindings or as components, not both."),
            field="template.components",
        )


def check_storable(payload: MessageIn) -> None:
    """No database stores a lone surrogate (PostgreSQL refuses it in text and jsonb): a 422, not a 500."""
    for name in ("text", "values", "template"):
        value = getattr(payload, name)
        tags.clean_tree(value.model_dump() if isinstance(value, Schema) else value, field=name)


def recipient(project: Project, payload: MessageIn, actor: Actor) -> Subscriber:
    subscribers = Subscriber.objects.for_project(project)
    if payload.subscriber_id is not None:
        found = subscribers.filter(public_id=payload.subscriber_id).first()
        if found is None:
            raise _not_found(
                "subscriber_not_found",
                _("No subscriber %(id)s in this project.") % {"id": payload.subscriber_id},
                "subscriber_id",
            )
        return found
    if payload.external_id is not None:
        external_id = payload.external_id.strip()
        found = subscribers.filter(external_id=external_id).first() if external_id else None
        if found is None:
            raise _not_found(
                "subscriber_not_found",
                _("No subscriber with external id %(id)s in this project.") % {"id": repr(external_id)},
                "external_id",
            )
        return found
    phone = normalize_phone(payload.phone or "", project.default_country)
    found = subscribers.filter(phone=phone).first()
    if found is not None:
        return found
    if not payload.auto_register:
        raise _not_found(
            "subscriber_not_found",
            _(
                "No subscriber with phone %(phone)s in this project. Create them first (POST /subscribers), "
                'or send with "auto_register": true.'
            )
            % {"phone": phone},
            "phone",
        )
    subscriber, _created = upsert_subscriber(
        project=project,
        data=clean_subscriber_data(project, {"phone": phone}),
        actor=actor,
        source=ConsentSource.API,
    )
    return subscriber


def sending_account(project: Project, phone_number_id: str | None) -> WhatsAppAccount | None:
    if phone_number_id is None:
        return None
    account = (
        WhatsAppAccount.objects.for_project(project).filter(phone_number_id=phone_number_id.strip()).first()
    )
    if account is None:
        raise _not_found(
            "account_not_found",
            _("No WhatsApp number %(id)s is connected.") % {"id": phone_number_id},
            "phone_number_id",
        )
    return account


def find_template(
    project: Project, name: str, language: str, account: WhatsAppAccount | None
) -> MessageTemplate:
    candidates = MessageTemplate.objects.for_project(project).filter(
        name=name.strip(), language=language.strip()
    )
    if account is not None:
        candidates = candidates.filter(account=account)
    # The same template on several numbers: an approved one, then the first connected number's.
    found = sorted(
        candidates.select_related("account"),
        key=lambda t: (t.status != TemplateStatus.APPROVED, t.account.created_at, t.pk),
    )
    if not found:
        raise _not_found(
            "template_not_found",
            (
                _("No template %(name)s in language %(language)s on %(number)s.")
                % {"name": repr(name), "language": repr(language), "number": account.phone_number_id}
                if account
                else _("No template %(name)s in language %(language)s.")
                % {"name": repr(name), "language": repr(language)}
            )
            + " "
            + _("GET /templates lists the synced ones; POST /templates/sync fetches new ones from Meta."),
            "template.name",
        )
    return found[0]


def components_from_bindings(
    project: Project,
    template: MessageTemplate,
    subscriber: Subscriber,
    bindings: dict[str, dict[str, str]],
    values: dict[str, Any],
) -> list[dict[str, Any]]:
    """Render the Liquid bindings for this one subscriber into Meta's send components."""
    from . import bindings as liquid

    expected = policy.template_parameters(template)
    bindings = {key: dict(names) for key, names in bindings.items()}
    if template.category == TemplateCategory.AUTHENTICATION and "body" in bindings:
        # Meta wants the code twice, in the body and in the copy-code button; one binding is enough.
        for key in expected:
            if key.startswith("button:") and key not in bindings:
                bindings[key] = {name: bindings["body"].get("1", "") for name in expected[key]}
    try:
        liquid.check_bindings(bindings, expected)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field=f"template.{exc.field or 'bindings'}", code=exc.code) from None
    context = liquid.contexts_for(project, [subscriber.pk], values={subscriber.pk: values})[subscriber.pk]
    rendered = liquid.Renderer(bindings).render(context)
    if isinstance(rendered, Skip):
        raise InvalidInput(
            policy.for_people(rendered.reason), field="template.bindings", code="binding_empty"
        )
    data = {f"{key}.{name}": value for key, names in rendered.items() for name, value in names.items()}
    fields = template_fields(template, data)
    components = build_components(template, fields)
    bad = next((f for f in fields if f.error), None)
    if bad is not None:
        raise InvalidInput(
            _("%(label)s rendered as %(value)s: %(problem)s")
            % {"label": bad.label, "value": repr(bad.value), "problem": bad.error},
            field=f"template.bindings.{bad.key}.{bad.name}",
            code="invalid_binding_value",
        )
    return components


def clean_components(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Meta's components, checked as far as we read them (the type and button index): Meta checks the rest."""
    cleaned = []
    for i, component in enumerate(raw):
        where = f"template.components.{i}"
        ctype = component.get("type")
        if not isinstance(ctype, str) or ctype.lower() not in COMPONENT_TYPES:
            raise InvalidInput(
                _("%(field)s must be header, body or button.") % {"field": f"{where}.type"},
                field=f"{where}.type",
            )
        parameters = component.get("parameters", [])
        if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
            raise InvalidInput(
                _("%(field)s must be a list of objects.") % {"field": f"{where}.parameters"},
                field=f"{where}.parameters",
            )
        if ctype.lower() == "button":
            index = component.get("index")
            # Meta takes the index as a number or a string of one (pywa sends an int); 10 buttons at most.
            if isinstance(index, bool) or str(index) not in BUTTON_INDEXES:
                raise InvalidInput(
                    _("%(field)s must be the button's position, 0 to 9.") % {"field": f"{where}.index"},
                    field=f"{where}.index",
                )
            if not isinstance(component.get("sub_type"), str):
                raise InvalidInput(
                    _("%(field)s is required for a button (url, quick_reply, copy_code).")
                    % {"field": f"{where}.sub_type"},
                    field=f"{where}.sub_type",
                )
        cleaned.append(component)
    return cleaned


SEND_EXAMPLES = {
    "verification": {
        "summary": "Verification code (authentication template with a copy-code button)",
        "description": "Meta's shape: the code is the body's only parameter and the copy-code button's "
        "(sub_type url, index 0) too. Send with an Idempotency-Key, so a retry cannot send a second code.",
        "value": {
            "phone": "+4915112345678",
            "auto_register": True,
            "template": {
                "name": "verification_code",
                "language": "en_US",
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": "482913"}]},
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": "0",
                        "parameters": [{"type": "text", "text": "482913"}],
                    },
                ],
            },
        },
    },
    "verification_bindings": {
        "summary": "The same verification code with a binding",
        "description": "The button takes the body's code when it has no binding of its own.",
        "value": {
            "phone": "+4915112345678",
            "auto_register": True,
            "template": {
                "name": "verification_code",
                "language": "en_US",
                "bindings": {"body": {"1": "{{ values.code }}"}},
            },
            "values": {"code": "482913"},
        },
    },
    "transactional": {
        "summary": "Order update with Liquid bindings",
        "value": {
            "external_id": "crm-4711",
            "template": {
                "name": "order_update",
                "language": "en_US",
                "bindings": {
                    "body": {"1": "{{ subscriber.name | default: 'there' }}", "2": "{{ values.order_id }}"},
                    "button:0": {"1": "{{ values.order_id }}"},
                },
            },
            "values": {"order_id": "8812"},
        },
    },
    "text": {
        "summary": "Free-form text inside the 24-hour window",
        "value": {"phone": "+4915112345678", "text": "Your table for two is ready."},
    },
}


@router.post(
    "",
    response={200: MessageSentOut, 201: MessageSentOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Send one WhatsApp message (template or text)",
    openapi_extra={"requestBody": {"content": {"application/json": {"examples": SEND_EXAMPLES}}}},
)
def send_message(
    request,
    payload: MessageIn,
    idempotency_key: str | None = Header(
        None,
        alias="Idempotency-Key",
        description="Your unique id for this send (e.g. a UUID). Repeating the request with the same key "
        "returns the first message (200) instead of sending again; the same key with a different request "
        "is a 409.",
        examples=["4c1f6a52-1d8e-4f0e-a2b1-2f0f5b1d9c3e"],
    ),
):
    """Queues one message; a worker sends it at once, and Meta's status webhooks move it on (poll
    `GET /messages/{id}`). Answers 201 with the message (`status: queued`).

    Refused with nothing written (422 `send_refused`, the reason in `message`): the template is not
    approved; marketing without WhatsApp opt-in; an opted-out subscriber; text outside the 24-hour
    window; parameters that do not fit the template (`parameter_mismatch`). 404 for an unknown
    recipient (unless `auto_register`), template (`template_not_found`) or number. A subscriber
    created by `auto_register` is kept only when the message is.
    """
    project: Project = request.project
    key = clean_key(idempotency_key)
    fingerprint = request_hash(project, payload)
    if key:
        existing = idempotent_message(project, key, fingerprint)
        if existing is not None:
            return Status(200, {**message_out(_messages(project).get(pk=existing.pk)), "duplicate": True})
    check_shape(payload)
    check_storable(payload)
    with transaction.atomic():
        subscriber = recipient(project, payload, request.actor)
        account = sending_account(project, payload.phone_number_id)
        template, components = None, None
        if payload.template is not None:
            template = find_template(project, payload.template.name, payload.template.language, account)
            account = template.account
            if payload.template.bindings is not None:
                components = components_from_bindings(
                    project, template, subscriber, payload.template.bindings, payload.values or {}
                )
            else:
                components = clean_components(payload.template.components or [])
        message = send_whatsapp(
            project=project,
            subscriber=subscriber,
            actor=request.actor,
            template=template,
            components=components,
            text=payload.text,
            account=account or default_account(project),
            idempotency_key=key,
            request_hash=fingerprint if key else "",
            values=payload.values,
        )
    return Status(201, {**message_out(_messages(project).get(pk=message.pk)), "duplicate": False})


@router.get(
    "/{uuid:message_id}", response={200: MessageOut, 404: ErrorOut}, summary="A message and its state"
)
def get_message(request, message_id: UUID):
    """The message as the recipient sees it (`rendered`), its state with each change and its time
    (`history`), Meta's error with a plain explanation when it failed, and the pricing Meta reported
    once it was delivered. Messages of campaigns are found here too.
    """
    message = _messages(request.project).filter(public_id=message_id).first()
    if message is None:
        raise _not_found(
            "message_not_found", _("No message %(id)s in this project.") % {"id": message_id}, "id"
        )
    return message_out(message)
