"""Writes on the audience. Typed, keyword-only, transactional; side effects on commit."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from controlpanel.models import Project
from controlpanel.services import Actor, record_audit

from . import events as eventdefs
from . import tags as tagtypes
from . import upsert
from .errors import InvalidInput
from .holds import hold_subscribers
from .models import (
    ConsentChange,
    ConsentChannel,
    ConsentSource,
    ConsentState,
    Event,
    Subscriber,
    TagDefinition,
    TagType,
    TagValue,
)
from .phones import normalize_phone
from .profile import address_reset, clean_profile
from .signals import EventRecorded, SubscriberErased, event_recorded, subscriber_erased

UpsertStatus = Literal["created", "updated", "unchanged"]
MAX_EXTERNAL_ID = 200


@dataclass
class SubscriberData:
    """Validated, normalized input for one subscriber (from the API, a form or a CSV row)."""

    phone: str | None = None
    external_id: str | None = None
    profile: dict[str, str] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    tags_are_text: bool = False  # CSV cells and form fields: parse text into each tag's type
    opt_in_evidence: str | None = None
    email_consent: ConsentState | None = None  # None: leave as it is
    email_evidence: str = ""


def clean_external_id(value: Any) -> str | None:
    """Your own system's id for a subscriber; blank means none."""
    if value is None:
        return None
    external_id = tagtypes.clean_text(str(value).strip(), field="external_id", what="The external id")
    if len(external_id) > MAX_EXTERNAL_ID:
        raise InvalidInput(
            _("external_id is longer than %(max_external_id)s characters.")
            % {"max_external_id": MAX_EXTERNAL_ID},
            field="external_id",
        )
    return external_id or None


def clean_subscriber_data(project: Project, raw: dict[str, Any]) -> SubscriberData:
    """Validate an API-shaped dict (phone, external_id, name, ..., tags, whatsapp_opt_in)."""
    phone = raw.get("phone")
    external_id = raw.get("external_id")
    if not phone and not external_id:
        raise InvalidInput(
            _("A phone number (or an external id of an existing subscriber) is required."), field="phone"
        )
    data = SubscriberData(
        phone=normalize_phone(str(phone), project.default_country) if phone else None,
        external_id=clean_external_id(external_id),
        profile=clean_profile({**raw, "time_zone": raw.get("timezone", raw.get("time_zone"))}),
        tags=raw.get("tags") or {},
    )
    if not isinstance(data.tags, dict):
        raise InvalidInput(_("tags must be an object of tag name to value."), field="tags")
    opt_in = raw.get("whatsapp_opt_in")
    if opt_in is not None:
        evidence = opt_in.get("evidence") if isinstance(opt_in, dict) else None
        if not evidence or not str(evidence).strip():
            raise InvalidInput(
                _("whatsapp_opt_in needs evidence: how and when the person agreed."),
                field="whatsapp_opt_in.evidence",
            )
        data.opt_in_evidence = tagtypes.clean_text(
            str(evidence).strip(), field="whatsapp_opt_in.evidence", what="The evidence"
        )
    email_consent = raw.get("email_consent")
    if email_consent is not None:
        data.email_consent, data.email_evidence = clean_consent_input(email_consent, field="email_consent")
    return data


def clean_consent_input(raw: Any, *, field: str) -> tuple[ConsentState, str]:
    """``{"state": "opted_in"|"opted_out", "evidence": ...}`` of an API body: the state and the
    evidence, which an opt-in needs (as ``change_consent`` requires it)."""
    if not isinstance(raw, dict):
        raise InvalidInput(
            _("%(field)s must be an object with state and evidence.") % {"field": field}, field=field
        )
    state = raw.get("state")
    if state not in (ConsentState.OPTED_IN, ConsentState.OPTED_OUT):
        raise InvalidInput(
            _("%(field)s.state must be opted_in or opted_out.") % {"field": field}, field=f"{field}.state"
        )
    evidence = tagtypes.clean_text(
        str(raw.get("evidence") or "").strip(), field=f"{field}.evidence", what="The evidence"
    )
    if state == ConsentState.OPTED_IN and not evidence:
        raise InvalidInput(
            _("Opting in to %(value)s needs evidence: how and when the person agreed.")
            % {"value": field.removesuffix("_consent")},
            field=f"{field}.evidence",
        )
    return ConsentState(state), evidence


