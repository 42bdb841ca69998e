"""The steps before the background run, each a service: upload (create_import), the choice
for rows that do not decode, the mapping (start_import, which queues the run), discarding a job."""

from __future__ import annotations

import os
import uuid
from typing import Any

from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from controlpanel.models import Project
from controlpanel.services import Actor, record_audit

from .. import tags as tagtypes
from ..errors import InvalidInput
from ..models import ConsentState, ImportJob, ImportStatus, UndecodableRows
from .files import (
    ENCODING_LABELS,
    ImportFileError,
    alternative_encoding,
    count_records,
    detect_format,
    header_names,
    job_records,
    max_bytes,
    max_columns,
    open_text,
    read_header,
    read_records,
    readable,
    rewind,
    single_line_columns,
    text_encoding,
    text_reader,
)
from .mapping import CONSENT_VALUES, auto_targets, clean_mapping

PREVIEW_ROWS = 10


def create_import(*, project: Project, upload: UploadedFile, actor: Actor) -> ImportJob:
    """Store an uploaded CSV as a new ImportJob (status "uploaded") with a guessed mapping.

    Raises ImportFileError, with nothing stored, for a file that is not a usable CSV. A file
    with bytes that do not decode is stored with a list of those rows (line, bytes, text) and
    an alternative encoding to offer: nothing is imported from it before someone chooses
    (choose_undecodable_rows).
    """
    name = os.path.basename(upload.name or "upload.csv")[:255]
    if upload.size > max_bytes():
        raise ImportFileError(
            _("The file is %(size)s MB; the limit is %(limit)s MB. Split it into smaller files.")
            % {"size": f"{upload.size / 1024 / 1024:.0f}", "limit": f"{max_bytes() / 1024 / 1024:.0f}"}
        )
    if name.lower().endswith((".xlsx", ".xls", ".numbers", ".ods")):
        raise ImportFileError(
            _("“%(name)s” is a spreadsheet, not a CSV file. Save it as “CSV UTF-8” and upload that.")
            % {"name": name}
        )
    stream = upload.file
    fmt = detect_format(stream)
    alternative = alternative_encoding(stream, fmt)
    text = text_reader(stream, fmt.encoding)
    try:
        header = read_header(text, fmt.delimiter)
        headers = header_names(header)
        columns = auto_targets(headers, tagtypes.definitions(project))
        records = read_records(
            rewind(text), fmt.delimiter, width=len(headers), single_line=single_line_columns(columns)
        )
        rows, undecodable = count_records(records, header, fmt, alternative)
    finally:
        text.detach()
    mapping: dict[str, Any] = {
        "file": {"encoding": fmt.encoding, "delimiter": fmt.delimiter, "decodes": fmt.decodes},
        "headers": headers,
        "columns": columns,
    }
    if not fmt.decodes:
        mapping["file"]["undecodable"] = undecodable
    stream.seek(0)
    with transaction.atomic():
        job = ImportJob(
            project=project,
            original_name=name,
            mapping=mapping,
            total_rows=rows,
            created_by=actor.user,
        )
        job.file.save(f"{uuid.uuid4().hex}.csv", File(stream), save=False)
        job.save()
        record_audit(project=project, actor=actor, action="import.uploaded", obj=job, changes={"rows": rows})
    return job


def preview(job: ImportJob, rows: int = PREVIEW_ROWS) -> list[tuple[int, list[str]]]:
    """The first ``rows`` records of the file, each padded to the header's width.

    Cells beyond the header are shown too (the row will be rejected for them), as many as a
    header may have: a row of 50,000 cells would make the page as large as such a header did.
    """
    width = len(job.mapping["headers"])
    shown = max(width, max_columns())
    out = []
    with open_text(job) as text:
        for record in job_records(job, text):
            cells = [readable(c) for c in record.cells[:shown]]
            out.append((record.line, (cells + [""] * width)[: max(width, len(cells))]))
            if len(out) >= rows:
                break
    return out


