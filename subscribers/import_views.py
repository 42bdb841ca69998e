"""CSV import and export pages: upload, mapping, progress, report; streamed exports."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from controlpanel.models import Role
from controlpanel.services import Actor, record_audit
from controlpanel.tenancy import project_view
from controlpanel.wording import mid_sentence

from . import exports, imports
from . import tags as tagtypes
from .errors import InvalidInput
from .models import ImportJob, ImportStatus
from .views import ListFilters, _segments, filtered_subscribers

FINISHED = (ImportStatus.DONE, ImportStatus.FAILED)
# htmx stops polling when it gets this status (and still swaps the final state in).
STOP_POLLING = 286


def _actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user)


def _job(request: HttpRequest, job_id: UUID) -> ImportJob:
    return get_object_or_404(
        ImportJob.objects.for_project(request.project).select_related("created_by"), public_id=job_id
    )


@project_view(section="subscribers", read=Role.MARKETER)
def import_upload(request: HttpRequest) -> HttpResponse:
    """Import and export: upload a CSV, see recent imports, download exports."""
    project = request.project
    error = ""
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            error = _("Choose a CSV file to upload.")
        else:
            try:
                job = imports.create_import(project=project, upload=upload, actor=_actor(request))
            except imports.ImportFileError as exc:
                error = str(exc)
            else:
                return redirect("subscribers:import_detail", project.slug, job.public_id)
    context = {
        "error": error,
        "jobs": ImportJob.objects.for_project(project).select_related("created_by")[:20],
        "segments": sorted(_segments(project).values(), key=lambda s: s.name.lower()),
        "max_rows_label": number_format(imports.max_rows(), force_grouping=True),
        "max_mb": imports.max_bytes() // (1024 * 1024),
    }
    return render(request, "subscribers/import_upload.html", context, status=400 if error else 200)


def _target_choices(project) -> list[tuple[str, list[tuple[str, str]]]]:
    fields = [(t, imports.TARGET_LABELS[t]) for t in ("phone", "external_id", *imports.PROFILE_TARGETS)]
    consent = [(t, imports.TARGET_LABELS[t]) for t in (*imports.CONSENT_TARGETS, "consent_evidence")]
    tags = [
        (
            f"tag:{d.name}",
            _("Tag: %(name)s (%(type)s)") % {"name": d.name, "type": mid_sentence(d.get_type_display())},
        )
        for d in tagtypes.definitions(project).values()
    ]
    return [
        ("", [("", _("Ignore this column")), ("new", _("New tag"))]),
        (_("Subscriber"), fields),
        (_("Consent"), consent),
        (_("Existing tags"), sorted(tags, key=lambda c: c[1].lower())),
    ]


def _posted_columns(request: HttpRequest, count: int) -> list[dict[str, str]]:
    return [
        {"target": request.POST.get(f"col_{i}", ""), "new_tag": request.POST.get(f"newtag_{i}", "")}
        for i in range(count)
    ]


@project_view(section="subscribers", read=Role.MARKETER)
def import_detail(request: HttpRequest, job_id: UUID) -> HttpResponse:
    """An uploaded job: the preview with its column mapping. Later: progress, then the summary."""
    job = _job(request, job_id)
    if job.status != ImportStatus.UPLOADED:
        if request.method == "POST":
            return redirect("subscribers:import_detail", request.project.slug, job.public_id)
        return render(request, "subscribers/import_job.html", _job_context(request, job))
    headers = job.mapping["headers"]
    columns = job.mapping["columns"]
    key = "phone" if any(c["target"] == "phone" for c in columns) else "external_id"
    evidence = ""
    error: InvalidInput | None = None
    if request.method == "POST":
        columns = _posted_columns(request, len(headers))
        key = request.POST.get("key", "")
        evidence = request.POST.get("default_evidence", "")
        try:
            imports.start_import(
                job=job, columns=columns, key=key, default_evidence=evidence, actor=_actor(request)
            )
        except InvalidInput as exc:
            error = exc
        else:
            return redirect("subscribers:import_detail", request.project.slug, job.public_id)
    try:
        rows = imports.preview(job)
    except FileNotFoundError:
        raise Http404("The uploaded file is gone; upload it again.") from None
    context = {
        "job": job,
        "undecodable": _undecodable_context(job),
        "delimiter_label": {",": _("comma"), ";": _("semicolon"), "\t": _("tab")}[
            job.mapping["file"]["delimiter"]
        ],
        "columns": [
            {
                "index": i,
                "field": f"col_{i}",
                "header": h,
                "target": c["target"],
                "new_tag": c.get("new_tag") or h,
            }
            for i, (h, c) in enumerate(zip(headers, columns, strict=True))
        ],
        "rows": rows,
        "choices": _target_choices(request.project),
        "key": key,
        "default_evidence": evidence,
        "error": error,
    }
    return render(request, "subscribers/import_mapping.html", context, status=400 if error else 200)


def _undecodable_context(job: ImportJob) -> dict | None:
    """The rows of the file that do not decode and the choice about them (None: no question)."""
    found = job.mapping["file"].get("undecodable")
    if not found:
        return None
    alternative = found["alternative"]
    return {
        **found,
        "encoding_label": imports.ENCODING_LABELS[job.mapping["file"]["encoding"]],
        "alternative_label": imports.ENCODING_LABELS[alternative] if alternative else "",
        "choice": job.undecodable_rows,
        # Reading a file none of whose rows is valid UTF-8 with accents in another encoding
        # re-reads nothing valid: suggest it. Otherwise suggest skipping, which keeps them.
        "suggested": "reencode" if alternative and not found["recoded"] else "skip",
    }


@project_view(section="subscribers", read=Role.MARKETER)
@require_POST
def import_encoding(request: HttpRequest, job_id: UUID) -> HttpResponse:
    """The choice for rows that do not decode: skip them, or read the file in another encoding."""
    job = _job(request, job_id)
    try:
        imports.choose_undecodable_rows(job=job, choice=request.POST.get("choice", ""), actor=_actor(request))
    except InvalidInput as exc:
        messages.error(request, exc.message)
    return redirect("subscribers:import_detail", request.project.slug, job.public_id)


def _job_context(request: HttpRequest, job: ImportJob) -> dict:
    total = job.total_rows or 0
    return {
        "job": job,
        "finished": job.status in FINISHED,
        "percent": int(job.processed_rows * 100 / total) if total else 0,
        "progress_url": reverse("subscribers:import_progress", args=[request.project.slug, job.public_id]),
    }


@project_view(section="subscribers", read=Role.MARKETER)
def import_progress(request: HttpRequest, job_id: UUID) -> HttpResponse:
    """The progress partial; htmx polls it until the job has finished (then: 286)."""
    job = _job(request, job_id)
    response = render(request, "subscribers/import_job.html#import-progress", _job_context(request, job))
    if job.status in FINISHED or job.status == ImportStatus.UPLOADED:
        response.status_code = STOP_POLLING
    return response


@project_view(section="subscribers", read=Role.MARKETER)
def import_report(request: HttpRequest, job_id: UUID) -> FileResponse:
    """The rejected rows of a finished job: line, reason and the original cells."""
    job = _job(request, job_id)
    if not job.report:
        raise Http404("This import has no rejected rows.")
    try:
        handle = job.report.open("rb")
    except FileNotFoundError:
        raise Http404("The report file is gone.") from None
    stem = Path(job.original_name).stem or "import"
    return FileResponse(
        handle,
        as_attachment=True,
        filename=f"{stem}-rejected-rows.csv",
        content_type="text/csv; charset=utf-8",
    )


@project_view(section="subscribers", read=Role.MARKETER)
@require_POST
def import_delete(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = _job(request, job_id)
    try:
        imports.discard_import(job=job, actor=_actor(request))
    except InvalidInput as exc:
        messages.error(request, exc.message)
        return redirect("subscribers:import_detail", request.project.slug, job.public_id)
    messages.success(request, _("Import of “%(name)s” deleted with its files.") % {"name": job.original_name})
    return redirect("subscribers:import_upload", request.project.slug)


def _csv_response(lines, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


@project_view(section="subscribers", read=Role.MARKETER)
def export_subscribers(request: HttpRequest) -> HttpResponse:
    """The subscriber list as CSV, with the list's filters (search, consent, tag, segment)."""
    project = request.project
    f = ListFilters.from_data(request.GET)
    segments = _segments(project)
    qs = filtered_subscribers(project, f, segments)
    if f.errors:
        messages.error(request, _("Nothing exported: %(errors)s") % {"errors": " ".join(f.errors.values())})
        return redirect(reverse("subscribers:list", args=[project.slug]) + f.query())
    label = slugify(segments[f.segment].name) if f.segment else "filtered" if f.active else "all"
    record_audit(
        project=project,
        actor=_actor(request),
        action="subscribers.exported",
        changes={k: v for k, v in f.params().items() if k != "sort"},
    )
    filename = f"subscribers-{project.slug}-{label}-{timezone.now():%Y%m%d}.csv"
    return _csv_response(exports.csv_lines(exports.subscriber_rows(project, qs)), filename)


@project_view(section="subscribers", read=Role.MARKETER)
def export_consent(request: HttpRequest) -> HttpResponse:
    """Every consent change of the project (the opt-in ledger) as CSV."""
    project = request.project
    record_audit(project=project, actor=_actor(request), action="consent.exported")
    filename = f"consent-ledger-{project.slug}-{timezone.now():%Y%m%d}.csv"
    return _csv_response(exports.csv_lines(exports.consent_rows(project)), filename)


urlpatterns = [
    path("subscribers/import/", import_upload, name="import_upload"),
    path("subscribers/import/<uuid:job_id>/", import_detail, name="import_detail"),
    path("subscribers/import/<uuid:job_id>/encoding/", import_encoding, name="import_encoding"),
    path("subscribers/import/<uuid:job_id>/progress/", import_progress, name="import_progress"),
    path("subscribers/import/<uuid:job_id>/report/", import_report, name="import_report"),
    path("subscribers/import/<uuid:job_id>/delete/", import_delete, name="import_delete"),
    path("subscribers/export/", export_subscribers, name="export"),
    path("subscribers/export/consent/", export_consent, name="export_consent"),
]