def find_subscriber(project: Project, *, phone: str | None, external_id: str | None) -> Subscriber | None:
    """The subscriber with this phone, else with this external id. Both given but on two people: error."""
    qs = Subscriber.objects.for_project(project)
    by_phone = qs.filter(phone=phone).first() if phone else None
    by_external = qs.filter(external_id=external_id).first() if external_id else None
    if by_phone and by_external and by_phone.pk != by_external.pk:
        raise upsert.conflict(phone, external_id)
    return by_phone or by_external


def subscriber_item(
    project: Project, data: SubscriberData, *, known: dict[str, TagDefinition] | None = None
) -> upsert.Item:
    """API or panel input as the upsert's Item: tags typed (new definitions made, within the
    limits), built-in tags folded into the profile and external id. ``known``: all of the
    project's definitions, kept up to date (the bulk API reads them once per batch)."""
    profile = dict(data.profile)
    external_id = data.external_id
    tags: dict[int, tuple[tuple, ...]] = {}
    planned = plan_tags(project=project, tags=data.tags, from_text=data.tags_are_text, known=known)
    for target, value in planned:
        if isinstance(target, tagtypes.BuiltinTag):
            if target.field == "external_id":
                external_id = clean_external_id(value) or external_id
            else:
                profile[target.field] = clean_profile({target.field: value or ""})[target.field]
        else:
            tags[target.pk] = tagtypes.value_tuples(target.type, value) if value is not None else ()
    evidence = data.opt_in_evidence
    return upsert.Item(
        phone=data.phone,
        external_id=external_id,
        profile=profile,
        tags=tags,
        consent=ConsentState.OPTED_IN if evidence else None,
        evidence=evidence or "",
        email_consent=data.email_consent,
        email_evidence=data.email_evidence,
    )


@transaction.atomic
def upsert_subscriber(
    *, project: Project, data: SubscriberData, actor: Actor, source: ConsentSource = ConsentSource.API
) -> tuple[Subscriber, UpsertStatus]:
    """Create or update a subscriber by phone (or external id), with tags and opt-in: the rules
    of subscribers.upsert, as the bulk API, the import and WhatsApp inbound apply them.

    Idempotent: the same input twice leaves the same state, the second call says "unchanged".
    Raises InvalidInput, with nothing written, for any bad field or tag.
    """
    item = subscriber_item(project, data)
    subscriber_id, status = upsert.upsert_subscriber(project=project, item=item, source=source, actor=actor)
    return Subscriber.objects.get(pk=subscriber_id), status


@transaction.atomic
def set_tags(
    *, project: Project, subscriber: Subscriber, tags: dict[str, Any], from_text: bool = False
) -> bool:
    """Set (or with None / "" remove) tags of one subscriber. Returns whether anything changed.

    All or nothing: a bad tag leaves the subscriber as it was and no new tag definition behind
    (definitions are created in the same transaction). New definitions count against the
    limits of tags.check_new_definitions. A date and time without an offset is the project's
    local time, whoever calls (actors included).
    """
    planned = plan_tags(project=project, tags=tags, from_text=from_text)
    return _write_tags(project, subscriber, planned)


