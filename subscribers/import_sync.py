"""Imports started by another system (a nightly sync from a shop or CDP): the API and the command.

The same import as the panel's (``subscribers.imports``): upload, mapping, queue. What differs is
who chooses the mapping: the caller may pass one; without it, columns named like a field
("phone", "name", "email", ...) or like an existing tag map themselves, as the panel guesses, and
any other column is left out, so a file with a new column never creates tags unasked.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext as _

from controlpanel.models import Project
from controlpanel.services import Actor

from . import imports
from .errors import InvalidInput
from .models import ImportJob


def column_choice(
    headers: list[str], given: dict[str, str] | None, guessed: list[dict[str, str]]
) -> list[dict]:
    """The columns' targets: ``given`` maps header -> target (a field, ``tag:<name>``, ``new:<name>``
    or "" to skip); without it, the panel's guess without new tags."""
    if given is None:
        return [
            {"target": "" if column["target"] == "new" else column["target"], "new_tag": ""}
            for column in guessed
        ]
    unknown = sorted(set(given) - set(headers))
    if unknown:
        raise InvalidInput(
            _("The mapping names columns the file does not have: %(value)s.") % {"value": ", ".join(unknown)},
            field="mapping",
        )
    columns = []
    for header in headers:
        target = given.get(header, "")
        if target.startswith("new:"):
            columns.append({"target": "new", "new_tag": target[4:]})
        else:
            columns.append({"target": target, "new_tag": ""})
    return columns


def import_csv(
    *,
    project: Project,
    upload: UploadedFile,
    actor: Actor,
    mapping: dict[str, str] | None = None,
    key: str | None = None,
    default_evidence: str = "",
) -> ImportJob:
    """Store ``upload`` and queue its import; raises ImportFileError or InvalidInput with nothing queued.

    ``key``: "phone" or "external_id"; by default phone when a column maps to it. A file whose
    mapping is refused is discarded again, so a failed call leaves no half-made job behind.
    """
    job = imports.create_import(project=project, upload=upload, actor=actor)
    try:
        columns = column_choice(job.mapping["headers"], mapping, job.mapping["columns"])
        targets = {c["target"] for c in columns}
        chosen_key = key or ("phone" if "phone" in targets else "external_id")
        return imports.start_import(
            job=job, columns=columns, key=chosen_key, default_evidence=default_evidence, actor=actor
        )
    except InvalidInput:
        imports.discard_import(job=job, actor=actor)
        raise


def report_rows(job: ImportJob, limit: int = 1000) -> list[dict[str, Any]]:
    """The first ``limit`` rejected rows of a finished job: line, reason and the row's cells by header."""
    if not job.report:
        return []
    with job.report.open("rb") as f:
        text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, delimiter=job.mapping["file"]["delimiter"])
        header = next(reader, [])
        rows = []
        for record in reader:
            if len(rows) >= limit:
                break
            cells = dict(zip(header[2:], record[2:], strict=False))
            rows.append({"line": int(record[0]), "reason": record[1], "cells": cells})
        text.detach()
    return rows
