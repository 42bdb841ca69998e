"""The /api/v1/subscribers and /api/v1/events endpoints.

Every lookup starts from the API key's project (``request.project``): a subscriber
of another project is "not found", with the same answer as an id that never existed.
Writes go through subscribers.services, so the API validates exactly like the panel
and CSV imports; their ``InvalidInput`` errors become 422 (409 for conflicts, 404
for unknown references) with the ``{code, message, field}`` body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from ninja import Router, Status
from pydantic import ValidationError

from controlpanel.api import ApiError, ErrorOut, api
from controlpanel.models import Project
from controlpanel.services import Actor

from . import tags as tagtypes
from .errors import InvalidInput
from .models import (
    ConsentChange,
    ConsentChannel,
    ConsentSource,
    ConsentState,
    Event,
    Subscriber,
    TagDefinition,
    TagValue,
)
from .phones import normalize_phone
from .schemas import (
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
    subscribed_event,
    tags_of,
    update_subscriber,
    upsert_subscriber,
)

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
        404, "subscriber_not_found", f"No subscriber {subscriber_id} in this project.", field="id"
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
    an opt-in in the consent ledger (source `api`) and needs `evidence`.
    """
    data = clean_subscriber_data(request.project, payload.model_dump(exclude_unset=True))
    subscriber, status = upsert_subscriber(
        project=request.project, data=data, actor=request.actor, source=ConsentSource.API
    )
    body = {**subscriber_out(subscriber), "status": status, "changed": status != "unchanged"}
    return Status(201 if status == "created" else 200, body)


class _DefinitionGone(Exception):
    """A tag definition that a batch writes values of was deleted after it was planned."""


@dataclass
class Planned:
    """One bulk item checked against the batch's snapshot, ready to be written with the others."""

    index: int
    data: SubscriberData
    subscriber: Subscriber | None  # None: a new subscriber
    profile: dict[str, str]  # changed fields of an existing subscriber
    tags: list[tuple[TagDefinition, Any]]  # value None removes the tag
    is_new: bool = False


