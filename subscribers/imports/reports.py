"""The rejected-rows report: a work file appended per chunk, turned into a download at the end."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from django.conf import settings
from django.core.files import File

from ..models import ImportJob
from .files import readable
from .validation import Rejection


def work_path(job: ImportJob) -> Path:
    return Path(settings.MEDIA_ROOT) / "imports" / "work" / f"{job.public_id}-rejected.csv"


class ReportWriter:
    """The work file of rejected rows: [record index, line, reason, *cells] per row.

    Appended and synced before each chunk commits; trimmed to the checkpoint on resume.
    """

    def __init__(self, job: ImportJob, keep_below: int):
        self.path = work_path(job)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[list[str]] = []
        if keep_below and self.path.exists():
            with self.path.open(newline="", encoding="utf-8") as f:
                kept = [r for r in csv.reader(f) if r and int(r[0]) < keep_below]
        self.indexes = {int(r[0]) for r in kept}
        self._rewrite(kept)

    def _rewrite(self, rows: list[list[str]]) -> None:
        with self.path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
            f.flush()
            os.fsync(f.fileno())

    def append(self, rejections: list[Rejection]) -> None:
        if not rejections:
            return
        with self.path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            for r in rejections:
                writer.writerow([r.index, r.line, r.reason, *map(readable, r.cells)])
            f.flush()
            os.fsync(f.fileno())

    def truncate_to(self, below: int) -> None:
        with self.path.open(newline="", encoding="utf-8") as f:
            kept = [r for r in csv.reader(f) if r and int(r[0]) < below]
        self._rewrite(kept)

    def finish(self, job: ImportJob) -> str:
        return finish_report(job)


def finish_report(job: ImportJob) -> str:
    """Turn the work file into the downloadable report in storage; return its name ("" if none)."""
    path = work_path(job)
    if not path.exists():
        return ""
    if path.stat().st_size == 0:
        path.unlink()
        return ""
    out = path.with_suffix(".report.csv")
    with (
        path.open(newline="", encoding="utf-8") as src,
        out.open("w", newline="", encoding="utf-8-sig") as dst,
    ):
        writer = csv.writer(dst, delimiter=job.mapping["file"]["delimiter"])
        writer.writerow(["line", "reason", *job.mapping["headers"]])
        for r in csv.reader(src):
            writer.writerow(r[1:])
    with out.open("rb") as f:
        job.report.save(f"import-{job.public_id}-rejected.csv", File(f), save=False)
    out.unlink()
    path.unlink()
    return job.report.name