def plan_tags(
    *,
    project: Project,
    tags: dict[str, Any],
    from_text: bool = False,
    known: dict[str, TagDefinition] | None = None,
) -> list[tuple[TagDefinition | tagtypes.BuiltinTag, Any]]:
    """Each tag's definition (made if new) and typed value (None: remove), in the caller's
    transaction; InvalidInput names the tag. ``known``: all of the project's definitions by
    lower-cased name, if the caller has them (new ones are added)."""
    if not tags:
        return []
    tz = zoneinfo.ZoneInfo(project.time_zone)
    named = [(tagtypes.validate_tag_name(str(raw_name)), raw_value) for raw_name, raw_value in tags.items()]
    cached = known is not None
    if known is None:
        known = tagtypes.definitions(project, names=[name for name, _ in named])
    tagtypes.check_new_definitions(
        project,
        {
            name.lower()
            for name, raw_value in named
            if tagtypes.builtin(name) is None
            and name.lower() not in known
            and not _removes(raw_value, from_text=from_text)
        },
        existing=len(known) if cached else None,
    )
    planned: list[tuple[TagDefinition | tagtypes.BuiltinTag, Any]] = []
    for name, raw_value in named:
        builtin = tagtypes.builtin(name)
        if builtin is not None:
            if not builtin.writable:
                raise InvalidInput(
                    _("Tag %(name)r is maintained by the platform.") % {"name": builtin.name},
                    field=f"tags.{name}",
                )
            value = raw_value
            if value is not None and not isinstance(value, str):
                raise InvalidInput(
                    _("Tag %(name)r expects string, got %(value)r.") % {"name": builtin.name, "value": value},
                    field=f"tags.{name}",
                )
            planned.append((builtin, value))
            continue
        if _removes(raw_value, from_text=from_text):
            definition = known.get(name.lower())
            if definition is not None:
                planned.append((definition, None))
            continue
        definition = known.get(name.lower()) or tagtypes.get_or_create_definition(
            project, name, raw_value, from_text=from_text, limits_checked=True
        )
        value = (
            tagtypes.parse_text(definition.name, definition.type, str(raw_value), tz=tz)
            if from_text
            else tagtypes.coerce(definition.name, definition.type, raw_value, tz=tz)
        )
        if cached:
            known[definition.name.lower()] = definition
        planned.append((definition, value))
    return planned


def _removes(raw_value: Any, *, from_text: bool) -> bool:
    return raw_value is None or (from_text and str(raw_value).strip() == "")


def _write_tags(
    project: Project, subscriber: Subscriber, planned: list[tuple[TagDefinition | tagtypes.BuiltinTag, Any]]
) -> bool:
    # Removing a value (None) of a tag deleted meanwhile is done already: only writes need it.
    definitions = [t for t, v in planned if isinstance(t, TagDefinition) and v is not None]
    held = tagtypes.hold_definitions(d.pk for d in definitions)
    if definitions and not hold_subscribers([subscriber.pk]):
        raise _subscriber_gone()
    for definition in definitions:
        if definition.pk not in held:
            raise InvalidInput(
                _("The tag %(name)r was deleted meanwhile; send the change again.")
                % {"name": definition.name},
                field=f"tags.{definition.name}",
                code="conflict",
            )
    changed = False
    profile_changes = {}
    for target, value in planned:
        if isinstance(target, tagtypes.BuiltinTag):
            if target.field == "external_id":
                new = clean_external_id(value)
            else:
                new = clean_profile({target.field: value or ""})[target.field]
            if getattr(subscriber, target.field) != new:
                if target.field == "external_id" and new:
                    taken = Subscriber.objects.for_project(project).filter(external_id=new)
                    if taken.exclude(pk=subscriber.pk).exists():
                        raise InvalidInput(
                            _("Another subscriber has the external id %(new)r.") % {"new": new},
                            field="external_id",
                            code="conflict",
                        )
                profile_changes[target.field] = new
            continue
        existing = list(TagValue.objects.filter(subscriber=subscriber, tag=target))
        if tagtypes.same_values(existing, target.type, value):
            continue
        TagValue.objects.filter(subscriber=subscriber, tag=target).delete()
        if value is not None:
            TagValue.objects.bulk_create(
                [
                    TagValue(project=project, subscriber=subscriber, tag=target, **cols)
                    for cols in tagtypes.value_columns(target.type, value)
                ]
            )
        changed = True
    if profile_changes:
        if "email" in profile_changes:
            profile_changes.update(address_reset())
        for key, value in profile_changes.items():
            setattr(subscriber, key, value)
        subscriber.save(update_fields=[*profile_changes, "updated_at"])
        changed = True
    return changed


def _taken(other: Subscriber, what: str, field: str) -> InvalidInput:
    exc = InvalidInput(
        _("%(other)s has this %(what)s already.") % {"other": other, "what": what},
        field=field,
        code="conflict",
    )
    exc.other = other  # type: ignore[attr-defined]  # the panel links to them
    return exc


