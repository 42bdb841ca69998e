"""The /api/v1/subscribers and /api/v1/events endpoints.

Every lookup starts from the API key's project (``request.project``): a subscriber
of another project is "not found", with the same answer as an id that never existed.
Writes go through subscribers.services, so the API validates exactly like the panel
and CSV imports; their ``InvalidInput`` errors become 422 (409 for conflicts, 404
for unknown references) with the ``{code, message, field}`` body.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.translation import gettext as _
from ninja import Router, Status
from pydantic import ValidationError

from controlpanel.api import ApiError, ErrorOut, api
from controlpanel.models import Project
from controlpanel.services import Actor

from . import tags as tagtypes
from .errors import InvalidInput
from .imports.stores import Store
from .models import (
    ConsentChannel,
    ConsentSource,
    ConsentState,
    Event,
    Subscriber,
    TagDefinition,
)
from .phones import normalize_phone
from .schemas import (
    ChannelName,
    ConsentIn,
    EventBatchIn,
    EventBatchOut,
    EventIn,
    EventOut,
    SubscriberBatchIn,
    SubscriberBatchOut,
    SubscriberIn,
    SubscriberList,
    SubscriberOut,
    SubscriberPatch,
    UpsertOut,
)
from .services import (
    NewEvent,
    SubscriberData,
    change_consent,
    clean_subscriber_data,
    erase_subscriber,
    export_subscriber,
    record_event,
    record_events,
    subscriber_item,
    tags_of,
    update_subscriber,
    upsert_subscriber,
)
from .upsert import KEY_FIELDS, PROFILE_COLUMNS, DefinitionGone, Item, match, upsert_subscribers

router = Router(tags=["subscribers"])

INVALID_INPUT_STATUS = {"conflict": 409, "not_found": 404}
# Documented error answers: 422 bad input, 404 unknown subscriber, 409 identity conflicts.
INVALID = {422: ErrorOut}
NOT_FOUND = {404: ErrorOut, 422: ErrorOut}
CONFLICT = {404: ErrorOut, 409: ErrorOut, 422: ErrorOut}


def invalid_input_status(exc: InvalidInput) -> int:
    return INVALID_INPUT_STATUS.get(exc.code, 422)


@api.exception_handler(InvalidInput)
def on_invalid_input(request, exc: InvalidInput):
    return api.create_response(request, exc.as_dict(), status=invalid_input_status(exc))


def validation_error_dict(exc: ValidationError) -> dict[str, Any]:
    """A pydantic error of one batch item in the shape of the API's validation errors."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or None
    message = first.get("msg", "Invalid input.")
    body = {"code": "validation_error", "message": f"{field}: {message}" if field else message}
    if field:
        body["field"] = field
    return body


def subscriber_not_found(subscriber_id: Any) -> ApiError:
    return ApiError(
        404,
        "subscriber_not_found",
        _("No subscriber %(id)s in this project.") % {"id": subscriber_id},
        field="id",
    )


def get_subscriber(project: Project, subscriber_id: UUID) -> Subscriber:
    subscriber = Subscriber.objects.for_project(project).filter(public_id=subscriber_id).first()
    if subscriber is None:
        raise subscriber_not_found(subscriber_id)
    return subscriber


def subscriber_out(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "id": subscriber.public_id,
        "phone": subscriber.phone,
        "wa_id": subscriber.wa_id,
        "bsuid": subscriber.bsuid,
        "external_id": subscriber.external_id,
        "name": subscriber.name,
        "email": subscriber.email,
        "language": subscriber.language,
        "country": subscriber.country,
        "timezone": subscriber.time_zone,
        "tags": tags_of(subscriber),
        "whatsapp_consent": subscriber.whatsapp_consent,
        "whatsapp_consent_at": subscriber.whatsapp_consent_at,
        "email_consent": subscriber.email_consent,
        "email_consent_at": subscriber.email_consent_at,
        "email_undeliverable": (
            {"at": subscriber.email_undeliverable_at, "reason": subscriber.email_undeliverable_reason}
            if subscriber.email_undeliverable_at
            else None
        ),
        "push_consent": subscriber.push_consent,
        "push_consent_at": subscriber.push_consent_at,
        "devices": subscriber.devices.active().count(),
        "last_inbound_at": subscriber.last_inbound_at,
        "created_at": subscriber.created_at,
        "updated_at": subscriber.updated_at,
    }