class SubscriberBatch:
    """Applies bulk items in order, with the outcome of calling upsert_subscriber for each.

    An item whose phone, external id and subscriber no earlier item of the batch touched is
    checked against a snapshot read once per batch; if it only creates a subscriber or changes
    profile fields and custom tags, it is written together with the others like it (a few
    statements per batch instead of ~15 per item), and if it changes nothing, nothing is
    written. Every other item (identity changes, opt-ins of existing subscribers, built-in tags,
    repeats within the batch) goes through upsert_subscriber after the collected ones are
    written, so it sees them.
    """

    def __init__(self, project: Project, actor: Actor):
        self.project, self.actor = project, actor
        self.definitions: dict[str, TagDefinition] | None = None
        self.pending: list[Planned] = []
        self.results: dict[int, dict[str, Any]] = {}
        self.by_phone: dict[str, Subscriber] = {}
        self.by_external_id: dict[str, Subscriber] = {}
        self.tag_rows: dict[tuple[int, int], list[TagValue]] = {}

    def run(self, items: list[tuple[int, SubscriberData]]) -> dict[int, dict[str, Any]]:
        self.load_existing(items)
        touched: set[tuple[str, Any]] = set()  # identities named by earlier items of the batch
        for index, data in items:
            identities = self.identities(data)
            first_touch = not identities & touched
            touched |= identities
            if first_touch:
                try:
                    planned = self.plan(index, data)
                except InvalidInput as exc:
                    self.results[index] = {"index": index, "error": exc.as_dict()}
                    continue
                if planned is not None:
                    self.pending.append(planned)
                    continue
            self.flush()
            self.upsert_one(index, data)
        self.flush()
        return self.results

    def load_existing(self, items: list[tuple[int, SubscriberData]]) -> None:
        phones = [d.phone for _, d in items if d.phone]
        external_ids = [d.external_id for _, d in items if d.external_id]
        existing = Subscriber.objects.for_project(self.project).filter(
            Q(phone__in=phones) | Q(external_id__in=external_ids)
        )
        for subscriber in existing:
            if subscriber.phone:
                self.by_phone[subscriber.phone] = subscriber
            if subscriber.external_id:
                self.by_external_id[subscriber.external_id] = subscriber
        if any(d.tags for _, d in items):
            for row in TagValue.objects.for_project(self.project).filter(subscriber__in=existing):
                self.tag_rows.setdefault((row.subscriber_id, row.tag_id), []).append(row)

    def identities(self, data: SubscriberData) -> set[tuple[str, Any]]:
        """What an item may touch: its phone and external id, and the subscribers they name now."""
        found = {self.by_phone.get(data.phone), self.by_external_id.get(data.external_id)} - {None}
        return {("subscriber", s.pk) for s in found} | {
            key for key in (("phone", data.phone), ("external_id", data.external_id)) if key[1]
        }

    def plan(self, index: int, data: SubscriberData) -> Planned | None:
        """The item's writes if it is plain, else None (upsert_subscriber will apply it)."""
        if data.phone:
            subscriber = self.by_phone.get(data.phone)
            if subscriber is None and data.external_id in self.by_external_id:
                return None  # the phone of a known external id changes
        else:
            subscriber = self.by_external_id.get(data.external_id)
            if subscriber is None:
                return None  # upsert_subscriber explains that a phone is needed
        if subscriber is not None:
            if data.external_id and subscriber.external_id != data.external_id:
                return None
            if data.opt_in_evidence and subscriber.whatsapp_consent != ConsentState.OPTED_IN:
                return None
        tags = self.plan_tags(data.tags)
        if tags is None:
            return None
        if subscriber is None:
            return Planned(index, data, None, data.profile, tags, is_new=True)
        profile = {k: v for k, v in data.profile.items() if getattr(subscriber, k) != v}
        changed_tags = [
            (definition, value)
            for definition, value in tags
            if not tagtypes.same_values(
                self.tag_rows.get((subscriber.pk, definition.pk), []), definition.type, value
            )
        ]
        return Planned(index, data, subscriber, profile, changed_tags)

    def plan_tags(self, tags: dict[str, Any]) -> list[tuple[TagDefinition, Any]] | None:
        """Typed values of custom tags, creating new definitions like set_tags; None: built-in tags."""
        if not tags:
            return []
        if self.definitions is None:
            self.definitions = tagtypes.definitions(self.project)
        checked: dict[str, tuple[str, str | None, Any, Any]] = {}
        tz = ZoneInfo(self.project.time_zone)  # a datetime without an offset is the project's
        for raw_name, raw_value in tags.items():
            name = tagtypes.validate_tag_name(str(raw_name))
            if tagtypes.builtin(name) or name.lower() in checked:
                return None
            known = self.definitions.get(name.lower())
            if raw_value is None:
                checked[name.lower()] = (name, None, None, None)
                continue
            type_ = known.type if known else tagtypes.infer_type(raw_value)
            checked[name.lower()] = (name, type_, raw_value, tagtypes.coerce(name, type_, raw_value, tz=tz))
        planned = [(self.definitions[key], c[3]) for key, c in checked.items() if key in self.definitions]
        new = [c for key, c in checked.items() if key not in self.definitions and c[2] is not None]
        tagtypes.check_new_definitions(
            self.project, {c[0].lower() for c in new}, existing=len(self.definitions)
        )
        if new:
            with transaction.atomic():  # definitions of an item that turns out invalid roll back
                for name, type_, raw_value, value in new:
                    definition = tagtypes.get_or_create_definition(
                        self.project, name, raw_value, limits_checked=True
                    )
                    if definition.type != type_:  # another request defined it meanwhile
                        value = tagtypes.coerce(definition.name, definition.type, raw_value, tz=tz)
                    planned.append((definition, value))
        for definition, _ in planned:
            self.definitions[definition.name.lower()] = definition
        return planned

    def upsert_one(self, index: int, data: SubscriberData) -> None:
        try:
            # Atomic itself: nested here it is a savepoint, so a bad item rolls back only itself.
            subscriber, status = upsert_subscriber(
                project=self.project, data=data, actor=self.actor, source=ConsentSource.API
            )
        except InvalidInput as exc:
            self.results[index] = {"index": index, "error": exc.as_dict()}
            return
        finally:
            if data.tags:
                self.definitions = None  # set_tags may have created some
        self.results[index] = {
            "index": index,
            "id": subscriber.public_id,
            "status": status,
            "changed": status != "unchanged",
        }

    def flush(self) -> None:
        """Write the collected items as upsert_subscriber would, a few statements for all."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        try:
            with transaction.atomic():
                self.write(pending)
        except (IntegrityError, _DefinitionGone):
            # Another request created one of these phones or external ids meanwhile, or deleted
            # a tag: one by one, each item finds (or defines again) what it needs.
            self.definitions = None
            for planned in pending:
                self.upsert_one(planned.index, planned.data)
            return
        for planned in pending:
            changed = planned.is_new or bool(planned.profile or planned.tags)
            self.results[planned.index] = {
                "index": planned.index,
                "id": planned.subscriber.public_id,
                "status": "created" if planned.is_new else "updated" if changed else "unchanged",
                "changed": changed,
            }

    def write(self, pending: list[Planned]) -> None:
        # As set_tags: removing a value (None) of a tag deleted meanwhile needs no hold.
        used = {definition.pk for p in pending for definition, value in p.tags if value is not None}
        if used - tagtypes.hold_definitions(used):
            raise _DefinitionGone
        now = timezone.now()
        new = [p for p in pending if p.is_new]
        opted_in, unknown = ConsentState.OPTED_IN, ConsentState.UNKNOWN
        created = Subscriber.objects.bulk_create(
            [
                Subscriber(
                    project=self.project,
                    phone=p.data.phone,
                    external_id=p.data.external_id,
                    whatsapp_consent=opted_in if p.data.opt_in_evidence else unknown,
                    whatsapp_consent_at=now if p.data.opt_in_evidence else None,
                    **p.profile,
                )
                for p in new
            ]
        )
        for planned, subscriber in zip(new, created, strict=True):
            planned.subscriber = subscriber
        updates: dict[tuple[str, ...], list[Subscriber]] = {}
        for p in pending:
            if not p.is_new and p.profile:
                for key, value in p.profile.items():
                    setattr(p.subscriber, key, value)
                p.subscriber.updated_at = now
                updates.setdefault(tuple(sorted(p.profile)), []).append(p.subscriber)
        for fields, subscribers in updates.items():
            Subscriber.objects.bulk_update(subscribers, [*fields, "updated_at"])
        stale = [
            row.pk
            for p in pending
            for definition, _ in p.tags
            for row in self.tag_rows.get((p.subscriber.pk, definition.pk), [])
        ]
        if stale:
            TagValue.objects.filter(pk__in=stale).delete()
        TagValue.objects.bulk_create(
            [
                TagValue(project=self.project, subscriber=p.subscriber, tag=definition, **columns)
                for p in pending
                for definition, value in p.tags
                if value is not None
                for columns in tagtypes.value_columns(definition.type, value)
            ]
        )
        ConsentChange.objects.bulk_create(
            [
                ConsentChange(
                    project=self.project,
                    subscriber=p.subscriber,
                    channel=ConsentChannel.WHATSAPP,
                    state=ConsentState.OPTED_IN,
                    source=ConsentSource.API,
                    evidence=p.data.opt_in_evidence,
                    actor_user=self.actor.user,
                    actor_label=self.actor.display[:200],
                )
                for p in new
                if p.data.opt_in_evidence
            ]
        )
        record_events(
            project=self.project,
            events=[
                subscribed_event(subscriber_id=p.subscriber.pk, source=ConsentSource.API, at=now) for p in new
            ],
        )


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
        raise ApiError(422, "validation_error", "Give phone or external_id to look a subscriber up.", "phone")
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
    """The subscriber with all tags and the WhatsApp consent state."""
    return subscriber_out(get_subscriber(request.project, id))


@router.patch(
    "/subscribers/{id}",
    response={200: SubscriberOut, **CONFLICT},
    summary="Update a subscriber's fields and tags",
)
def patch(request, id: UUID, payload: SubscriberPatch):
    """Only the fields in the body change. `tags` merge into the existing ones; a tag set to null is
    removed. A new phone must be a valid number no other subscriber has (else 422 / 409); a profile
    field set to null or "" is cleared. Nothing is written when any field or tag is invalid.
    """
    subscriber = get_subscriber(request.project, id)
    subscriber, _ = update_subscriber(
        project=request.project,
        subscriber=subscriber,
        changes=payload.model_dump(exclude_unset=True),
        actor=request.actor,
    )
    return subscriber_out(subscriber)


def _consent(request, id: UUID, state: ConsentState, payload: ConsentIn | None) -> dict[str, Any]:
    subscriber = get_subscriber(request.project, id)
    change_consent(
        subscriber=subscriber,
        channel=ConsentChannel.WHATSAPP,
        state=state,
        source=ConsentSource.API,
        evidence=payload.evidence if payload else "",
        actor=request.actor,
    )
    return subscriber_out(subscriber)


@router.post(
    "/subscribers/{id}/opt-in",
    response={200: SubscriberOut, **NOT_FOUND},
    summary="Record a WhatsApp opt-in",
)
def opt_in(request, id: UUID, payload: ConsentIn):
    """Writes a row to the consent ledger (source `api`, with your evidence and the API key as actor)
    and marks the subscriber opted in to WhatsApp marketing. `evidence` is required (422 without).
    Opting in a subscriber who is already opted in changes nothing.
    """
    return _consent(request, id, ConsentState.OPTED_IN, payload)


@router.post(
    "/subscribers/{id}/opt-out",
    response={200: SubscriberOut, **NOT_FOUND},
    summary="Record a WhatsApp opt-out",
)
def opt_out(request, id: UUID, payload: ConsentIn | None = None):
    """Writes a row to the consent ledger (source `api`) and an `Unsubscribed` event; the subscriber
    gets no more WhatsApp marketing. `evidence` is optional. Opting out twice changes nothing.
    """
    return _consent(request, id, ConsentState.OPTED_OUT, payload)


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
        f"No subscriber with {label} {value} in this project. Events are only recorded for existing "
        "subscribers: create the subscriber first (POST /subscribers, with its opt-in if given).",
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
    for (index, _), outcome in zip(wanted, recorded, strict=True):
        if isinstance(outcome, InvalidInput):
            results[index] = {"index": index, "error": outcome.as_dict()}
        else:
            results[index] = {
                "index": index,
                "id": str(outcome.event.pk),
                "status": "duplicate" if outcome.duplicate else "created",
            }
    return {"results": results}