@transaction.atomic
def update_subscriber(
    *,
    project: Project,
    subscriber: Subscriber,
    changes: dict[str, Any],
    actor: Actor,
    source: ConsentSource = ConsentSource.API,
) -> tuple[Subscriber, list[str]]:
    """Edit one subscriber (API PATCH, the panel's edit form): only the keys present change.

    Keys as in the API: phone, external_id, name, email, language, country, timezone, tags
    (merged; None removes one) and whatsapp_opt_in ({"evidence": ...}). A changed email address
    is no longer undeliverable (``profile.address_reset``). A phone cannot be removed, a phone or
    external id of another subscriber is a conflict (the error carries that subscriber as
    ``other``). All or nothing. Returns the subscriber as saved and the
    names of what changed; audited when anything did.
    """
    subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
    mine = Subscriber.objects.for_project(project).exclude(pk=subscriber.pk)
    changed: list[str] = []
    old_phone = subscriber.phone
    if "phone" in changes:
        if changes["phone"]:
            phone = normalize_phone(str(changes["phone"]), project.default_country)
            if phone != subscriber.phone:
                other = mine.filter(phone=phone).first()
                if other is not None:
                    raise _taken(other, "phone number", "phone")
                subscriber.phone = phone
                changed.append("phone")
        elif subscriber.phone:
            raise InvalidInput(
                _("The phone number cannot be removed; erase the subscriber instead."), field="phone"
            )
    if "external_id" in changes:
        external_id = clean_external_id(changes["external_id"])
        if external_id != subscriber.external_id:
            other = mine.filter(external_id=external_id).first() if external_id else None
            if other is not None:
                raise _taken(other, "external id", "external_id")
            subscriber.external_id = external_id
            changed.append("external_id")
    profile_input = {
        ("time_zone" if key == "timezone" else key): value or ""
        for key, value in changes.items()
        if key in ("name", "email", "language", "country", "timezone")
    }
    for key, value in clean_profile(profile_input).items():
        if getattr(subscriber, key) != value:
            setattr(subscriber, key, value)
            changed.append(key)
    opt_in = changes.get("whatsapp_opt_in")
    if changed:
        written = list(changed)
        if "email" in changed:
            for key, value in address_reset().items():
                setattr(subscriber, key, value)
                written.append(key)
        try:
            with transaction.atomic():
                subscriber.save(update_fields=[*written, "updated_at"])
        except IntegrityError:
            raise InvalidInput(
                _("Another subscriber just took this phone or external id; retry."), code="conflict"
            ) from None
    if changes.get("tags") and set_tags(project=project, subscriber=subscriber, tags=changes["tags"]):
        changed.append("tags")
    if opt_in and subscriber.whatsapp_consent != ConsentState.OPTED_IN:
        evidence = opt_in.get("evidence") if isinstance(opt_in, dict) else None
        change_consent(
            subscriber=subscriber,
            channel=ConsentChannel.WHATSAPP,
            state=ConsentState.OPTED_IN,
            source=source,
            evidence=tagtypes.clean_text(
                str(evidence or ""), field="whatsapp_opt_in.evidence", what="The evidence"
            ),
            actor=actor,
        )
        changed.append("whatsapp_consent")
    if "phone" in changed:
        record_audit(
            project=project,
            actor=actor,
            action="subscriber.phone_changed",
            obj=subscriber,
            changes={"phone": [old_phone, subscriber.phone]},
        )
    if changed:
        record_audit(
            project=project,
            actor=actor,
            action="subscriber.updated",
            obj=subscriber,
            changes={"fields": changed},
        )
    return subscriber, changed


