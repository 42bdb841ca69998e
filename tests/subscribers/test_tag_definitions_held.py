"""Tag values have no database foreign key to their definition: writers hold the definitions
they write values of, and deleting a tag waits for them. No value may outlive its definition."""

from __future__ import annotations

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections, transaction

from controlpanel.models import AuditEntry
from controlpanel.services import Actor, create_api_key
from subscribers import imports
from subscribers import tags as tagtypes
from subscribers.errors import InvalidInput
from subscribers.models import ImportStatus, TagDefinition, TagType, TagValue
from subscribers.services import delete_tag, set_tags, tags_of
from tests.factories import ProjectFactory, SubscriberFactory
from tests.subscribers.test_api_subscribers import ApiClient

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks of PostgreSQL")


def orphans() -> int:
    return TagValue.objects.exclude(tag_id__in=TagDefinition.objects.values("pk")).count()


def delete_after(monkeypatch, owner, name: str, tag: str, project) -> None:
    """Let another transaction delete the tag ``tag`` right after the first call of ``owner.name``:
    between a writer's lookup of the definition and its write."""
    original, calls = getattr(owner, name), []

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            definition = TagDefinition.objects.get(project=project, name=tag)
            delete_tag(project=project, definition=definition, actor=Actor(label="test"))
        return result

    monkeypatch.setattr(owner, name, wrapper)


def writer_holding(definition, release: threading.Event, write=lambda: None) -> threading.Thread:
    """A writer on its own connection that holds ``definition``, writes, and keeps its
    transaction open until ``release``; returns once it holds (and has written)."""
    ready = threading.Event()

    def run():
        try:
            with transaction.atomic():
                assert tagtypes.hold_definitions([definition.pk]) == {definition.pk}
                write()
                ready.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    assert ready.wait(10)
    return thread


@pytest.mark.django_db
def test_hold_returns_the_definitions_that_still_exist():
    project = ProjectFactory()
    city = TagDefinition.objects.create(project=project, name="city", type=TagType.STRING)
    with transaction.atomic():
        assert tagtypes.hold_definitions([city.pk, city.pk, 999_999]) == {city.pk}
        assert tagtypes.hold_definitions([]) == set()


@pytest.mark.django_db(transaction=True)
def test_holding_outside_a_transaction_is_a_programming_error():
    with pytest.raises(RuntimeError, match="transaction"):
        tagtypes.hold_definitions([1])


@pytest.mark.django_db
def test_deleting_a_tag_removes_its_values_and_is_audited():
    project = ProjectFactory()
    subscriber = SubscriberFactory(project=project)
    set_tags(project=project, subscriber=subscriber, tags={"city": "Berlin", "orders": 3})
    definition = TagDefinition.objects.get(project=project, name="city")
    assert delete_tag(project=project, definition=definition, actor=Actor(label="test")) == 1
    assert "city" not in tags_of(subscriber)
    assert tags_of(subscriber)["orders"] == 3
    assert AuditEntry.objects.filter(project=project, action="tag.deleted").count() == 1
    # Deleted already (another request won): nothing to do, nothing audited twice.
    assert delete_tag(project=project, definition=definition, actor=Actor(label="test")) == 0
    assert AuditEntry.objects.filter(project=project, action="tag.deleted").count() == 1


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_deleting_a_tag_waits_for_writers_and_gives_up_on_a_running_import(monkeypatch):
    """Writers that overlap without a gap (an import's chunks) would keep a deletion waiting for
    as long as they run: it gives up after DELETE_TAG_WAIT_MS with a message."""
    from subscribers import services

    monkeypatch.setattr(services, "DELETE_TAG_WAIT_MS", 200)
    project = ProjectFactory()
    city = TagDefinition.objects.create(project=project, name="city", type=TagType.STRING)
    release = threading.Event()
    thread = writer_holding(city, release)
    try:
        with pytest.raises(InvalidInput, match="being written right now") as caught:
            delete_tag(project=project, definition=city, actor=Actor(label="test"))
        assert caught.value.code == "conflict"
        assert TagDefinition.objects.filter(pk=city.pk).exists()
    finally:
        release.set()
        thread.join()
    # The writer has committed: now the deletion goes through, and a later writer finds it gone.
    delete_tag(project=project, definition=city, actor=Actor(label="test"))
    with transaction.atomic():
        assert tagtypes.hold_definitions([city.pk]) == set()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_deletion_waiting_for_a_writer_removes_the_value_it_wrote():
    """A deletion that had to wait for a writer also removes the value that writer committed
    meanwhile: no value outlives its definition."""
    project = ProjectFactory()
    subscriber = SubscriberFactory(project=project)
    city = TagDefinition.objects.create(project=project, name="city", type=TagType.STRING)
    release = threading.Event()
    thread = writer_holding(
        city,
        release,
        lambda: TagValue.objects.create(
            project=project, subscriber=subscriber, tag=city, value_text="Berlin"
        ),
    )
    deleted: list[int] = []
    deleter = threading.Thread(
        target=lambda: (
            deleted.append(delete_tag(project=project, definition=city, actor=Actor(label="test"))),
            connections.close_all(),
        )
    )
    deleter.start()
    deleter.join(0.3)
    assert deleter.is_alive()  # waiting for the writer
    release.set()
    thread.join()
    deleter.join(10)
    assert deleted == [1]
    assert orphans() == 0
    assert not TagValue.objects.filter(project=project).exists()


