"""Applying a validated chunk in one transaction with the job's checkpoint, chunks in file order."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, connection, transaction

from controlpanel.services import Actor

from .. import tags as tagtypes
from ..models import ConsentSource, ImportJob, ImportStatus
from ..upsert import upsert_subscribers
from .files import ImportFileError
from .mapping import PROFILE_TARGETS
from .reports import ReportWriter
from .stores import Existing, chunk_settings, store_for
from .validation import Chunk, Rejection, Row


class _Superseded(Exception):
    """Another run claimed the job; this one stops without touching it."""


# Columns read of matched subscribers: what rows are compared with (plus the mapped profile fields).
# Fewer than upsert.KEY_FIELDS: rows have no WhatsApp ids and only the mapped profile fields.
KEY_FIELDS = ("id", "phone", "external_id", "whatsapp_consent", "email_consent")


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
        # Ledger rows name the person who started the import.
        self.actor = Actor(user=job.created_by, label="" if job.created_by else "CSV import")
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
        """Write ``rows`` through the bulk upsert (COPY on PostgreSQL); with ``new_only`` only those
        matching no subscriber, returning the rest.

        ``existing``: the stored subscribers that the rows' keys match, if already read in this
        transaction. Returns them too, for the second pass over the rest.
        """
        done = upsert_subscribers(
            project=self.project,
            items=rows,
            source=ConsentSource.IMPORT,
            actor=self.actor,
            store=store_for(self.project),
            fields=self.fields,
            existing=existing,
            new_only=new_only,
            hold_tags=False,  # held for the whole chunk (_hold_tags)
        )
        if done.moved:
            self.turns.moved = True
        out = Applied()
        for result in done.results:
            if result.error is not None:
                row = result.item
                out.rejections.append(Rejection(row.index, row.line, result.error.message, row.cells))
            elif result.status == "created":
                out.created += 1
            elif result.status == "updated":
                out.updated += 1
            else:
                out.unchanged += 1
        return out, done.rest, done.existing
