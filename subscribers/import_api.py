"""``/api/v1/imports``: CSV imports started by other systems, with progress and the per-row report."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import FileResponse, HttpRequest
from django.utils.translation import gettext as _
from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile

from controlpanel.api import ApiError, ErrorOut

from . import import_sync, imports
from .errors import InvalidInput
from .models import ImportJob, ImportStatus

router = Router(tags=["imports"])


class RejectedRowOut(Schema):
    line: int
    reason: str
    cells: dict[str, str]


class ImportOut(Schema):
    id: UUID
    status: str
    file_name: str
    total_rows: int | None
    processed_rows: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    error: str
    mapping: dict[str, str]
    key: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    report: list[RejectedRowOut] | None = None


def import_out(job: ImportJob, *, with_report: bool = False) -> dict[str, Any]:
    mapping = job.mapping
    targets = {
        header: ("new:" + column["new_tag"] if column["target"] == "new" else column["target"])
        for header, column in zip(mapping.get("headers", []), mapping.get("columns", []), strict=False)
    }
    finished = job.status in (ImportStatus.DONE, ImportStatus.FAILED)
    return {
        "id": job.public_id,
        "status": job.status,
        "file_name": job.original_name,
        "total_rows": job.total_rows,
        "processed_rows": job.processed_rows,
        "created": job.created_count,
        "updated": job.updated_count,
        "unchanged": job.unchanged_count,
        "rejected": job.rejected_count,
        "error": job.error,
        "mapping": targets,
        "key": mapping.get("key", ""),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "report": import_sync.report_rows(job) if with_report and finished else None,
    }


MAPPING_HELP = (
    "Optional JSON object from column header to target: `phone`, `external_id`, `name`, `email`, "
    "`language`, `country`, `time_zone`, `consent` (WhatsApp), `email_consent`, `consent_evidence`, "
    '`tag:<existing tag>`, `new:<new tag name>`, or `""` to leave the column out. Without it, columns '
    "named like a field or an existing tag map themselves (as the panel guesses) and other columns "
    "are left out."
)


@router.post(
    "/imports",
    response={202: ImportOut, 422: ErrorOut},
    exclude_none=True,
    summary="Import a CSV file of subscribers",
    description=(
        "Multipart upload (`file`), queued at once; poll `GET /imports/{id}` for progress. "
        f"`mapping`: {MAPPING_HELP} `key`: `phone` or `external_id` (rows are matched by it; default "
        "`phone` when a column maps to it). `default_evidence`: how the file's opt-ins agreed, needed "
        "when a consent column opts people in and no evidence column is mapped. Rows that fail are "
        "reported with their line and reason; the others are imported. Dates and times without an "
        "offset are the project's local time."
    ),
)
def create_import(
    request: HttpRequest,
    file: File[UploadedFile],
    mapping: Form[str | None] = None,
    key: Form[str | None] = None,
    default_evidence: Form[str] = "",
):
    given = None
    if mapping:
        try:
            given = json.loads(mapping)
        except ValueError:
            raise ApiError(422, "invalid_mapping", _("mapping must be a JSON object."), "mapping") from None
        if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
            raise ApiError(
                422, "invalid_mapping", _("mapping must map column headers to target strings."), "mapping"
            )
    try:
        job = import_sync.import_csv(
            project=request.project,
            upload=file,
            actor=request.actor,
            mapping=given,
            key=key,
            default_evidence=default_evidence,
        )
    except imports.ImportFileError as exc:
        raise ApiError(422, "invalid_file", str(exc), "file") from None
    except InvalidInput as exc:
        raise ApiError(
            422, exc.code if exc.code != "invalid" else "invalid_mapping", exc.message, exc.field
        ) from None
    return Status(202, import_out(job))


def _job(request: HttpRequest, import_id: UUID) -> ImportJob:
    job = ImportJob.objects.for_project(request.project).filter(public_id=import_id).first()
    if job is None:
        raise ApiError(404, "not_found", _("No import %(id)s in this project.") % {"id": import_id})
    return job


@router.get(
    "/imports/{import_id}",
    response={200: ImportOut, 404: ErrorOut},
    exclude_none=True,
    summary="An import's progress, counts and rejected rows",
    description="`report` lists the first 1,000 rejected rows once the import has finished; "
    "`GET /imports/{id}/report` has them all as CSV.",
)
def get_import(request: HttpRequest, import_id: UUID):
    return import_out(_job(request, import_id), with_report=True)


@router.get(
    "/imports/{import_id}/report",
    response={200: None, 404: ErrorOut},
    summary="The rejected rows as CSV",
    openapi_extra={"responses": {200: {"content": {"text/csv": {}}, "description": "line, reason, cells"}}},
)
def get_import_report(request: HttpRequest, import_id: UUID):
    job = _job(request, import_id)
    if not job.report:
        raise ApiError(404, "no_report", _("This import has no rejected rows (or has not finished)."))
    return FileResponse(
        job.report.open("rb"), as_attachment=True, filename=f"import-{job.public_id}-rejected.csv"
    )
