"""Imports with a storage that has no local path, as a bucket: web and workers on different
machines share the files only through Django's storage API, and the rows of a running import
only through the database."""

from __future__ import annotations

import pytest
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from controlpanel.models import Role
from controlpanel.services import Actor
from subscribers import imports
from subscribers.models import ImportJob, ImportRejection, ImportStatus, Subscriber
from tests.factories import SubscriberFactory
from tests.storage import RemoteStorage

# Ada's 3 makes "orders" an integer tag; Bob and Cy are rejected for their orders, one in a
# chunk before the crash below and one after it.
CSV = (
    b"Phone,Name,Orders\n"
    b"+4915112345678,Ada,3\n"
    b"+4915112345679,Bob,x\n"
    b"+4915112345681,Dan,4\n"
    b"+4915112345680,Cy,y\n"
)


@pytest.fixture
def storage(settings, tmp_path) -> RemoteStorage:
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "tests.storage.RemoteStorage"}}
    # The web process's local media folder: nothing may land there.
    settings.MEDIA_ROOT = tmp_path / "web-media"
    return storages["default"]


def report_lines(client, project, job) -> list[str]:
    response = client.get(reverse("subscribers:import_report", args=[project.slug, job.public_id]))
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode("utf-8-sig").splitlines()


def test_an_import_runs_end_to_end_through_a_storage_without_local_paths(
    client, project, member_of, storage, settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    from subscribers import actors, services

    assert isinstance(storage, RemoteStorage)
    with pytest.raises(NotImplementedError):
        storage.path("anything")
    user = member_of(Role.MARKETER)
    client.force_login(user)
    bob = SubscriberFactory(project=project, phone="+4915112345679")

    # Upload and mapping, through the pages (the web process).
    response = client.post(
        reverse("subscribers:import_upload", args=[project.slug]),
        {"file": SimpleUploadedFile("people.csv", CSV, "text/csv")},
    )
    job = ImportJob.objects.get(project=project)
    assert response.status_code == 302
    assert storage.names() == [job.file.name]
    detail = reverse("subscribers:import_detail", args=[project.slug, job.public_id])
    assert "Dan" in client.get(detail).content.decode()  # the preview reads the stored file
    monkeypatch.setattr(actors.run_import_job, "send", lambda job_id: None)  # run below, as a worker
    mapping = {"col_0": "phone", "col_1": "name", "col_2": "new", "newtag_2": "orders", "key": "phone"}
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(detail, mapping).status_code == 302

    # A worker crashes after two chunks; another one, with its own (empty) local disk, resumes.
    monkeypatch.setattr(imports, "CHUNK_SIZE", 1)
    original, calls = imports.Applier._apply_rows, {"n": 0}

    def crash_on_dan(self, rows, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return original(self, rows, **kwargs)

    settings.MEDIA_ROOT = tmp_path / "worker-1-media"
    with monkeypatch.context() as m:
        m.setattr(imports.Applier, "_apply_rows", crash_on_dan)
        with pytest.raises(RuntimeError):
            imports.run_import(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.processed_rows) == (ImportStatus.RUNNING, 2)
    assert ImportRejection.objects.filter(job=job).count() == 1  # Bob's, committed
    settings.MEDIA_ROOT = tmp_path / "worker-2-media"
    imports.run_import(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.created_count, job.rejected_count) == (ImportStatus.DONE, 2, 2)
    assert not ImportRejection.objects.filter(job=job).exists()
    assert storage.names() == [job.report.name]  # the source file is gone, the report kept

    # The report, downloaded from the web process: both rejected rows, from both runs.
    assert report_lines(client, project, job) == [
        "line,reason,Phone,Name,Orders",
        "3,\"Tag 'orders' expects integer, got 'x'.\",+4915112345679,Bob,x",
        "5,\"Tag 'orders' expects integer, got 'y'.\",+4915112345680,Cy,y",
    ]

    # Erasing Bob scrubs his row from the report (in a worker: here at once).
    monkeypatch.setattr(actors.scrub_import_files, "send", actors.scrub_import_files.fn)
    with django_capture_on_commit_callbacks(execute=True):
        services.erase_subscriber(subscriber=bob, actor=Actor(user=user))
    job.refresh_from_db()
    assert report_lines(client, project, job) == [
        "line,reason,Phone,Name,Orders",
        "5,\"Tag 'orders' expects integer, got 'y'.\",+4915112345680,Cy,y",
    ]
    assert storage.names() == [job.report.name]  # the unscrubbed report is deleted

    # Discarding the job deletes its report from the storage.
    response = client.post(reverse("subscribers:import_delete", args=[project.slug, job.public_id]))
    assert response.status_code == 302
    assert not ImportJob.objects.filter(pk=job.pk).exists()
    assert storage.names() == []
    assert Subscriber.objects.filter(project=project).count() == 2
    # No process wrote a file of its own on its local disk.
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_erasure_drops_the_rejected_rows_of_a_running_import_that_name_the_subscriber(
    project, owner, storage, monkeypatch, django_capture_on_commit_callbacks
):
    from subscribers import actors, services

    monkeypatch.setattr(actors.scrub_import_files, "send", actors.scrub_import_files.fn)
    bob = SubscriberFactory(project=project, phone="+4915112345679")
    job = imports.create_import(
        project=project, upload=SimpleUploadedFile("people.csv", CSV, "text/csv"), actor=Actor(user=owner)
    )
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.RUNNING)
    job.refresh_from_db()
    report = imports.ReportWriter(job, keep_below=0)
    report.append(
        [
            imports.Rejection(
                0, 2, "Tag 'orders' expects integer, got 'x'.", ["+49 151 12345679", "Bob", "x"]
            ),
            imports.Rejection(2, 4, "Tag 'orders' expects integer, got 'y'.", ["+4915112345680", "Cy", "y"]),
        ]
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.erase_subscriber(subscriber=bob, actor=Actor(user=owner))
    assert list(ImportRejection.objects.filter(job=job).values_list("index", flat=True)) == [2]