@pytest.mark.django_db
def test_set_tags_refuses_a_tag_deleted_after_it_was_looked_up(monkeypatch):
    project = ProjectFactory()
    subscriber = SubscriberFactory(project=project)
    set_tags(project=project, subscriber=subscriber, tags={"city": "Berlin"})
    delete_after(monkeypatch, tagtypes, "definitions", "city", project)
    with pytest.raises(InvalidInput, match="deleted meanwhile") as caught:
        set_tags(project=project, subscriber=subscriber, tags={"city": "Hamburg"})
    assert caught.value.code == "conflict"
    assert orphans() == 0
    # On one connection the deletion ran inside set_tags' transaction and rolled back with it.
    assert tags_of(subscriber)["city"] == "Berlin"


@pytest.mark.django_db
def test_a_bulk_api_write_whose_tag_was_deleted_defines_it_again(client, monkeypatch):
    project = ProjectFactory()
    api = ApiClient(client, create_api_key(project=project, name="t", actor=Actor(label="t"))[1])
    api.post("/subscribers", {"phone": "+4915100000001", "tags": {"city": "Berlin"}})
    delete_after(monkeypatch, tagtypes, "definitions", "city", project)
    response = api.post(
        "/subscribers/bulk",
        {"subscribers": [{"phone": "+4915100000002", "tags": {"city": "Hamburg"}}]},
    )
    assert response.status_code == 200, response.content
    assert "error" not in response.json()["results"][0]
    assert orphans() == 0
    assert TagValue.objects.filter(tag__project=project, value_text="Hamburg").count() == 1


@pytest.mark.django_db
def test_an_import_whose_tag_is_deleted_midway_fails_with_the_reason_and_leaves_no_orphans(
    settings, tmp_path, monkeypatch
):
    settings.MEDIA_ROOT = tmp_path
    monkeypatch.setattr(imports, "CHUNK_SIZE", 2)
    project = ProjectFactory()
    TagDefinition.objects.create(project=project, name="city", type=TagType.STRING)
    lines = ["phone,city"] + [f"+49151123456{n:02d},Berlin" for n in range(6)]
    actor = Actor(label="test")
    job = imports.create_import(
        project=project,
        upload=SimpleUploadedFile("p.csv", ("\n".join(lines) + "\n").encode(), "text/csv"),
        actor=actor,
    )
    imports.start_import(
        job=job, columns=job.mapping["columns"], key="phone", default_evidence="", actor=actor
    )
    delete_after(monkeypatch, imports.Applier, "apply", "city", project)  # after the first chunk
    imports.run_import(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED
    assert "The tag 'city' was deleted while the import ran" in job.error
    assert job.processed_rows == 2
    assert orphans() == 0
    assert TagValue.objects.filter(project=project).count() == 0