def clean_new_tag(*, project: Project, name: str, type: str, description: str = "") -> tuple[str, str]:
    """The checked name and description of a tag to define; InvalidInput names the field."""
    try:
        name = tagtypes.validate_tag_name(name)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="name", code=exc.code) from None
    if type not in TagType.values:
        raise InvalidInput(_("Unknown tag type %(type)r.") % {"type": type}, field="type")
    description = tagtypes.clean_text(
        str(description or "").strip(), field="description", what="The description"
    )
    if len(description) > 255:
        raise InvalidInput(_("The description is longer than 255 characters."), field="description")
    if tagtypes.builtin(name) is not None:
        raise InvalidInput(_("%(name)r is a built-in tag.") % {"name": name}, field="name", code="conflict")
    if TagDefinition.objects.for_project(project).filter(name__iexact=name).exists():
        raise InvalidInput(
            _("A tag named %(name)r exists already.") % {"name": name}, field="name", code="conflict"
        )
    tagtypes.check_new_definitions(project, [name])
    return name, description


@transaction.atomic
def create_tag(
    *, project: Project, name: str, type: TagType | str, actor: Actor, description: str = ""
) -> TagDefinition:
    """Define a custom tag before any value uses it (the panel's tags page). Audited.

    Raises InvalidInput for a bad or taken name (field "name"), an unknown type, or a project at
    its limit of tags (tags.check_new_definitions).
    """
    name, description = clean_new_tag(project=project, name=name, type=type, description=description)
    try:
        with transaction.atomic():
            definition = TagDefinition.objects.create(
                project=project, name=name, type=type, description=description
            )
    except IntegrityError:  # the same name, just now
        raise InvalidInput(
            _("A tag named %(name)r exists already.") % {"name": name}, field="name", code="conflict"
        ) from None
    _audit_tag(project, actor, "tag.created", definition)
    return definition


def _audit_tag(project: Project, actor: Actor, action: str, definition: TagDefinition) -> None:
    changes = {"name": definition.name, "type": definition.type}
    record_audit(project=project, actor=actor, action=action, obj=definition, changes=changes)


DELETE_TAG_WAIT_MS = 5000


