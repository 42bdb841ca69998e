"""GDPR: erasing a subscriber scrubs the rows naming them from the project's import files."""

from __future__ import annotations

import codecs
import csv
import io
import posixpath
import tempfile
import uuid

from django.core.files import File
from django.db.models.fields.files import FieldFile
from django.dispatch import receiver

from controlpanel.models import Project

from ..errors import InvalidInput
from ..models import ImportJob, ImportRejection, ImportStatus
from ..phones import normalize_phone
from ..signals import SubscriberErased, subscriber_erased
from .files import UNDECODABLE, readable, text_encoding


@receiver(subscriber_erased, dispatch_uid="subscribers.imports.scrub_erased")
def scrub_erased_subscriber(sender, payload: SubscriberErased, **kwargs) -> None:
    # Reading every import file of the project is a worker's job, not the erasing request's.
    from ..actors import scrub_import_files as scrub_actor

    scrub_actor.send(payload.project_id, list(payload.identifiers))


def scrub_import_files(*, project_id: int, identifiers: list[str] | tuple[str, ...]) -> None:
    """Remove every row that names the erased subscriber from the project's import files.

    Covers finished jobs' rejected-rows reports, the rejected rows of running jobs and the
    source files of jobs not started yet. Idempotent: a second run finds nothing left to remove.
    """
    identifiers = {i.strip().lower() for i in identifiers if i and i.strip()}
    if not identifiers:
        return
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return
    phones = {i for i in identifiers if i.startswith("+")}
    jobs = ImportJob.objects.for_project(project).exclude(
        status__in=[ImportStatus.QUEUED, ImportStatus.RUNNING]
    )
    for job in jobs:
        if job.report and job.report.name:
            delimiter = job.mapping["file"]["delimiter"]
            cleaned = _scrub(job.report, identifiers, phones, project.default_country, "utf-8-sig", delimiter)
            _replace(job, "report", cleaned)
        if job.status == ImportStatus.UPLOADED and job.file and job.file.name:
            fmt = job.mapping["file"]
            cleaned = _scrub(
                job.file, identifiers, phones, project.default_country, text_encoding(job), fmt["delimiter"]
            )
            _replace(job, "file", cleaned, status=ImportStatus.UPLOADED)
    # The rejected rows of imports still running: their report is written from these later.
    rejections = ImportRejection.objects.filter(job__project=project)
    delimiters = {
        pk: mapping["file"]["delimiter"]
        for pk, mapping in ImportJob.objects.filter(pk__in=rejections.values("job_id")).values_list(
            "pk", "mapping"
        )
    }
    named = [
        pk
        for pk, job_id, row in rejections.values_list("pk", "job_id", "row").iterator(chunk_size=2000)
        if _mentions(
            next(csv.reader([bytes(row).decode("utf-8")], delimiter=delimiters[job_id]))[2:],
            identifiers,
            phones,
            project.default_country,
        )
    ]
    ImportRejection.objects.filter(pk__in=named).delete()


def _replace(job: ImportJob, field: str, cleaned: str | None, **still) -> None:
    """Point the job at its cleaned file and delete the old one, unless the job moved on
    meanwhile (started, discarded, scrubbed by another erasure): then the copy goes."""
    if cleaned is None:
        return
    f = getattr(job, field)
    if ImportJob.objects.filter(pk=job.pk, **{field: f.name}, **still).update(**{field: cleaned}):
        f.storage.delete(f.name)
    else:
        f.storage.delete(cleaned)


def _mentions(cells: list[str], identifiers: set[str], phones: set[str], country: str) -> bool:
    for cell in cells:
        text = cell.strip().lower()
        if not text:
            continue
        if text in identifiers:
            return True
        if phones and sum(ch.isdigit() for ch in text) >= 6:
            try:
                if normalize_phone(text, country) in phones:
                    return True
            except InvalidInput:
                continue
    return False


def _scrub(
    f: FieldFile, identifiers: set[str], phones: set[str], country: str, encoding: str, delimiter: str
) -> str | None:
    """Save a copy of the file without the rows that mention the subscriber, under a new name
    (returned; None if no row does).

    Through the field's storage only (a bucket has no local path). A new name, as buckets
    overwrite by default: the original stays until the job points at the copy.
    """
    storage, name = f.storage, f.name
    if not storage.exists(name):
        return None
    written = encoding
    if encoding == "utf-8-sig":
        with storage.open(name, "rb") as head:
            if head.read(3) != codecs.BOM_UTF8:
                written = "utf-8"  # "utf-8-sig" would add a BOM the file did not have
    removed = 0
    with storage.open(name, "rb") as binary, tempfile.TemporaryFile() as tmp:
        src = io.TextIOWrapper(binary, encoding=encoding, errors=UNDECODABLE, newline="")
        dst = io.TextIOWrapper(tmp, encoding=written, errors=UNDECODABLE, newline="")
        reader = csv.reader(src, delimiter=delimiter)
        writer = csv.writer(dst, delimiter=delimiter)
        for n, cells in enumerate(reader):
            if n > 0 and _mentions(cells, identifiers, phones, country):
                removed += 1
                continue
            try:
                writer.writerow(cells)
            except UnicodeEncodeError:
                # UTF-16 cannot write back a single odd byte: that row keeps a replacement mark.
                writer.writerow([readable(c) for c in cells])
        dst.flush()
        src.detach()
        if not removed:
            dst.detach()
            return None
        dst.seek(0)
        fresh = posixpath.join(posixpath.dirname(name), uuid.uuid4().hex + posixpath.splitext(name)[1])
        return storage.save(fresh, File(dst.detach()))