# --- subscribers -------------------------------------------------------------------------------


@router.post(
    "/subscribers",
    response={200: UpsertOut, 201: UpsertOut, **CONFLICT},
    summary="Create or update a subscriber",
)
def upsert(request, payload: SubscriberIn):
    """Upsert by phone, else by external id: 201 with `status: "created"` when the subscriber is new,
    200 when it existed: `status: "updated"` when anything was different, `"unchanged"` when not
    (`changed` says the same as a boolean). Sending the same body twice changes nothing.

    Fields left out are kept; tags are merged (a tag set to null is removed). A phone that is not a
    real number is a 422 with `field: "phone"`; a tag value of the wrong type is a 422 naming the tag
    and its type; phone and external id of two different subscribers is a 409. `whatsapp_opt_in` records
    an opt-in in the consent ledger (source `api`) and needs `evidence`; `email_consent` records an
    email opt-in (with `evidence`) or opt-out the same way.
    """
    data = clean_subscriber_data(request.project, payload.model_dump(exclude_unset=True))
    subscriber, status = upsert_subscriber(
        project=request.project, data=data, actor=request.actor, source=ConsentSource.API
    )
    body = {**subscriber_out(subscriber), "status": status, "changed": status != "unchanged"}
    return Status(201 if status == "created" else 200, body)


# What the bulk form compares items with (every profile field), and the public id to answer with.
SNAPSHOT_FIELDS = (*dict.fromkeys((*KEY_FIELDS, *PROFILE_COLUMNS)), "public_id")