def choose_undecodable_rows(*, job: ImportJob, choice: str, actor: Actor) -> ImportJob:
    """Record what happens to the rows of an uploaded file that do not decode: skipped (and
    reported), or the whole file read in the alternative encoding offered at upload.

    Writes only the job (and the audit log); raises InvalidInput for a job that has no such
    rows or is no longer waiting for its mapping. Reading another encoding can change the
    header, so the guessed mapping is made again from it.
    """
    undecodable = job.mapping["file"].get("undecodable")
    if not undecodable:
        raise InvalidInput(
            _("Every row of this file can be read; there is nothing to choose."), field="encoding"
        )
    if choice == UndecodableRows.REENCODE and not undecodable["alternative"]:
        raise InvalidInput(_("This file cannot be read in another encoding."), field="encoding")
    if choice not in UndecodableRows.values:
        raise InvalidInput(
            _("Choose whether to skip these rows or read the file in another encoding."), field="encoding"
        )
    with transaction.atomic():
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != ImportStatus.UPLOADED:
            raise InvalidInput(_("This import has already started."), field="encoding", code="conflict")
        locked.undecodable_rows = choice
        try:
            with locked.file.open("rb") as binary:
                text = text_reader(binary, text_encoding(locked))
                try:
                    headers = header_names(read_header(text, locked.mapping["file"]["delimiter"]))
                finally:
                    text.detach()
        except FileNotFoundError:
            raise InvalidInput(_("The uploaded file is gone; upload it again."), field="encoding") from None
        if headers != locked.mapping["headers"]:
            columns = auto_targets(headers, tagtypes.definitions(locked.project))
            locked.mapping = {**locked.mapping, "headers": headers, "columns": columns}
        locked.save(update_fields=["undecodable_rows", "mapping"])
        record_audit(
            project=locked.project,
            actor=actor,
            action="import.encoding_chosen",
            obj=locked,
            changes={"undecodable_rows": choice, "encoding": text_encoding(locked)},
        )
    return locked


def _has_opt_ins(job: ImportJob, column: int) -> bool:
    with open_text(job) as text:
        for _line, cells, problem in job_records(job, text):
            if (
                not problem
                and column < len(cells)
                and CONSENT_VALUES.get(cells[column].strip().lower()) == ConsentState.OPTED_IN
            ):
                return True
    return False


def start_import(
    *,
    job: ImportJob,
    columns: list[dict[str, str]],
    key: str,
    default_evidence: str,
    actor: Actor,
) -> ImportJob:
    """Save the mapping of an uploaded job and queue it (the actor is sent after commit).

    Raises InvalidInput for a bad mapping. A job that is already queued or further along is
    returned unchanged, so a double-submitted form starts one import.
    """
    undecodable = job.mapping["file"].get("undecodable")
    if undecodable and not job.undecodable_rows:
        raise InvalidInput(
            _(
                "%(count)s rows of this file cannot be read as %(encoding)s: "
                "choose what happens to them first."
            )
            % {
                "count": number_format(undecodable["count"], force_grouping=True),
                "encoding": ENCODING_LABELS[job.mapping["file"]["encoding"]],
            },
            field="encoding",
        )
    cleaned = clean_mapping(
        project=job.project,
        headers=job.mapping["headers"],
        columns=columns,
        key=key,
        default_evidence=default_evidence,
        opt_ins=lambda column: _has_opt_ins(job, column),
    )
    with transaction.atomic():
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != ImportStatus.UPLOADED:
            return locked
        locked.mapping = {**locked.mapping, **cleaned}
        locked.status = ImportStatus.QUEUED
        locked.save(update_fields=["mapping", "status"])
        record_audit(
            project=locked.project,
            actor=actor,
            action="import.started",
            obj=locked,
            changes={"key": key, "rows": locked.total_rows},
        )
        from ..actors import run_import_job

        transaction.on_commit(lambda: run_import_job.send(locked.pk))
    return locked


def discard_import(*, job: ImportJob, actor: Actor) -> None:
    """Delete a job that is not running, with its uploaded file and report."""
    if job.status in (ImportStatus.QUEUED, ImportStatus.RUNNING):
        raise InvalidInput(_("This import is still running; wait until it has finished."), code="conflict")
    with transaction.atomic():
        record_audit(
            project=job.project,
            actor=actor,
            action="import.deleted",
            changes={"import": str(job.public_id), "file": job.original_name},
        )
        job.delete()
    _delete_file(job.file)
    _delete_file(job.report)


def _delete_file(f) -> None:
    if f and f.name:
        f.storage.delete(f.name)
