"""The one write path of "a subscriber appears or changes": a bulk form and its single form.

Every path that finds-or-creates subscribers ends here: the API (single and bulk), the CSV
import and WhatsApp inbound processing. They differ only in how they read their input into
:class:`Item` (JSON, CSV cells, a webhook's contact) and in the store that writes: the ORM for
small batches, COPY on PostgreSQL for imports (``subscribers.imports.stores``). The rules are
defined once, here:

- match (:func:`match`): a BSUID names the subscriber first (Meta's id cannot be typed wrong),
  then the phone, then the external id. A phone and an external id of two different subscribers
  is a conflict; a BSUID match wins over a phone held by someone else (WhatsApp must not lose a
  message over it) and the phone then stays where it is.
- create: only with a phone or a BSUID; an external id alone updates, never creates.
- update (:func:`plan_changes`): what an item gives overwrites what is stored, except the fields
  in ``Item.fills`` (WhatsApp's profile name and number), which only fill blanks: a marketer's
  data is never overwritten by a handset's.
- consent (WhatsApp and email): a state different from the stored one is written with a ledger
  row of its channel; an opt-out records ``Unsubscribed``.
- email: a changed address clears ``email_undeliverable_at``/``_reason`` (``profile.address_reset``).
- events: a new subscriber records ``Subscribed`` with its source
  (``services.subscribed_event``), in the same transaction as the write.

Phones arrive normalized (``phones.normalize_phone`` or the import's equivalent shortcut
``imports.phone_numbers.fast_phone``); a WhatsApp id becomes a phone through
:func:`phone_from_wa_id`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from controlpanel.models import Project
from controlpanel.services import Actor

from . import tags as tagtypes
from .errors import InvalidInput
from .models import ConsentChannel, ConsentState
from .profile import address_reset

if TYPE_CHECKING:
    from .imports.stores import Existing, Store

Status = Literal["created", "updated", "unchanged"]
# Columns of a matched subscriber that the rules compare with; the profile fields an item gives
# are read in addition.
KEY_FIELDS = ("id", "phone", "external_id", "bsuid", "wa_id", "name", "whatsapp_consent", "email_consent")
PROFILE_COLUMNS = ("name", "email", "language", "country", "time_zone")


@dataclass(kw_only=True)
class Item:
    """One subscriber as a path read it, already validated and normalized."""

    phone: str | None = None
    external_id: str | None = None
    wa_id: str = ""
    bsuid: str | None = None
    profile: dict[str, str] = field(default_factory=dict)
    # tag id -> value tuples (tags.value_tuples); () removes the tag's value.
    tags: dict[int, tuple[tuple, ...]] = field(default_factory=dict)
    consent: str | None = None  # a WhatsApp ConsentState to write, None: leave as it is
    evidence: str = ""
    email_consent: str | None = None  # the same for email
    email_evidence: str = ""
    # Fields ("phone", "name") that only fill blanks of an existing subscriber.
    fills: frozenset[str] = frozenset()


@dataclass
class Result:
    item: Item
    status: Status | None = None
    subscriber_id: int | None = None
    public_id: UUID | None = None  # of new subscribers, and of matched ones when read
    error: InvalidInput | None = None


@dataclass
class Applied:
    """What one call wrote, per item in input order (``new_only`` leaves the rest in ``rest``)."""

    results: list[Result] = field(default_factory=list)
    rest: list[Any] = field(default_factory=list)
    existing: list[Existing] = field(default_factory=list)
    moved: bool = False  # a phone or external id moved from one value to another

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)


# (channel, Item attribute of its state, Item attribute of its evidence): the consents an item
# can write; the subscriber's columns are <channel>_consent / <channel>_consent_at.
CONSENTS = (
    (ConsentChannel.WHATSAPP, "consent", "evidence"),
    (ConsentChannel.EMAIL, "email_consent", "email_evidence"),
)


class DefinitionGone(Exception):
    """A tag definition the items write values of was deleted meanwhile."""

    def __init__(self, names: list[str]):
        super().__init__(", ".join(names))
        self.names = names


def phone_from_wa_id(wa_id: str) -> str | None:
    """The phone behind a WhatsApp id: E.164 as every path stores it. WhatsApp has verified the
    number, so one the phone library does not know (a new range) is kept as +<digits>."""
    if not wa_id.isdigit():
        return None
    from .imports.phone_numbers import fast_phone

    try:
        return fast_phone(f"+{wa_id}", "")
    except InvalidInput:
        return f"+{wa_id}"


def conflict(phone: str | None, external_id: str | None) -> InvalidInput:
    return InvalidInput(
        (
            _("The phone %(phone)s and the external id %(external_id)r belong to two different subscribers.")
            % {"phone": phone, "external_id": external_id}
        ),
        field="external_id",
        code="conflict",
    )


def match(
    item: Item,
    by_bsuid: dict[str, Existing],
    by_phone: dict[str, Existing],
    by_external: dict[str, Existing],
) -> Existing | None:
    """The stored subscriber an item names (see the module's rules); InvalidInput on a conflict
    or for an unknown external id without a phone to create one with."""
    b = by_bsuid.get(item.bsuid) if item.bsuid else None
    p = by_phone.get(item.phone) if item.phone else None
    x = by_external.get(item.external_id) if item.external_id else None
    if b is not None:
        if x is not None and x["id"] != b["id"]:
            raise conflict(item.phone, item.external_id)
        return b
    if p is not None and x is not None and p["id"] != x["id"]:
        raise conflict(item.phone, item.external_id)
    target = p or x
    if target is None and not item.phone and not item.bsuid:
        if not item.external_id:
            raise InvalidInput(_("A phone number (or a WhatsApp user id) is required."), field="phone")
        raise InvalidInput(
            (
                _(
                    "No subscriber has the external id %(external_id)r, and without a phone number "
                    "no new one can be created."
                )
                % {"external_id": item.external_id}
            ),
            field="phone",
            code="not_found",
        )
    return target


def plan_changes(item: Item, target: Existing, now, taken_phone: bool = False) -> dict[str, Any]:
    """The column changes that ``item`` makes to the stored ``target`` (empty: unchanged).

    ``taken_phone``: the item's phone belongs to another subscriber (only possible after a BSUID
    match): it stays there.
    """
    changes: dict[str, Any] = {}
    fills = item.fills
    phone = item.phone
    fills_only = "phone" in fills and target["phone"]
    if phone and target["phone"] != phone and not taken_phone and not fills_only:
        changes["phone"] = phone
    if item.external_id and target["external_id"] != item.external_id:
        changes["external_id"] = item.external_id
    if item.wa_id and target["wa_id"] != item.wa_id:
        changes["wa_id"] = item.wa_id
    if item.bsuid and target["bsuid"] != item.bsuid:
        changes["bsuid"] = item.bsuid
    for key, value in item.profile.items():
        if target[key] != value and (key not in fills or not target[key]):
            changes[key] = value
    if "email" in changes:
        changes.update(address_reset())
    for channel, attr, _unused in CONSENTS:
        state = getattr(item, attr)
        if state and target[f"{channel}_consent"] != state:
            changes[f"{channel}_consent"] = state
            changes[f"{channel}_consent_at"] = now
    return changes


def new_row(item: Item, now) -> dict[str, Any]:
    """The columns of a new subscriber made from ``item``."""
    profile = item.profile
    return {
        "phone": item.phone,
        "external_id": item.external_id,
        "wa_id": item.wa_id,
        "bsuid": item.bsuid,
        "name": profile.get("name", ""),
        "email": profile.get("email", ""),
        "language": profile.get("language", ""),
        "country": profile.get("country", ""),
        "time_zone": profile.get("time_zone", ""),
        "whatsapp_consent": item.consent or ConsentState.UNKNOWN,
        "whatsapp_consent_at": now if item.consent else None,
        "email_consent": item.email_consent or ConsentState.UNKNOWN,
        "email_consent_at": now if item.email_consent else None,
        "created_at": now,
        "updated_at": now,
    }


def upsert_subscribers(
    *,
    project: Project,
    items: list[Item],
    source: str,
    actor: Actor,
    store: Store | None = None,
    fields: tuple[str, ...] | None = None,
    existing: list[Existing] | None = None,
    new_only: bool = False,
    hold_tags: bool = True,
) -> Applied:
    """Create or update the subscribers ``items`` name, set-based, in the caller's transaction.

    The bulk form. Items must name distinct subscribers (callers split a batch where an item
    repeats an identity of an earlier one). Returns one Result per item: its status and id, or
    its InvalidInput (conflict, unknown external id), with nothing written for it. An item that
    changes nothing writes nothing (not even ``updated_at``), so applying the same items twice
    changes nothing and records nothing. Records ``Subscribed`` for each new subscriber and
    ``Unsubscribed`` for each opt-out, ledger rows for each consent change (source ``source``,
    by ``actor``). Raises IntegrityError when another transaction created one of the
    subscribers meanwhile (the caller retries against the committed state) and DefinitionGone
    when a tag written was deleted.

    ``store``: how rows are read and written (default: the ORM). ``fields``: the columns to read
    of matched subscribers (default: those the items need). ``new_only``: only write the items
    that match nobody, returning the others in ``rest`` with the subscribers read in
    ``existing``; pass those back as ``existing`` when nothing could have moved them since.
    ``hold_tags=False``: the caller holds the definitions (tags.hold_definitions).
    """
    from .imports.stores import Store
    from .services import subscribed_event, unsubscribed_event

    store = store or Store(project)
    now = timezone.now()
    out = Applied()
    if hold_tags:
        used = {tag_id for item in items for tag_id, values in item.tags.items() if values}
        if used:
            gone = used - tagtypes.hold_definitions(used)
            if gone:
                raise DefinitionGone(sorted(str(pk) for pk in gone))
    if existing is None:
        if fields is None:
            profile = {key for item in items for key in item.profile}
            fields = (*KEY_FIELDS, *(f for f in PROFILE_COLUMNS if f in profile and f not in KEY_FIELDS))
        existing = store.fetch_subscribers(
            [i.phone for i in items if i.phone],
            [i.external_id for i in items if i.external_id],
            fields,
            bsuids=[i.bsuid for i in items if i.bsuid],
        )
    out.existing = existing
    by_phone = {e["phone"]: e for e in existing if e["phone"]}
    by_external = {e["external_id"]: e for e in existing if e["external_id"]}
    by_bsuid = {e["bsuid"]: e for e in existing if e.get("bsuid")}

    inserts: list[dict[str, Any]] = []
    inserted: list[Result] = []
    updates: dict[int, dict[str, Any]] = {}
    matched: list[tuple[Item, Existing, Result]] = []
    results = out.results
    for item in items:
        if new_only and (
            item.phone is None
            or item.phone in by_phone
            or (item.external_id is not None and item.external_id in by_external)
            or (item.bsuid is not None and item.bsuid in by_bsuid)
        ):
            out.rest.append(item)
            continue
        result = Result(item)
        results.append(result)
        try:
            target = match(item, by_bsuid, by_phone, by_external)
        except InvalidInput as exc:
            result.error = exc
            continue
        if target is None:
            inserts.append(new_row(item, now))
            inserted.append(result)
            result.status = "created"
            continue
        holder = by_phone.get(item.phone) if item.phone else None
        changes = plan_changes(item, target, now, taken_phone=holder is not None and holder is not target)
        if "phone" in changes or "external_id" in changes:
            out.moved = True
        if changes:
            updates[target["id"]] = changes
        result.subscriber_id, result.public_id = target["id"], target.get("public_id")
        matched.append((item, target, result))

    ids = store.insert_subscribers(inserts) if inserts else []
    for result, (sid, public_id) in zip(inserted, ids, strict=True):
        result.subscriber_id, result.public_id = sid, public_id

    # Tag values: new subscribers get theirs inserted; existing ones are diffed.
    tag_inserts: list[tuple] = []
    for result in inserted:
        sid = result.subscriber_id
        for tag_id, values in result.item.tags.items():
            tag_inserts.extend((sid, tag_id, *value) for value in values)
    tag_deletes: list[int] = []
    with_tags = [(item, target) for item, target, _ in matched if item.tags]
    if with_tags:
        # (subscriber, tag) -> [(row id, value tuple)]. Stored numbers carry the column's 8
        # decimal places; Decimals compare by value, so 5 == 5.00000000.
        stored: dict[tuple[int, int], list[tuple[int, tuple]]] = {}
        tag_ids = list({tag_id for item, _ in with_tags for tag_id in item.tags})
        for r in store.fetch_tag_values([t["id"] for _, t in with_tags], tag_ids):
            key = (r[1], r[2])
            entry = (r[0], r[3:])
            if key in stored:
                stored[key].append(entry)
            else:
                stored[key] = [entry]
        no_values: list[tuple[int, tuple]] = []
        for item, target in with_tags:
            sid = target["id"]
            for tag_id, wanted in item.tags.items():
                have = stored.get((sid, tag_id), no_values)
                if len(have) == len(wanted) and (
                    not have
                    or (len(have) == 1 and have[0][1] == wanted[0])
                    or tagtypes.stored_tuples([v for _, v in have]) == wanted
                ):
                    continue
                tag_deletes.extend(rid for rid, _ in have)
                tag_inserts.extend((sid, tag_id, *value) for value in wanted)
                updates.setdefault(sid, {})

    # Subscriber updates: one statement per set of changed columns (usually one or two).
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for sid, changes in updates.items():
        groups.setdefault(tuple(sorted(changes)), []).append({**changes, "id": sid, "updated_at": now})
    for columns, group in groups.items():
        # The UPDATE is also this call's hold on the subscribers it writes tag values, ledger rows
        # or events for (their row lock keeps an erasure out, holds.py): one erased since it was
        # read makes the batch retry against the committed state, as a concurrent create does.
        if store.update_subscribers(group, [*columns, "updated_at"]) != len(group):
            raise IntegrityError("A subscriber of this batch was erased meanwhile.")
    if tag_deletes:
        store.delete_tag_values(tag_deletes)
    if tag_inserts:
        store.insert_tag_values(tag_inserts)
    for _item, _target, result in matched:
        result.status = "updated" if result.subscriber_id in updates else "unchanged"

    ledger: list[dict[str, Any]] = []
    for channel, attr, evidence in CONSENTS:
        written = [(r.subscriber_id, r.item) for r in inserted if getattr(r.item, attr)]
        written += [
            (target["id"], item)
            for item, target, _ in matched
            if f"{channel}_consent" in updates.get(target["id"], ())
        ]
        ledger += [
            _ledger(sid, channel, getattr(item, attr), getattr(item, evidence), source, actor, now)
            for sid, item in written
        ]
    if ledger:
        store.insert_consent(ledger)
    opted_out = [row for row in ledger if row["state"] == ConsentState.OPTED_OUT]
    if inserted or opted_out:
        # Templates from the services' constructors, shared by every event of this call: the COPY
        # store encodes the attributes once per dict, not once per event (a million-row import).
        subscribed = subscribed_event(subscriber_id=0, source=source, at=now)
        unsubscribed = {
            channel: unsubscribed_event(subscriber_id=0, channel=channel, source=source, at=now)
            for channel, _, _ in CONSENTS
        }
        events = [subscribed.for_subscriber(r.subscriber_id) for r in inserted]
        events += [unsubscribed[row["channel"]].for_subscriber(row["subscriber_id"]) for row in opted_out]
        store.insert_events(events)
    return out


def _ledger(
    subscriber_id: int, channel: str, state: str, evidence: str, source: str, actor: Actor, now
) -> dict[str, Any]:
    return {
        "subscriber_id": subscriber_id,
        "channel": channel,
        "state": state,
        "source": source,
        "evidence": evidence,
        "actor_user_id": actor.user.pk if actor.user is not None else None,
        "actor_label": actor.display[:200],
        "created_at": now,
    }


def upsert_subscriber(*, project: Project, item: Item, source: str, actor: Actor) -> tuple[int, Status]:
    """The single form of :func:`upsert_subscribers`: the same rules for one item, through the
    ORM. Returns (subscriber id, status); raises the item's InvalidInput with nothing written,
    and a conflict when another request created the same subscriber meanwhile."""
    try:  # one savepoint, also what makes it atomic (inbound processing pays per message)
        with transaction.atomic():
            result = upsert_subscribers(project=project, items=[item], source=source, actor=actor).results[0]
    except IntegrityError:
        raise InvalidInput(
            _("That subscriber was just created or changed by another request; retry."), code="conflict"
        ) from None
    except DefinitionGone:
        raise InvalidInput(
            _("A tag of this change was deleted meanwhile; send the change again."),
            field="tags",
            code="conflict",
        ) from None
    if result.error is not None:
        raise result.error
    return result.subscriber_id, result.status  # type: ignore[return-value]