def delete_tag(*, project: Project, definition: TagDefinition, actor: Actor) -> int:
    """Delete a custom tag with all its values; returns how many values went.

    The definition is locked first: writers of tag values hold the definitions they write
    (tags.hold_definitions), so this waits for them, and later ones find it gone. Writers that
    overlap without a gap (the chunks of a running import) would keep it waiting for as long
    as they run, so after DELETE_TAG_WAIT_MS it gives up with a conflict (InvalidInput).
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute(f"SET LOCAL lock_timeout = '{DELETE_TAG_WAIT_MS}ms'")
        mine = TagDefinition.objects.for_project(project).select_for_update()
        try:
            with transaction.atomic():
                locked = mine.filter(pk=definition.pk).first()
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            raise InvalidInput(
                (
                    _(
                        "The tag %(name)r is being written right now (an import may be running); try "
                        "again when it has finished."
                    )
                    % {"name": definition.name}
                ),
                code="conflict",
            ) from None
        if locked is None:
            return 0
        _audit_tag(project, actor, "tag.deleted", locked)
        removed = TagValue.objects.for_project(project).filter(tag=locked).delete()[0]
        locked.delete()
    return removed


def tags_of(subscriber: Subscriber) -> dict[str, Any]:
    """All tags of a subscriber as JSON values: built-in ones first, then custom ones by name."""
    values: dict[str, Any] = {
        t.name: tagtypes.builtin_value(t, subscriber) for t in tagtypes.BUILTIN_TAGS.values()
    }
    rows: dict[int, list[TagValue]] = {}
    for row in subscriber.tag_values.select_related("tag").order_by("tag__name", "id"):
        rows.setdefault(row.tag_id, []).append(row)
    for group in rows.values():
        definition = group[0].tag
        values[definition.name] = tagtypes.display_value(definition.type, group)
    return values


@transaction.atomic
def change_consent(
    *,
    subscriber: Subscriber,
    channel: ConsentChannel,
    state: ConsentState,
    source: ConsentSource,
    evidence: str,
    actor: Actor,
    at: datetime | None = None,
) -> ConsentChange | None:
    """Record a consent change in the ledger and on the subscriber. Unchanged state: no row.

    ``at`` is when the person expressed it (e.g. the time of their STOP message), so that
    a late-arriving older message cannot override a newer wish; default: now.
    """
    if state == ConsentState.OPTED_IN and not (evidence or "").strip():
        raise InvalidInput(_("Opting in needs evidence: how and when the person agreed."), field="evidence")
    tagtypes.clean_text(evidence or "", field="evidence", what="The evidence")
    locked = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
    # One rule for every channel: the state lives in <channel>_consent / <channel>_consent_at.
    state_field, at_field = f"{channel}_consent", f"{channel}_consent_at"
    if getattr(locked, state_field) == state:
        return None
    current_at = getattr(locked, at_field)
    if at is not None and current_at is not None and at < current_at:
        return None  # an older wish arriving late
    now = timezone.now()
    Subscriber.objects.filter(pk=locked.pk).update(
        **{state_field: state, at_field: at or now, "updated_at": now}
    )
    setattr(subscriber, state_field, state)
    setattr(subscriber, at_field, at or now)
    change = ConsentChange.objects.create(
        project_id=subscriber.project_id,
        subscriber=subscriber,
        channel=channel,
        state=state,
        source=source,
        evidence=(evidence or "").strip(),
        actor_user=actor.user,
        actor_label=actor.display[:200],
    )
    if state == ConsentState.OPTED_OUT:
        item = unsubscribed_event(subscriber_id=subscriber.pk, channel=channel, source=source)
        _record(subscriber.project, item)
    return change


@dataclass(frozen=True)
class NewEvent:
    """One event to record. The subscriber must belong to the project the caller records for."""

    subscriber_id: int
    name: str
    attributes: dict[str, Any] | None = None
    occurred_at: datetime | None = None  # naive: the project's local time; None: now
    dedup_key: str | None = None

    def for_subscriber(self, subscriber_id: int) -> NewEvent:
        """This event for another subscriber, sharing the attributes dict (the COPY store
        encodes each dict once: a million-row import records one Subscribed per row)."""
        return NewEvent(subscriber_id, self.name, self.attributes, self.occurred_at, self.dedup_key)


def subscribed_event(*, subscriber_id: int, source: str, at: datetime | None = None) -> NewEvent:
    """The event of a subscriber being created, whichever path creates them (API, bulk, import,
    WhatsApp inbound: ``source`` is a ConsentSource or "whatsapp")."""
    return NewEvent(subscriber_id, "Subscribed", {"source": str(source)}, at)


def unsubscribed_event(
    *, subscriber_id: int, channel: ConsentChannel, source: str, at: datetime | None = None
) -> NewEvent:
    """The event of an opt-out written to the consent ledger, whichever path writes it."""
    return NewEvent(subscriber_id, "Unsubscribed", {"channel": str(channel), "source": str(source)}, at)


@dataclass(frozen=True)
class Recorded:
    event: Event
    duplicate: bool  # the dedup key was seen before (in the database or earlier in the batch)


@dataclass(frozen=True)
class _CleanEvent:
    name: str
    attributes: dict[str, Any]
    occurred_at: datetime


def _clean_event(project: Project, item: NewEvent) -> _CleanEvent:
    """The one validation of an event, whoever records it (API, import, inbound, statuses)."""
    name = eventdefs.validate_event_name(item.name)
    attributes = eventdefs.clean_attributes(project, name, item.attributes)
    occurred_at = item.occurred_at or timezone.now()
    if timezone.is_naive(occurred_at):
        occurred_at = timezone.make_aware(occurred_at, zoneinfo.ZoneInfo(project.time_zone))
    tagtypes.check_datetime(occurred_at, field="occurred_at", what="occurred_at")
    if item.dedup_key is not None:
        tagtypes.clean_text(item.dedup_key, field="dedup_key", what="dedup_key")
    return _CleanEvent(name, attributes, occurred_at)


def record_event(
    *,
    project: Project,
    subscriber: Subscriber,
    name: str,
    attributes: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    dedup_key: str | None = None,
) -> Event:
    """Record an event and announce it after commit. With ``dedup_key`` it is recorded once.

    The single form of :func:`record_events`: the same validation, the same row.
    """
    item = NewEvent(subscriber.pk, name, attributes, occurred_at, dedup_key or None)
    return _record(project, item).event


def _record(project: Project, item: NewEvent) -> Recorded:
    return _record_one(project, item, _clean_event(project, item))


def _record_one(project: Project, item: NewEvent, clean: _CleanEvent) -> Recorded:
    with transaction.atomic():
        if not hold_subscribers([item.subscriber_id]):
            raise _subscriber_gone()
        if item.dedup_key:
            existing = Event.objects.for_project(project).filter(dedup_key=item.dedup_key).first()
            if existing is not None:
                return Recorded(existing, True)
        try:
            with transaction.atomic():
                event = Event.objects.create(
                    project=project,
                    subscriber_id=item.subscriber_id,
                    name=clean.name,
                    attributes=clean.attributes,
                    occurred_at=clean.occurred_at,
                    dedup_key=item.dedup_key,
                )
        except IntegrityError:
            if not item.dedup_key:
                raise
            # A concurrent request recorded the same key between our check and our insert.
            return Recorded(Event.objects.for_project(project).get(dedup_key=item.dedup_key), True)
        announce(project, [event])
    return Recorded(event, False)


def announce(project: Project, events: list[Event]) -> None:
    """Tell in-process listeners about these events once the transaction commits."""
    # A hint for in-process listeners only: consumers that must not miss an event read the
    # durable feed (subscribers.feed), which does not depend on this.
    payloads = [EventRecorded(project.pk, e.subscriber_id, e.pk, e.name, e.occurred_at) for e in events]
    transaction.on_commit(
        lambda: [event_recorded.send(sender=Subscriber, payload=payload) for payload in payloads]
    )


def record_events(*, project: Project, events: list[NewEvent]) -> list[Recorded | InvalidInput]:
    """Record many events: the bulk form of :func:`record_event`, one result per item, in order.

    Each item is validated as record_event validates it; an invalid one comes back as its
    ``InvalidInput`` and is not recorded, the valid ones are. One query finds the dedup keys seen
    before, one INSERT writes the rest. Idempotent for items with a dedup key. When a concurrent
    writer records one of the keys meanwhile, the items are recorded one by one instead.
    """
    results: list[Recorded | InvalidInput | None] = [None] * len(events)
    cleaned: list[tuple[int, NewEvent, _CleanEvent]] = []
    for index, item in enumerate(events):
        try:
            cleaned.append((index, item, _clean_event(project, item)))
        except InvalidInput as exc:
            results[index] = exc
    keys = {item.dedup_key for _, item, _ in cleaned if item.dedup_key}
    # No savepoints unless there are dedup keys: only they can conflict (statements count in
    # the bulk API's batches).
    with transaction.atomic(savepoint=False):
        held = hold_subscribers(item.subscriber_id for _, item, _ in cleaned)
        for index, item, _clean in cleaned:
            if item.subscriber_id not in held:
                results[index] = _subscriber_gone()
        cleaned = [entry for entry in cleaned if entry[1].subscriber_id in held]
        seen = (
            {e.dedup_key: e for e in Event.objects.for_project(project).filter(dedup_key__in=keys)}
            if keys
            else {}
        )
        batch: dict[str, int] = {}  # dedup key -> the index of the item in this batch that records it
        new: list[tuple[int, Event]] = []
        for index, item, clean in cleaned:
            key = item.dedup_key
            if key and key in seen:
                results[index] = Recorded(seen[key], True)
                continue
            if key and key in batch:
                continue  # filled in below, once the first item's row exists
            if key:
                batch[key] = index
            row = Event(
                project=project,
                subscriber_id=item.subscriber_id,
                name=clean.name,
                attributes=clean.attributes,
                occurred_at=clean.occurred_at,
                dedup_key=key,
            )
            new.append((index, row))
        try:
            if keys:
                with transaction.atomic():
                    Event.objects.bulk_create([row for _, row in new])
            else:
                Event.objects.bulk_create([row for _, row in new])
        except IntegrityError:
            for index, item, clean in cleaned:
                if results[index] is None:
                    results[index] = _record_one(project, item, clean)
            return results  # type: ignore[return-value]
        for index, row in new:
            results[index] = Recorded(row, False)
        for index, item, _unused in cleaned:
            if results[index] is None:  # a repeat of a key recorded earlier in this batch
                results[index] = Recorded(results[batch[item.dedup_key]].event, True)  # type: ignore[union-attr]
        announce(project, [row for _, row in new])
    return results  # type: ignore[return-value]


def _subscriber_gone() -> InvalidInput:
    return InvalidInput(_("This subscriber was erased meanwhile."), field="subscriber", code="not_found")


@transaction.atomic
def erase_subscriber(*, subscriber: Subscriber, actor: Actor) -> None:
    """GDPR erasure: delete the subscriber with tags, events, consent rows and messages.

    Audit entries about the subscriber keep only the public id; other apps scrub
    their copies (raw webhook payloads, import reports) on ``subscriber_erased``.
    """
    from controlpanel.models import AuditEntry

    project = subscriber.project
    public_id = str(subscriber.public_id)
    identifiers = tuple(
        v
        for v in (
            subscriber.phone,
            subscriber.wa_id,
            subscriber.bsuid,
            subscriber.external_id,
            subscriber.email,
        )
        if v
    )
    # Locked before anything is deleted: writers of tag values and events hold the subscriber
    # (holds.hold_subscribers) instead of a foreign key, so this waits for those in flight and
    # later ones find the subscriber gone. Deleted meanwhile: nothing left to erase.
    if not Subscriber.objects.select_for_update().filter(pk=subscriber.pk).exists():
        return
    AuditEntry.objects.for_project(project).filter(object_id=public_id).update(
        object_repr="(erased)", changes={}
    )
    subscriber.delete()
    record_audit(project=project, actor=actor, action="subscriber.erased", changes={"subscriber": public_id})
    payload = SubscriberErased(project.pk, public_id, identifiers)
    transaction.on_commit(lambda: subscriber_erased.send(sender=Subscriber, payload=payload))


def export_subscriber(*, subscriber: Subscriber, actor: Actor) -> dict[str, Any]:
    """GDPR access: everything we hold about one subscriber, JSON-ready. Audited."""
    devices = list(subscriber.devices.order_by("id"))
    data = {
        "id": str(subscriber.public_id),
        "phone": subscriber.phone,
        "wa_id": subscriber.wa_id,
        "bsuid": subscriber.bsuid,
        "external_id": subscriber.external_id,
        "name": subscriber.name,
        "email": subscriber.email,
        "language": subscriber.language,
        "country": subscriber.country,
        "timezone": subscriber.time_zone,
        "whatsapp_consent": subscriber.whatsapp_consent,
        "last_inbound_at": subscriber.last_inbound_at.isoformat() if subscriber.last_inbound_at else None,
        "email_consent": subscriber.email_consent,
        "email_undeliverable": (
            {
                "at": subscriber.email_undeliverable_at.isoformat(),
                "reason": subscriber.email_undeliverable_reason,
            }
            if subscriber.email_undeliverable_at
            else None
        ),
        "push_consent": subscriber.push_consent,
        "active_devices": sum(1 for d in devices if d.removed_at is None and d.push_enabled),
        "devices": [
            {
                "id": str(d.public_id),
                "platform": d.platform,
                "app_version": d.app_version,
                "language": d.language,
                "time_zone": d.time_zone,
                "push_enabled": d.push_enabled,
                "created_at": d.created_at.isoformat(),
                "removed_at": d.removed_at.isoformat() if d.removed_at else None,
            }
            for d in devices
        ],
        "created_at": subscriber.created_at.isoformat(),
        "tags": tags_of(subscriber),
        "consent_history": [
            {
                "channel": c.channel,
                "state": c.state,
                "source": c.source,
                "evidence": c.evidence,
                "actor": c.actor_label,
                "at": c.created_at.isoformat(),
            }
            for c in subscriber.consent_changes.order_by("created_at", "id")
        ],
        "events": [
            {"name": e.name, "occurred_at": e.occurred_at.isoformat(), "attributes": e.attributes}
            for e in subscriber.events.order_by("occurred_at", "id")
        ],
    }
    record_audit(project=subscriber.project, actor=actor, action="subscriber.exported", obj=subscriber)
    return data
