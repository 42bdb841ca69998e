"""JSON shapes of the /api/v1/subscribers and /api/v1/events endpoints.

Input schemas check JSON types only and forbid unknown keys (a typo like
``"tag"`` is an error, not a silently ignored field). Meaning (phone numbers,
tag types, event attributes) is checked by the services, so the API, the panel
and CSV imports give the same messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from ninja import Schema
from pydantic import ConfigDict, Field, SkipValidation, model_validator

from .events import ATTRIBUTE_NAME_RE, EVENT_NAME_RE, MAX_ATTRIBUTES
from .tags import TAG_NAME_RE

MAX_BATCH = 1000


def limits(**constraints: Any) -> dict[str, Any]:
    """JSON-schema constraints that the services check (with their own error codes and messages),
    shown in the OpenAPI document without pydantic checking them first."""
    return {"json_schema_extra": constraints}


ConsentStateName = Literal["unknown", "opted_in", "opted_out"]


class StrictSchema(Schema):
    model_config = ConfigDict(extra="forbid")


class OptInIn(StrictSchema):
    evidence: str | None = Field(
        None,
        description="How and when the person agreed, in words (e.g. 'checkbox on checkout, 2026-01-31').",
        examples=["Ticked the WhatsApp box at checkout on 2026-01-31"],
    )


ChannelName = Literal["whatsapp", "email", "push"]


class ChannelConsentIn(StrictSchema):
    state: Literal["opted_in", "opted_out"]
    evidence: str = Field(
        "",
        description="How and when the person agreed (required to opt in) or withdrew (optional).",
        examples=["Ticked the newsletter box at checkout on 2026-01-31"],
    )


class UndeliverableOut(Schema):
    at: datetime = Field(description="When the address bounced hard or complained.")
    reason: str


class SubscriberIn(StrictSchema):
    phone: str | None = Field(
        None,
        description="Phone number; without a leading + it is read as a number of the project's default "
        "country. Stored and returned as E.164.",
        examples=["+4915112345678"],
    )
    external_id: str | None = Field(
        None, description="Your own user id (unique per project).", **limits(maxLength=200)
    )
    name: str | None = Field(None, **limits(maxLength=200))
    # The column's length: the services check the address's form, not its length.
    email: str | None = Field(None, max_length=254)
    language: str | None = Field(None, description="BCP 47 code, e.g. de or pt_BR.", **limits(maxLength=16))
    country: str | None = Field(
        None, description="ISO 3166-1 alpha-2 code, e.g. DE.", **limits(pattern=r"^\s*([A-Za-z]{2})?\s*$")
    )
    timezone: str | None = Field(
        None, description="IANA time zone, e.g. Europe/Berlin.", **limits(maxLength=64)
    )
    tags: dict[str, Any] | None = Field(
        None,
        description="Tag name to value. A new tag name is created with the type of its first value "
        "(string, integer, decimal, boolean, list of strings; 'YYYY-MM-DD' makes a date tag); later "
        "values must fit that type. null removes the tag. Dates and date-times without an offset are "
        "the project's local time (its time zone, GET /project).",
        examples=[{"city": "Berlin", "orders": 3, "vip": True, "birthday": "1990-05-17"}],
        **limits(propertyNames={"pattern": TAG_NAME_RE.pattern}),
    )
    whatsapp_opt_in: OptInIn | None = Field(
        None,
        description="Record a WhatsApp opt-in; evidence is required.",
        examples=[{"evidence": "Ticked the WhatsApp box at checkout on 2026-01-31"}],
    )
    email_consent: ChannelConsentIn | None = Field(
        None,
        description="Record an email opt-in (evidence required) or opt-out in the consent ledger.",
        examples=[{"state": "opted_in", "evidence": "Ticked the newsletter box at checkout on 2026-01-31"}],
    )


class SubscriberPatch(StrictSchema):
    phone: str | None = Field(None, description="A new phone number; must not belong to another subscriber.")
    external_id: str | None = Field(
        None, description="A new external id; null removes it.", **limits(maxLength=200)
    )
    name: str | None = Field(None, **limits(maxLength=200))
    email: str | None = Field(None, max_length=254)
    language: str | None = Field(None, **limits(maxLength=16))
    country: str | None = Field(None, **limits(pattern=r"^\s*([A-Za-z]{2})?\s*$"))
    timezone: str | None = Field(None, **limits(maxLength=64))
    tags: dict[str, Any] | None = Field(
        None,
        description="Tags to set; a tag not mentioned is kept, a tag set to null is removed. Dates and "
        "date-times without an offset are the project's local time.",
        **limits(propertyNames={"pattern": TAG_NAME_RE.pattern}),
    )


class ConsentIn(StrictSchema):
    evidence: str = Field(
        "",
        description="How and when the person agreed (required to opt in) or withdrew (optional).",
        examples=["Replied STOP on 2026-02-01"],
    )
    channel: ChannelName | None = Field(
        None, description="The channel the consent is for (default whatsapp); also a query parameter."
    )


class SubscriberOut(Schema):
    id: UUID = Field(description="The subscriber's public id.")
    phone: str | None = Field(description="E.164.")
    wa_id: str
    bsuid: str | None
    external_id: str | None
    name: str
    email: str
    language: str
    country: str
    timezone: str
    tags: dict[str, Any] = Field(description="Built-in tags (Name, Language, ...) and custom tags.")
    whatsapp_consent: ConsentStateName
    whatsapp_consent_at: datetime | None
    email_consent: ConsentStateName
    email_consent_at: datetime | None
    email_undeliverable: UndeliverableOut | None = Field(
        description="Set when the address bounced hard or complained; null when it can take mail."
    )
    push_consent: ConsentStateName
    push_consent_at: datetime | None
    devices: int = Field(description="Active push devices (the list: GET /devices).")
    last_inbound_at: datetime | None
    created_at: datetime
    updated_at: datetime


UpsertStatus = Literal["created", "updated", "unchanged"]
STATUS_HELP = (
    "created: a new subscriber; updated: an existing one changed; unchanged: it already looked "
    "exactly like this, nothing was written."
)


class UpsertOut(SubscriberOut):
    status: UpsertStatus = Field(description=STATUS_HELP)
    changed: bool = Field(description="False when the subscriber already looked exactly like this.")


class SubscriberList(Schema):
    results: list[SubscriberOut]


# Batch items are validated one by one so one bad item becomes one error result, not
# a 422 for the whole batch; the documentation still shows the item schema.
SubscriberItem = SkipValidation[SubscriberIn]


class SubscriberBatchIn(StrictSchema):
    subscribers: list[SubscriberItem] = Field(
        max_length=MAX_BATCH, description=f"Up to {MAX_BATCH} subscribers, each as in POST /subscribers."
    )


class ItemError(Schema):
    code: str
    message: str
    field: str | None = None


class SubscriberResult(Schema):
    index: int
    id: UUID | None = None
    status: UpsertStatus | None = Field(None, description=STATUS_HELP)
    changed: bool | None = None
    error: ItemError | None = None


class SubscriberBatchOut(Schema):
    results: list[SubscriberResult]


class SubscriberRef(StrictSchema):
    id: UUID | None = Field(None, description="The subscriber's public id.")
    phone: str | None = Field(None, description="Phone number (normalized like POST /subscribers).")
    external_id: str | None = None

    @model_validator(mode="after")
    def exactly_one(self) -> SubscriberRef:
        given = [k for k in ("id", "phone", "external_id") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of id, phone or external_id")
        return self


class EventIn(StrictSchema):
    subscriber: SubscriberRef = Field(
        description="An existing subscriber of the project, by exactly one of id, phone or external_id.",
        examples=[{"phone": "+4915112345678"}],
    )
    name: str = Field(
        description="Event name, e.g. OrderPlaced.",
        examples=["OrderPlaced"],
        **limits(pattern=EVENT_NAME_RE.pattern),
    )
    attributes: dict[str, Any] | None = Field(
        None,
        description="Attribute name to single value. A new custom event (or attribute) takes the types of "
        "its first occurrence; later values must fit them. Dates and date-times without an offset are "
        "the project's local time.",
        examples=[{"cuisine": "asian", "amount": 23.5}],
        **limits(maxProperties=MAX_ATTRIBUTES, propertyNames={"pattern": ATTRIBUTE_NAME_RE.pattern}),
    )
    occurred_at: datetime | None = Field(
        None,
        description="ISO 8601; a time without an offset is the project's local time (its time zone, "
        "GET /project). Defaults to now.",
    )
    dedup_key: str | None = Field(
        None,
        max_length=200,
        description="Idempotency key: an event with a key the project has seen is not recorded again.",
    )


class SubscriberIdOut(Schema):
    id: UUID


class EventOut(Schema):
    id: str
    name: str
    subscriber: SubscriberIdOut
    occurred_at: datetime
    received_at: datetime
    attributes: dict[str, Any]
    dedup_key: str | None
    duplicate: bool = Field(description="True when dedup_key matched an event recorded earlier.")


EventItem = SkipValidation[EventIn]


class EventBatchIn(StrictSchema):
    events: list[EventItem] = Field(
        max_length=MAX_BATCH, description=f"Up to {MAX_BATCH} events, each as in POST /events."
    )


class EventResult(Schema):
    index: int
    id: str | None = None
    status: Literal["created", "duplicate"] | None = None
    error: ItemError | None = None


class EventBatchOut(Schema):
    results: list[EventResult]
