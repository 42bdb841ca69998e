"""Applying a validated chunk in one transaction with the job's checkpoint, chunks in file order."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .. import tags as tagtypes
from ..models import ConsentChannel, ConsentSource, ConsentState, ImportJob, ImportStatus
from ..services import NewEvent, subscribed_event, unsubscribed_event
from .files import ImportFileError
from .mapping import PROFILE_TARGETS
from .reports import ReportWriter
from .stores import Existing, chunk_settings, store_for
from .validation import Chunk, Rejection, Row


class _Superseded(Exception):
    """Another run claimed the job; this one stops without touching it."""


# Columns read of matched subscribers: what rows are compared with (plus the mapped profile fields).
KEY_FIELDS = ("id", "phone", "external_id", "whatsapp_consent")


@dataclass
class Applied:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def merge(self, other: Applied) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejections += other.rejections


class Aborted(Exception):
    """Another writer of the same run failed; this one gives up its chunk."""


class _Turns:
    """Chunks commit in file order: the checkpoint means "every row before it is applied".

    With several writers, a chunk does its independent work (new subscribers) in parallel, then
    waits here until the chunk before it has committed.
    """

    def __init__(self, done: int):
        self.done = done
        self.failed = False
        # Set (for good) once a chunk changes a subscriber's phone or external id.
        self.moved = False
        self.cond = threading.Condition()

    def is_turn(self, first_index: int) -> bool:
        with self.cond:
            return self.done == first_index

    def wait(self, first_index: int) -> None:
        with self.cond:
            while self.done != first_index:
                if self.failed:
                    raise Aborted
                self.cond.wait(timeout=1.0)

    def advance(self, end_index: int) -> None:
        with self.cond:
            self.done = end_index
            self.cond.notify_all()

    def fail(self) -> None:
        with self.cond:
            self.failed = True
            self.cond.notify_all()


class Applier:
    """Applies validated chunks, each in one transaction together with the job's checkpoint."""

    def __init__(
        self,
        job: ImportJob,
        token: datetime,
        tags: Callable[[], dict[int, str]],
        turns: _Turns | None = None,
    ):
        self.turns = turns or _Turns(job.processed_rows)
        mapped = {c["target"] for c in job.mapping["columns"]}
        self.fields = (*KEY_FIELDS, *(f for f in PROFILE_TARGETS if f in mapped))
        self.job = job
        self.project = job.project
        self.token = token
        self.tags = tags
        self.actor_user_id = job.created_by_id
        self.actor_label = (job.created_by.email if job.created_by else "CSV import")[:200]
        self.counts = {
            "created": job.created_count,
            "updated": job.updated_count,
            "unchanged": job.unchanged_count,
            "rejected": job.rejected_count,
        }

    def apply(self, chunk: Chunk, report: ReportWriter) -> None:
        for attempt in (1, 2):
            try:
                with transaction.atomic():
                    if connection.vendor == "postgresql":
                        chunk_settings()
                    self._hold_tags()
                    rows, applied = chunk.rows, Applied()
                    early: list[Existing] | None = None
                    if rows and not self.turns.is_turn(chunk.first_index):
                        # While the chunk before is still being written: insert the rows that
                        # match no stored subscriber. No other chunk can touch those (keys are
                        # unique within the file); everything else waits for its turn.
                        applied, rows, early = self._apply_rows(rows, new_only=True)
                    self.turns.wait(chunk.first_index)
                    self._claim_checkpoint()
                    if rows:
                        # What the early pass read is still what earlier chunks left, unless one
                        # of them moved a phone or external id (the only way a row of theirs
                        # reaches a subscriber that a key of this chunk matches).
                        known = None if self.turns.moved else early
                        rest, _, _ = self._apply_rows(rows, existing=known)
                        applied.merge(rest)
                    rejections = sorted(chunk.rejections + applied.rejections, key=lambda r: r.index)
                    report.append(rejections)
                    self.counts["created"] += applied.created
                    self.counts["updated"] += applied.updated
                    self.counts["unchanged"] += applied.unchanged
                    self.counts["rejected"] += len(rejections)
                    self._checkpoint(chunk.end_index)
                self.turns.advance(chunk.end_index)
                return
            except IntegrityError:
                # Someone else (the API, a panel user) wrote one of these subscribers meanwhile:
                # the plan is stale. Plan the chunk again against the committed state, once (its
                # rejected rows rolled back with it).
                self._reload_counts()
                if attempt == 2:
                    raise

    def _hold_tags(self) -> None:
        # Until this chunk commits, its tags cannot be deleted (tags.hold_definitions).
        tags = self.tags()
        held = tagtypes.hold_definitions(tags)
        gone = sorted(name for pk, name in tags.items() if pk not in held)
        if gone:
            names = ", ".join(map(repr, gone))
            raise ImportFileError(
                f"The tag{'s' if len(gone) > 1 else ''} {names} {'were' if len(gone) > 1 else 'was'} "
                "deleted while the import ran. The rows before this point are imported; import "
                "the file again to continue."
            )

    def _claim_checkpoint(self) -> None:
        # Locks the job row until the chunk commits, so a run that claims the job meanwhile
        # waits for this chunk and then resumes after it.
        owned = ImportJob.objects.filter(
            pk=self.job.pk, started_at=self.token, status=ImportStatus.RUNNING
        ).update(status=ImportStatus.RUNNING)
        if owned != 1:
            raise _Superseded

    def _checkpoint(self, processed: int) -> None:
        ImportJob.objects.filter(pk=self.job.pk, started_at=self.token).update(
            processed_rows=processed,
            created_count=self.counts["created"],
            updated_count=self.counts["updated"],
            unchanged_count=self.counts["unchanged"],
            rejected_count=self.counts["rejected"],
        )

    def _reload_counts(self) -> None:
        job = ImportJob.objects.get(pk=self.job.pk)
        self.counts = {
            "created": job.created_count,
            "updated": job.updated_count,
            "unchanged": job.unchanged_count,
            "rejected": job.rejected_count,
        }

    def _apply_rows(
        self, rows: list[Row], *, new_only: bool = False, existing: list[Existing] | None = None
    ) -> tuple[Applied, list[Row], list[Existing]]:
        """Write ``rows``; with ``new_only`` only those matching no subscriber, returning the rest.

        ``existing``: the stored subscribers that the rows' keys match, if already read in this
        transaction. Returns them too, for the second pass over the rest.
        """
        store = store_for(self.project)
        now = timezone.now()
        out = Applied()
        rest: list[Row] = []
        if existing is None:
            phones = [r.phone for r in rows if r.phone]
            externals = [r.external_id for r in rows if r.external_id]
            existing = store.fetch_subscribers(phones, externals, self.fields)
        by_phone = {e["phone"]: e for e in existing if e["phone"]}
        by_external = {e["external_id"]: e for e in existing if e["external_id"]}

        inserts: list[dict[str, Any]] = []
        inserted_rows: list[Row] = []
        updates: dict[int, dict[str, Any]] = {}
        matched: list[tuple[Row, Existing]] = []
        for row in rows:
            p = by_phone.get(row.phone) if row.phone else None
            x = by_external.get(row.external_id) if row.external_id else None
            if new_only and (p is not None or x is not None or row.phone is None):
                rest.append(row)
                continue
            if p is not None and x is not None and p["id"] != x["id"]:
                out.rejections.append(
                    Rejection(
                        row.index,
                        row.line,
                        f"The phone {row.phone} and the external id {row.external_id!r} belong to two "
                        "different subscribers.",
                        row.cells,
                    )
                )
                continue
            target = p or x
            if target is None:
                if row.phone is None:
                    out.rejections.append(
                        Rejection(
                            row.index,
                            row.line,
                            f"No subscriber has the external id {row.external_id!r}, and without a "
                            "phone number no new one can be created.",
                            row.cells,
                        )
                    )
                    continue
                consent = row.consent or ConsentState.UNKNOWN
                inserts.append(
                    {
                        "phone": row.phone,
                        "external_id": row.external_id,
                        "name": row.profile.get("name", ""),
                        "email": row.profile.get("email", ""),
                        "language": row.profile.get("language", ""),
                        "country": row.profile.get("country", ""),
                        "time_zone": row.profile.get("time_zone", ""),
                        "whatsapp_consent": consent,
                        "whatsapp_consent_at": now if row.consent else None,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                inserted_rows.append(row)
                continue
            # Matched by external id with another phone: the row moves the subscriber to it
            # (the phone is free: had another subscriber it, that would be a conflict above).
            changes: dict[str, Any] = {}
            if row.phone and target["phone"] != row.phone:
                changes["phone"] = row.phone
                self.turns.moved = True
            if row.external_id and target["external_id"] != row.external_id:
                changes["external_id"] = row.external_id
                self.turns.moved = True
            for key, value in row.profile.items():
                if target[key] != value:
                    changes[key] = value
            if row.consent and target["whatsapp_consent"] != row.consent:
                changes["whatsapp_consent"] = row.consent
                changes["whatsapp_consent_at"] = now
            if changes:
                updates[target["id"]] = changes
            matched.append((row, target))

        ids_by_phone = store.insert_subscribers(inserts) if inserts else {}
        out.created = len(inserts)

        # Tag values: new subscribers get theirs inserted; existing ones are diffed.
        tag_inserts: list[tuple] = []
        for row in inserted_rows:
            sid = ids_by_phone[row.phone]
            for tag_id, values in row.tags.items():
                tag_inserts.extend((sid, tag_id, *value) for value in values)
        tag_deletes: list[int] = []
        tag_changed: set[int] = set()
        matched_with_tags = [(row, target) for row, target in matched if row.tags]
        if matched_with_tags:
            # (subscriber, tag) -> [(row id, value tuple)]. Stored numbers carry the column's 8
            # decimal places; Decimals compare by value, so 5 == 5.00000000.
            stored: dict[tuple[int, int], list[tuple[int, tuple]]] = {}
            for r in store.fetch_tag_values([t["id"] for _, t in matched_with_tags], list(self.tags())):
                key = (r[1], r[2])
                entry = (r[0], r[3:])
                if key in stored:
                    stored[key].append(entry)
                else:
                    stored[key] = [entry]
            no_values: list[tuple[int, tuple]] = []
            for row, target in matched_with_tags:
                sid = target["id"]
                for tag_id, wanted in row.tags.items():
                    have = stored.get((sid, tag_id), no_values)
                    if len(have) == len(wanted) and (
                        (len(have) == 1 and have[0][1] == wanted[0])
                        or tagtypes.stored_tuples([v for _, v in have]) == wanted
                    ):
                        continue
                    tag_deletes.extend(rid for rid, _ in have)
                    tag_inserts.extend((sid, tag_id, *value) for value in wanted)
                    tag_changed.add(sid)

        # Subscriber updates: one statement per set of changed columns (usually one or two).
        for sid in tag_changed:
            updates.setdefault(sid, {})
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for sid, changes in updates.items():
            groups.setdefault(tuple(sorted(changes)), []).append({**changes, "id": sid, "updated_at": now})
        for fields, group in groups.items():
            store.update_subscribers(group, [*fields, "updated_at"])
        if tag_deletes:
            store.delete_tag_values(tag_deletes)
        if tag_inserts:
            store.insert_tag_values(tag_inserts)

        ledger = []
        for row in inserted_rows:
            if row.consent:
                ledger.append(self._ledger(ids_by_phone[row.phone], row, now))
        for row, target in matched:
            if "whatsapp_consent" in updates.get(target["id"], {}):
                ledger.append(self._ledger(target["id"], row, now))
        if ledger:
            store.insert_consent(ledger)
        # The events the services record for the same changes (upsert_subscriber,
        # change_consent), in this chunk's transaction: a resumed or retried chunk records them
        # once, and a row that changes nothing records nothing.
        # Templates from the services' constructors; _for_each puts in each subscriber.
        subscribed = subscribed_event(subscriber_id=0, source=ConsentSource.IMPORT, at=now)
        unsubscribed = unsubscribed_event(
            subscriber_id=0, channel=ConsentChannel.WHATSAPP, source=ConsentSource.IMPORT, at=now
        )
        events = _for_each(subscribed, [ids_by_phone[row.phone] for row in inserted_rows])
        events += _for_each(
            unsubscribed, [r["subscriber_id"] for r in ledger if r["state"] == ConsentState.OPTED_OUT]
        )
        if events:
            store.insert_events(events)

        out.updated = len(updates)
        out.unchanged = len(matched) - len(updates)
        return out, rest, existing

    def _ledger(self, subscriber_id: int, row: Row, now: datetime) -> dict[str, Any]:
        return {
            "subscriber_id": subscriber_id,
            "channel": ConsentChannel.WHATSAPP,
            "state": row.consent,
            "source": ConsentSource.IMPORT,
            "evidence": row.evidence,
            "actor_user_id": self.actor_user_id,
            "actor_label": self.actor_label,
            "created_at": now,
        }


def _for_each(template: NewEvent, subscriber_ids: list[int]) -> list[NewEvent]:
    """``template`` for each subscriber, all sharing its one attributes dict: the store encodes
    the attributes and facets once per dict, not once per event (a million-row import)."""
    return [NewEvent(sid, template.name, template.attributes, template.occurred_at) for sid in subscriber_ids]
