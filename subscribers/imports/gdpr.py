"""GDPR: erasing a subscriber scrubs the rows naming them from the project's import files."""

from __future__ import annotations

import codecs
import csv
import os
from pathlib import Path

from django.dispatch import receiver

from controlpanel.models import Project

from ..errors import InvalidInput
from ..models import ImportJob, ImportStatus
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

    Covers finished jobs' rejected-rows reports and the source files of jobs not started yet.
    Idempotent: a second run finds nothing left to remove.
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
            _scrub(
                job.report,
                identifiers,
                phones,
                project.default_country,
                "utf-8-sig",
                job.mapping["file"]["delimiter"],
            )
        if job.status == ImportStatus.UPLOADED and job.file and job.file.name:
            fmt = job.mapping["file"]
            _scrub(
                job.file, identifiers, phones, project.default_country, text_encoding(job), fmt["delimiter"]
            )


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


def _scrub(f, identifiers: set[str], phones: set[str], country: str, encoding: str, delimiter: str) -> None:
    path = Path(f.path)
    if not path.exists():
        return
    tmp = path.with_suffix(".scrub")
    removed = 0
    written = encoding
    if encoding == "utf-8-sig":
        with path.open("rb") as head:
            if head.read(3) != codecs.BOM_UTF8:
                written = "utf-8"  # "utf-8-sig" would add a BOM the file did not have
    with (
        path.open(newline="", encoding=encoding, errors=UNDECODABLE) as src,
        tmp.open("w", newline="", encoding=written, errors=UNDECODABLE) as dst,
    ):
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
    if removed:
        os.replace(tmp, path)
    else:
        tmp.unlink()
