"""The background run of a job (called by the actor): read, validate, apply, finish."""

from __future__ import annotations

import csv
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from controlpanel.services import SYSTEM, record_audit

from ..models import ImportJob, ImportStatus
from .applier import Applier, _Superseded
from .files import ImportFileError, job_records, open_text
from .gctuning import _fewer_collections
from .reports import ReportWriter, drop_rejections, finish_report
from .validation import Chunk, Rejection, Row, Validator
from .writers import InlineSink, ThreadedSink


def writer_count() -> int:
    """Writer threads of a job: SQLite takes one writer at a time, so it gets one."""
    if connection.vendor != "postgresql":
        return 1
    return max(1, getattr(settings, "IMPORT_WRITERS", 2))


def run_import(*, job_id: int) -> None:
    """Run (or resume) an import job. Idempotent: a finished job is left as it is.

    Raises on unexpected errors so that the actor retries (resuming at the checkpoint); a file
    that turns out unreadable fails the job with a message instead.
    """
    token = timezone.now()
    claimed = ImportJob.objects.filter(
        pk=job_id, status__in=[ImportStatus.QUEUED, ImportStatus.RUNNING]
    ).update(status=ImportStatus.RUNNING, started_at=token)
    if not claimed:
        return
    job = ImportJob.objects.select_related("project", "created_by").get(pk=job_id)
    try:
        with _fewer_collections:
            _run(job, token)
    except _Superseded:
        return
    except ImportFileError as exc:
        fail_import(job_id=job.pk, error=str(exc))


def _run(job: ImportJob, token: datetime) -> None:
    from subscribers import imports as package

    validator = Validator(job)
    resume_at = job.processed_rows
    report = ReportWriter(job, keep_below=resume_at)
    applier = Applier(job, token, validator.tags)
    statistics = None
    if connection.in_atomic_block:  # inside a caller's transaction (tests): no other connection
        sink: InlineSink | ThreadedSink = InlineSink(applier, report)
    else:
        sink = ThreadedSink(applier, report, writers=writer_count())
        statistics = _Statistics(resume_at)
    # The package's CHUNK_SIZE, read at each run: tests lower it there to cover chunk edges.
    chunk_size = package.CHUNK_SIZE
    try:
        with open_text(job) as text:
            chunk = Chunk(first_index=resume_at, end_index=resume_at)
            index = -1
            try:
                for index, (line, cells, problem) in enumerate(job_records(job, text)):
                    if index < resume_at:
                        if index not in report.indexes:
                            validator.replay(line, cells)
                        continue
                    checked = (
                        Rejection(index, line, problem, cells)
                        if problem
                        else validator.check(index, line, cells)
                    )
                    if isinstance(checked, Row):
                        chunk.rows.append(checked)
                    else:
                        chunk.rejections.append(checked)
                    if index + 1 - chunk.first_index >= chunk_size:
                        chunk.end_index = index + 1
                        sink.put(chunk)
                        chunk = Chunk(first_index=index + 1, end_index=index + 1)
                        if statistics is not None:
                            statistics.maybe_refresh(applier.turns.done)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise ImportFileError(
                    f"The file could not be read after record {index + 1}: {exc}."
                ) from None
            chunk.end_index = index + 1
            if chunk.end_index > chunk.first_index or chunk.first_index == 0:
                sink.put(chunk)
        sink.close()
    finally:
        sink.abort()
    _finish(job, token, report)


class _Statistics:
    """Refreshes PostgreSQL's statistics of the tables an import grows, every 4x of growth.

    Planned with the statistics of an empty project, the keyed lookups of later chunks scan the
    whole project for every chunk (a million-row import went from minutes to quadratic). ANALYZE
    samples a fixed number of rows, so each refresh takes a fraction of a second.
    """

    TABLES = ("subscribers_subscriber", "subscribers_tagvalue")

    def __init__(self, start: int):
        self.next_at = max(start, 5_000) * 2

    def maybe_refresh(self, committed: int) -> None:
        if connection.vendor != "postgresql" or committed < self.next_at:
            return
        self.next_at = committed * 4
        with connection.cursor() as cur:
            for table in self.TABLES:
                # Not the owner of the table: PostgreSQL skips it with a warning, no error.
                cur.execute(f"ANALYZE {table}")


def _finish(job: ImportJob, token: datetime, report: ReportWriter) -> None:
    report_name = report.finish(job)
    finished = timezone.now()
    with transaction.atomic():
        updated = ImportJob.objects.filter(pk=job.pk, started_at=token, status=ImportStatus.RUNNING).update(
            status=ImportStatus.DONE, finished_at=finished, report=report_name, file=""
        )
        if not updated:
            return
        drop_rejections(job)
        source = job.file.name
        job.refresh_from_db()
        job.file.name = source
        record_audit(
            project=job.project,
            actor=SYSTEM,
            action="import.finished",
            obj=job,
            changes={
                "created": job.created_count,
                "updated": job.updated_count,
                "unchanged": job.unchanged_count,
                "rejected": job.rejected_count,
            },
        )
    _delete_source(job)


def _delete_source(job: ImportJob) -> None:
    # GDPR: the uploaded file holds personal data we no longer need once the job has ended.
    name = ImportJob.objects.filter(pk=job.pk).values_list("file", flat=True).first()
    for candidate in {job.file.name, name} - {None, ""}:
        job.file.storage.delete(candidate)
    ImportJob.objects.filter(pk=job.pk).update(file="")


def fail_import(*, job_id: int, error: str) -> None:
    """Mark a job failed with a message for the user; keep the report of what was done."""
    job = ImportJob.objects.select_related("project").filter(pk=job_id).first()
    if job is None or job.status in (ImportStatus.DONE, ImportStatus.FAILED):
        return
    report_name = finish_report(job)
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportStatus.FAILED, error=error[:2000], finished_at=timezone.now(), report=report_name
    )
    drop_rejections(job)
    _delete_source(job)
