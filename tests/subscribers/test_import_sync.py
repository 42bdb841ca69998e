"""Imports started without the panel: POST/GET /api/v1/imports and manage.py import_subscribers."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from controlpanel.services import Actor
from subscribers import import_sync, services
from subscribers.actors import run_import_job
from subscribers.models import ConsentState, ImportJob, Subscriber, TagDefinition
from tests.factories import ProjectFactory
from tests.subscribers.test_api_subscribers import key_for

pytestmark = pytest.mark.django_db

CSV = (
    "Phone,Name,City,Shoe size,Consent\n"
    "0151 11111111,Ada,Berlin,38,yes\n"
    "0151 22222222,Bob,Köln,44,no\n"
    "not a phone,Carl,Bonn,41,\n"
)


def _post(client, project, content: str = CSV, **form):
    upload = SimpleUploadedFile("nightly.csv", content.encode(), "text/csv")
    return client.post(
        "/api/v1/imports", {"file": upload, **form}, HTTP_AUTHORIZATION=f"Bearer {key_for(project)}"
    )


def _get(client, project, path):
    return client.get(f"/api/v1{path}", HTTP_AUTHORIZATION=f"Bearer {key_for(project)}")


def test_import_by_api_guesses_known_columns_and_reports_rejected_rows(client, project):
    TagDefinition.objects.create(project=project, name="city", type="string")
    response = _post(client, project, default_evidence="Shop checkout, 2026")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    # Named like a field or an existing tag: mapped. "Shoe size" is new: left out, no tag made.
    assert body["mapping"] == {
        "Phone": "phone",
        "Name": "name",
        "City": "tag:city",
        "Shoe size": "",
        "Consent": "consent",
    }
    assert body["key"] == "phone"

    job = ImportJob.objects.get(public_id=body["id"])
    run_import_job.fn(job.pk)  # what a worker does
    done = _get(client, project, f"/imports/{body['id']}").json()
    assert (done["status"], done["created"], done["rejected"]) == ("done", 2, 1)
    [rejected] = done["report"]
    assert rejected["line"] == 4
    assert rejected["cells"]["Name"] == "Carl"
    ada = Subscriber.objects.get(project=project, phone="+4915111111111")
    assert services.tags_of(ada)["city"] == "Berlin"
    assert ada.whatsapp_consent == ConsentState.OPTED_IN
    assert not TagDefinition.objects.filter(project=project, name__iexact="shoe size").exists()
    report = _get(client, project, f"/imports/{body['id']}/report")
    assert report.status_code == 200
    assert b"Carl" in b"".join(report.streaming_content)


def test_an_explicit_mapping_can_create_tags(client, project):
    mapping = {"Phone": "phone", "Shoe size": "new:shoe_size", "City": ""}
    response = _post(client, project, mapping=json.dumps(mapping))
    assert response.status_code == 202, response.content
    assert response.json()["mapping"]["Shoe size"] == "new:shoe_size"
    run_import_job.fn(ImportJob.objects.get().pk)
    assert TagDefinition.objects.get(project=project, name="shoe_size").type == "integer"


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"mapping": "{not json"}, "invalid_mapping"),
        ({"mapping": json.dumps({"Nope": "phone"})}, "invalid_mapping"),
        ({"mapping": json.dumps({"Phone": "phone", "Consent": "consent"})}, "invalid_mapping"),  # no evidence
    ],
)
def test_a_refused_mapping_leaves_no_job(client, project, form, code):
    response = _post(client, project, **form)
    assert response.status_code == 422
    assert response.json()["code"] == code
    assert not ImportJob.objects.exists()


def test_a_file_that_is_no_csv_is_422(client, project):
    response = _post(client, project, content="Phone\n")
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_file"


def test_another_projects_import_is_404(client, project):
    response = _post(client, project, default_evidence="x")
    other = ProjectFactory()
    assert _get(client, other, f"/imports/{response.json()['id']}").status_code == 404


def test_command_imports_in_the_embedded_mode_and_prints_the_counts(project, tmp_path, settings):
    settings.DRAMATIQ_BROKER_URL = ""  # the embedded mode: no broker, the command runs the import
    path = tmp_path / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    out = io.StringIO()
    call_command("import_subscribers", project.slug, str(path), "--evidence", "Store form", stdout=out)
    text = out.getvalue()
    assert "status=done created=2" in text
    assert "line 4:" in text
    assert Subscriber.objects.filter(project=project).count() == 2


def test_command_refuses_an_unknown_project(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    with pytest.raises(CommandError, match="No project"):
        call_command("import_subscribers", "nope", str(path))


def test_imported_text_tags_match_segments_without_case_or_accents(project):
    """The import's own writer (COPY on PostgreSQL) fills the folded copy segments compare by."""
    from subscribers.segments import count, parse_rule

    TagDefinition.objects.create(project=project, name="city", type="string")
    upload = SimpleUploadedFile("people.csv", CSV.encode(), "text/csv")
    job = import_sync.import_csv(
        project=project, upload=upload, actor=Actor(label="test"), default_evidence="x"
    )
    run_import_job.fn(job.pk)
    assert count(project, parse_rule('T("city", eq, "BERLIN")')) == 1
    assert count(project, parse_rule('T("city", eq, "koln")')) == 1


def test_a_file_larger_than_a_json_body_may_be_is_accepted(client, project, settings):
    """The API refuses JSON bodies over DATA_UPLOAD_MAX_MEMORY_SIZE; a CSV upload may be far larger."""
    rows = [f"+4915{100000000 + i},Person {i}" for i in range(2_000)]
    content = "Phone,Name\n" + "\n".join(rows) + "\n"
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(content) // 2
    response = _post(client, project, content=content)
    assert response.status_code == 202, response.content
    assert response.json()["total_rows"] == 2_000
