"""``manage.py import_subscribers <project> <file.csv>``: a CSV import from a cron job or a script."""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError

from controlpanel.models import Project
from controlpanel.services import Actor
from subscribers import import_sync, imports
from subscribers.errors import InvalidInput
from subscribers.models import ImportJob, ImportStatus


class Command(BaseCommand):
    help = (
        "Import subscribers from a CSV file into a project, as the panel's import does. Without "
        "--mapping, columns named like a field or an existing tag map themselves; others are left out."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("project", help="the project's slug")
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--mapping", help='JSON: {"column header": "phone" | "tag:city" | "new:score" | ""}'
        )
        parser.add_argument("--key", choices=["phone", "external_id"])
        parser.add_argument("--evidence", default="", help="how the file's opt-ins agreed")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="wait until a worker has finished it and print the counts (the embedded mode, without a "
            "broker, runs the import in this process and always waits)",
        )

    def handle(self, *args, **options) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with the slug {options['project']!r}.")
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        mapping = None
        if options["mapping"]:
            try:
                mapping = json.loads(options["mapping"])
            except ValueError as exc:
                raise CommandError(f"--mapping is not JSON: {exc}") from None
        upload = SimpleUploadedFile(path.name, path.read_bytes(), content_type="text/csv")
        try:
            job = import_sync.import_csv(
                project=project,
                upload=upload,
                actor=Actor(label="manage.py import_subscribers"),
                mapping=mapping,
                key=options["key"],
                default_evidence=options["evidence"],
            )
        except (imports.ImportFileError, InvalidInput) as exc:
            raise CommandError(getattr(exc, "message", str(exc))) from None
        self.stdout.write(f"import={job.public_id} rows={job.total_rows} status={job.status}")
        embedded = not settings.DRAMATIQ_BROKER_URL
        if embedded:
            # The in-process queue lives in this process only: no worker would ever see the job.
            imports.run_import(job_id=job.pk)
            job.refresh_from_db()
        if embedded or options["wait"]:
            job = self._wait(job)
            self.stdout.write(
                f"status={job.status} created={job.created_count} updated={job.updated_count} "
                f"unchanged={job.unchanged_count} rejected={job.rejected_count}"
            )
            for row in import_sync.report_rows(job, limit=20):
                self.stdout.write(f"  line {row['line']}: {row['reason']}")
            if job.status == ImportStatus.FAILED:
                raise CommandError(job.error)

    def _wait(self, job: ImportJob) -> ImportJob:
        while job.status not in (ImportStatus.DONE, ImportStatus.FAILED):
            time.sleep(1)
            job.refresh_from_db()
        return job