class SubscriberBatch:
    """Applies bulk items in order, with the outcome of calling upsert_subscriber for each.

    Items that name no phone, external id or subscriber that an earlier item of the batch named
    are collected and applied together by the bulk form of the upsert (subscribers.upsert: a few
    statements per batch instead of ~15 per item); an item that repeats one of them first writes
    the collected ones, then goes through the single form, so it sees them. Both forms apply the
    same rules. Items that a snapshot of the batch shows to be a conflict or an unknown external id
    go through the single form too, in their own savepoint, so that the tag definitions they
    would create are rolled back with them.
    """

    def __init__(self, project: Project, actor: Actor):
        self.project, self.actor = project, actor
        self.definitions: dict[str, TagDefinition] | None = None
        self.pending: list[tuple[int, SubscriberData, Item]] = []
        self.results: dict[int, dict[str, Any]] = {}
        self.snapshot: list[dict[str, Any]] = []
        self.snapshot_fresh = False

    def run(self, items: list[tuple[int, SubscriberData]]) -> dict[int, dict[str, Any]]:
        self.load_existing(items)
        by_phone = {e["phone"]: e for e in self.snapshot if e["phone"]}
        by_external = {e["external_id"]: e for e in self.snapshot if e["external_id"]}
        touched: set[tuple[str, Any]] = set()  # identities named by earlier items of the batch
        for index, data in items:
            found = (by_phone.get(data.phone), by_external.get(data.external_id))
            identities = {("subscriber", e["id"]) for e in found if e is not None} | {
                key for key in (("phone", data.phone), ("external_id", data.external_id)) if key[1]
            }
            first_touch = not identities & touched
            touched |= identities
            if first_touch and self.plain(data, by_phone, by_external):
                try:
                    item = self.item(data)
                except InvalidInput as exc:
                    self.error(index, exc)
                    continue
                self.pending.append((index, data, item))
                continue
            self.flush()
            self.upsert_one(index, data)
        self.flush()
        return self.results

    def load_existing(self, items: list[tuple[int, SubscriberData]]) -> None:
        self.snapshot = Store(self.project).fetch_subscribers(
            [d.phone for _, d in items if d.phone],
            [d.external_id for _, d in items if d.external_id],
            SNAPSHOT_FIELDS,
        )
        self.snapshot_fresh = True

    def fresh_snapshot(self) -> list[dict[str, Any]] | None:
        """The snapshot, for the first write of the batch only (later ones read again)."""
        fresh, self.snapshot_fresh = self.snapshot_fresh, False
        return self.snapshot if fresh else None

    @staticmethod
    def plain(data: SubscriberData, by_phone: dict, by_external: dict) -> bool:
        """Whether the snapshot says the item applies without error (see the class)."""
        try:
            match(Item(phone=data.phone, external_id=data.external_id), {}, by_phone, by_external)
        except InvalidInput:
            return False
        return True

    def item(self, data: SubscriberData) -> Item:
        if not data.tags:
            return subscriber_item(self.project, data)
        if self.definitions is None:
            self.definitions = tagtypes.definitions(self.project)
        if all(str(name).strip().lower() in self.definitions for name in data.tags):
            return subscriber_item(self.project, data, known=self.definitions)
        # New definitions, in a savepoint: those of an item with a bad tag roll back with it.
        try:
            with transaction.atomic():
                return subscriber_item(self.project, data, known=self.definitions)
        except InvalidInput:
            self.definitions = None  # it may hold definitions now rolled back
            raise

    def error(self, index: int, exc: InvalidInput) -> None:
        self.results[index] = {"index": index, "error": exc.as_dict()}

    def done(self, index: int, public_id: Any, status: str) -> None:
        self.results[index] = {
            "index": index,
            "id": public_id,
            "status": status,
            "changed": status != "unchanged",
        }

    def upsert_one(self, index: int, data: SubscriberData) -> None:
        try:
            # Atomic itself: nested here it is a savepoint, so a bad item rolls back only itself.
            subscriber, status = upsert_subscriber(
                project=self.project, data=data, actor=self.actor, source=ConsentSource.API
            )
        except InvalidInput as exc:
            self.error(index, exc)
            return
        finally:
            self.snapshot_fresh = False
            if data.tags:
                self.definitions = None  # it may have created some
        self.done(index, subscriber.public_id, status)

    def flush(self) -> None:
        """Apply the collected items with the bulk form, a few statements for all."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        try:
            with transaction.atomic():
                applied = upsert_subscribers(
                    project=self.project,
                    items=[item for _, _, item in pending],
                    source=ConsentSource.API,
                    actor=self.actor,
                    fields=SNAPSHOT_FIELDS,
                    existing=self.fresh_snapshot(),
                )
        except (IntegrityError, DefinitionGone):
            # Another request created one of these phones or external ids meanwhile, or deleted
            # a tag: one by one, each item finds (or defines again) what it needs.
            self.definitions = None
            for index, data, _unused in pending:
                self.upsert_one(index, data)
            return
        for (index, _unused, _unused), result in zip(pending, applied.results, strict=True):
            if result.error is not None:
                self.error(index, result.error)
            else:
                self.done(index, result.public_id, result.status)


@router.post(
    "/subscribers/bulk",
    response={200: SubscriberBatchOut, **INVALID},
    exclude_none=True,
    summary="Create or update up to 1,000 subscribers",
)
def upsert_bulk(request, payload: SubscriberBatchIn):
    """Each item as in `POST /subscribers`. Answers 200 with one result per item, in order:
    `{"index", "id", "status": "created"|"updated"|"unchanged", "changed"}` or
    `{"index", "error": {code, message, field}}`. Valid items are applied, invalid ones leave nothing
    behind; the outcome is that of sending the items one after another (a phone that appears twice is
    created by the first item and updated by the second).
    """
    project = request.project
    results: dict[int, dict[str, Any]] = {}
    items: list[tuple[int, SubscriberData]] = []
    for index, raw in enumerate(payload.subscribers):
        try:
            item = SubscriberIn.model_validate(raw)
            items.append((index, clean_subscriber_data(project, item.model_dump(exclude_unset=True))))
        except ValidationError as exc:
            results[index] = {"index": index, "error": validation_error_dict(exc)}
        except InvalidInput as exc:
            results[index] = {"index": index, "error": exc.as_dict()}
    with transaction.atomic():
        results |= SubscriberBatch(project, request.actor).run(items)
    return {"results": [results[index] for index in range(len(payload.subscribers))]}


@router.get(
    "/subscribers",
    response={200: SubscriberList, **INVALID},
    summary="Find a subscriber by phone or external id",
)
def lookup(request, phone: str | None = None, external_id: str | None = None):
    """Give `phone` (normalized like `POST /subscribers`), `external_id`, or both (both must match).
    Answers `{"results": [...]}` with the matching subscriber, or an empty list.
    """
    if not phone and not external_id:
        raise ApiError(
            422, "validation_error", _("Give phone or external_id to look a subscriber up."), "phone"
        )
    qs = Subscriber.objects.for_project(request.project)
    if phone:
        qs = qs.filter(phone=normalize_phone(phone, request.project.default_country))
    if external_id:
        qs = qs.filter(external_id=external_id.strip())
    return {"results": [subscriber_out(s) for s in qs[:1]]}


@router.get(
    "/subscribers/{id}",
    response={200: SubscriberOut, **NOT_FOUND},
    summary="Get a subscriber",
)
def get(request, id: UUID):
    """The subscriber with all tags, its consent on each channel and its active push devices."""
    return subscriber_out(get_subscriber(request.project, id))


@router.patch(
    "/subscribers/{id}",
    response={200: SubscriberOut, **CONFLICT},
    summary="Update a subscriber's fields and tags",
)
def patch(request, id: UUID, payload: SubscriberPatch):
    """Only the fields in the body change. `tags` merge into the existing ones; a tag set to null is
    removed. A new phone must be a valid number no other subscriber has (else 422 / 409); a profile
    field set to null or "" is cleared; a new email address clears `email_undeliverable`. Nothing is
    written when any field or tag is invalid.
    """
    subscriber = get_subscriber(request.project, id)
    subscriber, _changed = update_subscriber(
        project=request.project,
        subscriber=subscriber,
        changes=payload.model_dump(exclude_unset=True),
        actor=request.actor,
    )
    return subscriber_out(subscriber)


def _consent(
    request, id: UUID, state: ConsentState, payload: ConsentIn | None, channel: ChannelName | None
) -> dict[str, Any]:
    body_channel = payload.channel if payload else None
    if channel and body_channel and channel != body_channel:
        raise ApiError(
            422,
            "validation_error",
            _("The query names the channel %(channel)r, the body %(body)r; give one.")
            % {"channel": channel, "body": body_channel},
            "channel",
        )
    subscriber = get_subscriber(request.project, id)
    change_consent(
        subscriber=subscriber,
        channel=ConsentChannel(channel or body_channel or ConsentChannel.WHATSAPP),
        state=state,
        source=ConsentSource.API,
        evidence=payload.evidence if payload else "",
        actor=request.actor,
    )
    return subscriber_out(subscriber)


@router.post(
    "/subscribers/{id}/opt-in",
    response={200: SubscriberOut, **NOT_FOUND},
    summary="Record an opt-in (WhatsApp, email or push)",
)
def opt_in(request, id: UUID, payload: ConsentIn, channel: ChannelName | None = None):
    """Writes a row to the consent ledger (source `api`, with your evidence and the API key as actor)
    and marks the subscriber opted in to marketing on `channel` (`whatsapp` when not given, in the
    body or the query). `evidence` is required (422 without). Opting in a subscriber who is already
    opted in changes nothing.
    """
    return _consent(request, id, ConsentState.OPTED_IN, payload, channel)


@router.post(
    "/subscribers/{id}/opt-out",
    response={200: SubscriberOut, **NOT_FOUND},
    summary="Record an opt-out (WhatsApp, email or push)",
)
def opt_out(request, id: UUID, payload: ConsentIn | None = None, channel: ChannelName | None = None):
    """Writes a row to the consent ledger (source `api`) and an `Unsubscribed` event; the subscriber
    gets no more marketing on `channel` (`whatsapp` when not given, in the body or the query).
    `evidence` is optional. Opting out twice changes nothing.
    """
    return _consent(request, id, ConsentState.OPTED_OUT, payload, channel)


@router.delete(
    "/subscribers/{id}",
    response={204: None, **NOT_FOUND},
    summary="Erase a subscriber (GDPR)",
)
def erase(request, id: UUID):
    """Deletes the subscriber with tags, events, consent history and messages, and scrubs the phone
    number and other identifiers from the rest of the project's data. The erasure itself is audited
    with the public id only. Afterwards `GET /subscribers/{id}` is 404. Not reversible.
    """
    erase_subscriber(subscriber=get_subscriber(request.project, id), actor=request.actor)
    return Status(204, None)


@router.get(
    "/subscribers/{id}/export",
    response={200: dict[str, Any], **NOT_FOUND},
    summary="Export everything stored about a subscriber (GDPR)",
)
def export(request, id: UUID):
    """Profile, tags, consent history and events as one JSON document. The export is audited."""
    return export_subscriber(subscriber=get_subscriber(request.project, id), actor=request.actor)


# --- events ------------------------------------------------------------------------------------


def event_out(event: Event, subscriber: Subscriber, *, duplicate: bool) -> dict[str, Any]:
    return {
        "id": str(event.pk),
        "name": event.name,
        "subscriber": {"id": subscriber.public_id},
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "attributes": event.attributes,
        "dedup_key": event.dedup_key,
        "duplicate": duplicate,
    }


def _ref_key(project: Project, item: EventIn) -> tuple[str, Any]:
    """The normalized identity an event names its subscriber by (and a dedup key checked before
    it is looked up)."""
    if item.dedup_key is not None:
        tagtypes.clean_text(item.dedup_key, field="dedup_key", what="dedup_key")
    ref = item.subscriber
    if ref.id is not None:
        return ("id", ref.id)
    if ref.phone is not None:
        return ("phone", normalize_phone(ref.phone, project.default_country, field="subscriber.phone"))
    external_id = ref.external_id.strip()
    return (
        "external_id",
        tagtypes.clean_text(external_id, field="subscriber.external_id", what="external_id"),
    )


def _resolve(project: Project, keys: list[tuple[str, Any]]) -> dict[tuple[str, Any], Subscriber]:
    """Subscribers for a batch of identities, in one query."""
    wanted = {kind: {value for k, value in keys if k == kind} for kind in ("id", "phone", "external_id")}
    condition = Q(pk__in=[])
    if wanted["id"]:
        condition |= Q(public_id__in=wanted["id"])
    if wanted["phone"]:
        condition |= Q(phone__in=wanted["phone"])
    if wanted["external_id"]:
        condition |= Q(external_id__in=wanted["external_id"])
    found: dict[tuple[str, Any], Subscriber] = {}
    for subscriber in Subscriber.objects.for_project(project).filter(condition):
        found[("id", subscriber.public_id)] = subscriber
        if subscriber.phone:
            found[("phone", subscriber.phone)] = subscriber
        if subscriber.external_id:
            found[("external_id", subscriber.external_id)] = subscriber
    return found


def event_subscriber_not_found(key: tuple[str, Any]) -> InvalidInput:
    kind, value = key
    label = {"id": "id", "phone": "phone", "external_id": "external id"}[kind]
    return InvalidInput(
        (
            _(
                "No subscriber with %(label)s %(value)s in this project. Events are only "
                "recorded for existing subscribers: create the subscriber first (POST "
                "/subscribers, with its opt-in if given)."
            )
            % {"label": label, "value": value}
        ),
        field=f"subscriber.{kind}",
        code="subscriber_not_found",
    )


EVENT_NOTE = (
    "The subscriber must exist: an unknown id, phone or external id is a 404 with code "
    "`subscriber_not_found`. Events never create subscribers, so nobody is added without consent."
)


@router.post(
    "/events",
    response={200: EventOut, 201: EventOut, **NOT_FOUND},
    summary="Record an event",
    tags=["events"],
    description=(
        "Records an event for one subscriber, named by exactly one of `id`, `phone` or `external_id`. "
        f"{EVENT_NOTE} Answers 201 with the event; with a `dedup_key` the project has seen before, "
        "nothing is recorded and the earlier event comes back with 200 and `duplicate: true`. "
        "Attribute values must fit the event's types (set by its first occurrence; 422 naming the "
        "attribute and the type otherwise)."
    ),
)
def create_event(request, payload: EventIn):
    project = request.project
    key = _ref_key(project, payload)
    subscriber = _resolve(project, [key]).get(key)
    if subscriber is None:
        raise ApiError(404, **event_subscriber_not_found(key).as_dict())
    if payload.dedup_key:
        existing = Event.objects.for_project(project).filter(dedup_key=payload.dedup_key).first()
        if existing is not None:
            owner = subscriber if existing.subscriber_id == subscriber.pk else existing.subscriber
            return Status(200, event_out(existing, owner, duplicate=True))
    event = record_event(
        project=project,
        subscriber=subscriber,
        name=payload.name,
        attributes=payload.attributes,
        occurred_at=payload.occurred_at,
        dedup_key=payload.dedup_key,
    )
    return Status(201, event_out(event, subscriber, duplicate=False))


@router.post(
    "/events/bulk",
    response={200: EventBatchOut, **INVALID},
    exclude_none=True,
    summary="Record up to 1,000 events",
    tags=["events"],
    description=(
        "Each item as in `POST /events`. Answers 200 with one result per item, in order: "
        '`{"index", "id", "status": "created"|"duplicate"}` or `{"index", "error": {code, message, '
        f"field}}}}`. Valid items are recorded, invalid ones are not. {EVENT_NOTE}"
    ),
)
def create_events_bulk(request, payload: EventBatchIn):
    project = request.project
    results: list[dict[str, Any] | None] = [None] * len(payload.events)
    planned: list[tuple[int, EventIn, tuple[str, Any]]] = []
    for index, raw in enumerate(payload.events):
        try:
            item = EventIn.model_validate(raw)
            planned.append((index, item, _ref_key(project, item)))
        except ValidationError as exc:
            results[index] = {"index": index, "error": validation_error_dict(exc)}
        except InvalidInput as exc:
            results[index] = {"index": index, "error": exc.as_dict()}
    subscribers = _resolve(project, [key for _, _, key in planned])
    wanted: list[tuple[int, NewEvent]] = []
    for index, item, key in planned:
        subscriber = subscribers.get(key)
        if subscriber is None:
            results[index] = {"index": index, "error": event_subscriber_not_found(key).as_dict()}
            continue
        wanted.append(
            (
                index,
                NewEvent(subscriber.pk, item.name, item.attributes, item.occurred_at, item.dedup_key or None),
            )
        )
    recorded = record_events(project=project, events=[event for _, event in wanted])
    for (index, _event), outcome in zip(wanted, recorded, strict=True):
        if isinstance(outcome, InvalidInput):
            results[index] = {"index": index, "error": outcome.as_dict()}
        else:
            results[index] = {
                "index": index,
                "id": str(outcome.event.pk),
                "status": "duplicate" if outcome.duplicate else "created",
            }
    return {"results": results}
