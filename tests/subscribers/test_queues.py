"""GDPR scrubbing of import files runs in a worker on the long queue, not in the erasing request."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from controlpanel.services import Actor
from subscribers import actors, imports, services
from subscribers.models import Subscriber


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def test_erasure_queues_the_import_file_scrub(
    project, owner, django_capture_on_commit_callbacks, monkeypatch
):
    by = Actor(user=owner)
    content = b"phone,name\n+4915112345678,Ada\n+4915112345690,Other\n"
    pending = imports.create_import(
        project=project, upload=SimpleUploadedFile("people.csv", content, "text/csv"), actor=by
    )
    ada = Subscriber.objects.create(project=project, phone="+4915112345678")
    queued = []
    monkeypatch.setattr(actors.scrub_import_files, "send", lambda *args: queued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        services.erase_subscriber(subscriber=ada, actor=by)
    assert queued == [(project.pk, ["+4915112345678"])]
    with pending.file.open("rb") as f:
        assert b"+4915112345678" in f.read()  # the request left the file to the worker

    actors.scrub_import_files.fn(*queued[0])
    actors.scrub_import_files.fn(*queued[0])  # delivery is at least once
    pending.refresh_from_db()  # the cleaned copy has a new name
    with pending.file.open("rb") as f:
        remaining = f.read().decode()
    assert "+4915112345678" not in remaining and "+4915112345690" in remaining
