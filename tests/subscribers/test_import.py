"""CSV import: the pipeline end to end (upload, mapping, the job, the report)."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from controlpanel.services import Actor
from subscribers import imports
from subscribers.models import (
    ImportJob,
    ImportStatus,
    Subscriber,
    TagDefinition,
)
from subscribers.services import tags_of


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def user(owner):
    return owner


def upload(project, user, content, name="people.csv") -> ImportJob:
    data = content.encode() if isinstance(content, str) else content
    return imports.create_import(
        project=project, upload=SimpleUploadedFile(name, data, "text/csv"), actor=Actor(user=user)
    )


def run(job, *, columns=None, key="phone", evidence="", user=None) -> ImportJob:
    imports.start_import(
        job=job,
        columns=columns or job.mapping["columns"],
        key=key,
        default_evidence=evidence,
        actor=Actor(user=user),
    )
    imports.run_import(job_id=job.pk)
    job.refresh_from_db()
    return job


def do_import(project, user, content, **kwargs) -> ImportJob:
    return run(upload(project, user, content), user=user, **kwargs)


def report_rows(job) -> list[dict[str, str]]:
    with job.report.open("rb") as f:
        text = f.read().decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text), delimiter=job.mapping["file"]["delimiter"]))


def test_bad_rows_are_reported_and_good_rows_imported(project, user):
    TagDefinition.objects.create(project=project, name="orders", type="integer")
    job = do_import(
        project,
        user,
        "phone,name,orders,email\n"
        "+4915112345678,Ada,3,ada@example.com\n"
        "12,Bob,1,\n"
        "+4915112345679,Cy,many,\n"
        "+4915112345680,Di,2,not-an-email\n"
        ",Eve,1,\n"
        "0151 12345681,Fay,,fay@example.com\n",
    )
    assert job.status == ImportStatus.DONE
    assert (job.created_count, job.updated_count, job.unchanged_count, job.rejected_count) == (2, 0, 0, 4)
    phones = set(Subscriber.objects.for_project(project).values_list("phone", flat=True))
    assert phones == {"+4915112345678", "+4915112345681"}
    rows = report_rows(job)
    assert [r["line"] for r in rows] == ["3", "4", "5", "6"]
    assert "'12' is not a valid phone number" in rows[0]["reason"]
    assert rows[0]["name"] == "Bob"
    assert "Tag 'orders' expects integer, got 'many'" in rows[1]["reason"]
    assert "'not-an-email' is not an email address" in rows[2]["reason"]
    assert rows[3]["reason"] == "The phone number is missing."
    ada = Subscriber.objects.get(project=project, phone="+4915112345678")
    assert tags_of(ada)["orders"] == 3
    assert ada.email == "ada@example.com"
    assert not job.file
