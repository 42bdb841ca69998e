"""The rejected-rows report: rows kept in the database per chunk, turned into a file at the end.

The rows of a running import live in ImportRejection, written in each chunk's transaction, so
that every worker (on any machine) sees those of the chunks before it, and a chunk that rolls
back takes its rows with it. The finished report goes through the report field's storage (a
shared volume, or a bucket), never a local path.
"""

from __future__ import annotations

import codecs
import csv
import io
import tempfile

from django.core.files import File

from ..models import ImportJob, ImportRejection
from .files import readable
from .validation import Rejection


class ReportWriter:
    """The rejected rows of one run of a job, in file order."""

    def __init__(self, job: ImportJob, keep_below: int):
        self.job = job
        self.delimiter = job.mapping["file"]["delimiter"]
        rows = ImportRejection.objects.filter(job=job)
        # Rows at or after the checkpoint commit only with their chunk, so there are none; a
        # run that resumes must not rely on that for the rows it replays.
        rows.filter(index__gte=keep_below).delete()
        # The rows before the checkpoint that were rejected: a resumed run replays the others.
        self.indexes = set(rows.values_list("index", flat=True)) if keep_below else set()

    def append(self, rejections: list[Rejection]) -> None:
        """Called in the chunk's transaction: the rows commit, or roll back, with the chunk."""
        if rejections:
            ImportRejection.objects.bulk_create(
                [ImportRejection(job=self.job, index=r.index, row=self._line(r)) for r in rejections],
                batch_size=2000,
            )

    def _line(self, r: Rejection) -> bytes:
        out = io.StringIO()
        csv.writer(out, delimiter=self.delimiter).writerow([r.line, r.reason, *map(readable, r.cells)])
        return out.getvalue().encode("utf-8")

    def finish(self, job: ImportJob) -> str:
        return finish_report(job)


def finish_report(job: ImportJob) -> str:
    """Write the rejected rows to the report file in storage; return its name ("" if none).

    The rows stay in the database until the job's end is recorded (drop_rejections), so a run
    that dies in between writes the report again.
    """
    rows = (
        ImportRejection.objects.filter(job=job)
        .order_by("index")
        .values_list("row", flat=True)
        .iterator(chunk_size=2000)
    )
    with tempfile.TemporaryFile() as tmp:
        header = io.StringIO()
        csv.writer(header, delimiter=job.mapping["file"]["delimiter"]).writerow(
            ["line", "reason", *job.mapping["headers"]]
        )
        tmp.write(codecs.BOM_UTF8 + header.getvalue().encode("utf-8"))
        empty = True
        for row in rows:
            tmp.write(row)
            empty = False
        if empty:
            return ""
        tmp.seek(0)
        job.report.save(f"import-{job.public_id}-rejected.csv", File(tmp), save=False)
    return job.report.name


def drop_rejections(job: ImportJob) -> None:
    """Once the report file is the job's: the rows it was written from are no longer needed."""
    ImportRejection.objects.filter(job=job).delete()
