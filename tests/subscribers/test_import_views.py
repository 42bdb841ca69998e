"""The import pages: upload, mapping, progress (htmx polling that stops with 286), report, delete."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from controlpanel.models import Role
from controlpanel.services import SYSTEM
from subscribers import imports
from subscribers.models import ImportJob, ImportStatus, Subscriber


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def broker():
    """An in-memory broker for the import actors, whatever broker the settings configure."""
    from dramatiq.brokers.stub import StubBroker

    from subscribers import actors

    stub = StubBroker()
    originals = {actor: actor.broker for actor in (actors.run_import_job, actors.fail_import_job)}
    for actor in originals:
        actor.broker = stub
        stub.declare_actor(actor)
    yield stub
    for actor, original in originals.items():
        actor.broker = original


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


CSV = b"Phone,Name,Orders\n+4915112345678,Ada,3\n+4915112345679,Bob,x\n"


def upload(client, project, content=CSV, name="people.csv"):
    return client.post(
        reverse("subscribers:import_upload", args=[project.slug]),
        {"file": SimpleUploadedFile(name, content, "text/csv")},
    )


def test_upload_leads_to_the_mapping_page(marketer_client, project):
    page = marketer_client.get(reverse("subscribers:import_upload", args=[project.slug]))
    assert page.status_code == 200
    assert b'enctype="multipart/form-data"' in page.content
    response = upload(marketer_client, project)
    job = ImportJob.objects.get(project=project)
    assert response.status_code == 302
    assert response["Location"] == reverse("subscribers:import_detail", args=[project.slug, job.public_id])
    mapping = marketer_client.get(response["Location"])
    html = mapping.content.decode()
    assert mapping.status_code == 200
    assert "+4915112345679" in html and "Bob" in html  # the preview
    assert '<option value="phone" selected>' in html
    assert '<option value="name" selected>' in html
    assert 'name="newtag_2" value="Orders"' in html


def test_a_bad_file_is_refused_on_the_upload_page(marketer_client, project):
    response = upload(marketer_client, project, b"PK\x03\x04....", name="people.xlsx")
    assert response.status_code == 400
    assert "is a spreadsheet, not a CSV file" in response.content.decode()
    assert not ImportJob.objects.exists()
    response = marketer_client.post(reverse("subscribers:import_upload", args=[project.slug]), {})
    assert response.status_code == 400
    assert "Choose a CSV file" in response.content.decode()


def mapping_post(**extra):
    return {"col_0": "phone", "col_1": "name", "col_2": "new", "newtag_2": "orders", "key": "phone", **extra}


def test_a_bad_mapping_is_shown_with_its_error(marketer_client, project):
    upload(marketer_client, project)
    job = ImportJob.objects.get(project=project)
    url = reverse("subscribers:import_detail", args=[project.slug, job.public_id])
    response = marketer_client.post(url, mapping_post(col_1="phone"))
    assert response.status_code == 400
    assert "are both mapped to Phone" in response.content.decode()
    job.refresh_from_db()
    assert job.status == ImportStatus.UPLOADED


def test_starting_queues_the_job_after_commit_and_progress_polls_until_done(
    marketer_client, project, broker, django_capture_on_commit_callbacks
):
    upload(marketer_client, project)
    job = ImportJob.objects.get(project=project)
    url = reverse("subscribers:import_detail", args=[project.slug, job.public_id])
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer_client.post(url, mapping_post())
    assert response.status_code == 302 and response["Location"] == url
    job.refresh_from_db()
    assert job.status == ImportStatus.QUEUED
    # Imports run on the long-job queue, so they never delay sends or webhooks.
    queue = broker.queues[settings.DRAMATIQ_LONG_QUEUE]
    (message,) = [queue.get_nowait() for _ in range(queue.qsize())]
    assert b"run_import_job" in message

    page = marketer_client.get(url)
    progress_url = reverse("subscribers:import_progress", args=[project.slug, job.public_id])
    assert f'hx-get="{progress_url}"' in page.content.decode()
    polling = marketer_client.get(progress_url, headers={"HX-Request": "true"})
    assert polling.status_code == 200
    assert 'hx-trigger="every 1s"' in polling.content.decode()
    assert "Waiting for a worker" in polling.content.decode()

    imports.run_import(job_id=job.pk)
    done = marketer_client.get(progress_url, headers={"HX-Request": "true"})
    html = done.content.decode()
    assert done.status_code == 286
    assert "hx-trigger" not in html
    assert 'data-testid="count-created">1<' in html
    assert 'data-testid="count-rejected">1<' in html
    assert Subscriber.objects.filter(project=project).count() == 1

    report = marketer_client.get(reverse("subscribers:import_report", args=[project.slug, job.public_id]))
    assert report.status_code == 200
    assert report["Content-Disposition"] == 'attachment; filename="people-rejected-rows.csv"'
    body = b"".join(report.streaming_content).decode("utf-8-sig")
    assert body.splitlines() == [
        "line,reason,Phone,Name,Orders",
        "3,\"Tag 'orders' expects integer, got 'x'.\",+4915112345679,Bob,x",
    ]
    # A second submit of the mapping form does not start it again.
    assert marketer_client.post(url, mapping_post()).status_code == 302
    assert queue.qsize() == 0


def test_a_finished_import_can_be_deleted_with_its_files(marketer_client, project):
    upload(marketer_client, project)
    job = ImportJob.objects.get(project=project)
    imports.start_import(
        job=job, columns=job.mapping["columns"], key="phone", default_evidence="", actor=SYSTEM
    )
    imports.run_import(job_id=job.pk)
    job.refresh_from_db()
    storage, report = job.report.storage, job.report.name
    assert storage.exists(report)
    response = marketer_client.post(reverse("subscribers:import_delete", args=[project.slug, job.public_id]))
    assert response.status_code == 302
    assert not ImportJob.objects.filter(pk=job.pk).exists()
    assert not storage.exists(report)
    assert Subscriber.objects.filter(project=project).count() == 1  # imported people stay


def test_a_running_import_cannot_be_deleted(marketer_client, project):
    upload(marketer_client, project)
    job = ImportJob.objects.get(project=project)
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.RUNNING)
    response = marketer_client.post(reverse("subscribers:import_delete", args=[project.slug, job.public_id]))
    assert response.status_code == 302
    assert ImportJob.objects.filter(pk=job.pk).exists()


def test_the_upload_page_lists_recent_imports(marketer_client, project):
    upload(marketer_client, project)
    page = marketer_client.get(reverse("subscribers:import_upload", args=[project.slug]))
    assert "people.csv" in page.content.decode()
    assert "Needs mapping" in page.content.decode()


def test_viewers_cannot_see_imports_or_export(client, project, viewer):
    client.force_login(viewer)
    for name in ("import_upload", "export", "export_consent"):
        assert client.get(reverse(f"subscribers:{name}", args=[project.slug])).status_code == 403


STRAY_BYTE = (
    "phone,name,city\n+4915112345678,Ayşe Öztürk,Köln\n".encode() + b"+4915112345679,J\xfcrgen,Bonn\n"
)


def test_rows_that_do_not_decode_are_shown_and_the_choice_comes_first(marketer_client, project):
    upload(marketer_client, project, STRAY_BYTE)
    job = ImportJob.objects.get(project=project)
    url = reverse("subscribers:import_detail", args=[project.slug, job.public_id])
    page = marketer_client.get(url).content.decode()
    assert "1 row cannot be read as UTF-8" in page
    assert "<code>0xFC</code>" in page
    assert "J\ufffdrgen" in page and "+4915112345679,Jürgen,Bonn" in page  # as UTF-8, as Windows-1252
    assert "Ayşe Öztürk" in page  # the valid row in the preview, read as UTF-8
    assert 'data-testid="recoded-warning"' in page
    # Valid rows would be read differently in Windows-1252: skipping is what is suggested.
    assert 'value="skip" checked' in page and 'value="reencode">' in page
    # Starting before choosing writes nothing and says why.
    response = marketer_client.post(url, mapping_post(col_2="new", newtag_2="city"))
    assert response.status_code == 400
    assert "choose what happens to them first" in response.content.decode()
    assert not Subscriber.objects.filter(project=project).exists()

    encoding_url = reverse("subscribers:import_encoding", args=[project.slug, job.public_id])
    assert marketer_client.post(encoding_url, {"choice": "skip"})["Location"] == url
    job.refresh_from_db()
    assert job.undecodable_rows == "skip"
    assert (
        'data-testid="encoding-chosen">Chosen: skip these rows.' in marketer_client.get(url).content.decode()
    )
    assert marketer_client.post(url, mapping_post(col_2="new", newtag_2="city")).status_code == 302
    job.refresh_from_db()
    assert job.status == ImportStatus.QUEUED


def test_a_bad_encoding_choice_is_explained(marketer_client, project):
    upload(marketer_client, project, "phone\tname\n+4915112345678\tAda\n".encode("utf-16") + b"\x00")
    job = ImportJob.objects.get(project=project)
    encoding_url = reverse("subscribers:import_encoding", args=[project.slug, job.public_id])
    response = marketer_client.post(encoding_url, {"choice": "reencode"}, follow=True)
    assert "cannot be read in another encoding" in response.content.decode()
    job.refresh_from_db()
    assert job.undecodable_rows == ""


def test_a_utf16_file_with_an_odd_trailing_byte_leads_to_the_mapping_page(marketer_client, project):
    response = upload(
        marketer_client, project, "phone\tname\n+4915112345678\tAda\n".encode("utf-16") + b"\x0a"
    )
    assert response.status_code == 302
    page = marketer_client.get(response["Location"]).content.decode()
    assert "cannot be read as UTF-16" in page and "<code>0x0A</code>" in page
    assert 'value="reencode"' not in page


def test_only_members_with_the_marketer_role_choose_an_encoding(client, project, viewer, outsider, member_of):
    from tests.factories import ProjectFactory

    job = imports.create_import(
        project=project, upload=SimpleUploadedFile("p.csv", STRAY_BYTE, "text/csv"), actor=SYSTEM
    )
    url = reverse("subscribers:import_encoding", args=[project.slug, job.public_id])
    client.force_login(viewer)
    assert client.post(url, {"choice": "skip"}).status_code == 403
    client.force_login(outsider)
    assert client.post(url, {"choice": "skip"}).status_code == 404
    # A marketer elsewhere reaches no job of this project through their own project.
    other = ProjectFactory()
    client.force_login(member_of(Role.MARKETER, in_project=other))
    elsewhere = reverse("subscribers:import_encoding", args=[other.slug, job.public_id])
    assert client.post(elsewhere, {"choice": "skip"}).status_code == 404
    job.refresh_from_db()
    assert job.undecodable_rows == ""
