"""Bulk actions from the subscriber list run in a worker, in chunks, with progress, resumable."""

from __future__ import annotations

import pytest
from django.urls import reverse

from controlpanel.models import AuditEntry, Role
from controlpanel.services import Actor
from subscribers import bulk, services
from subscribers.actors import fail_bulk_job, run_bulk_job
from subscribers.models import BulkStatus, ConsentChange, ConsentState, Subscriber
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(member_of):
    return member_of(Role.MARKETER)


def _job(project, marketer, action="add_tag", count=5, **params):
    people = SubscriberFactory.create_batch(count, project=project)
    return bulk.start_bulk_job(
        project=project,
        action=action,
        subscriber_ids=[p.pk for p in people],
        params=params or {"tag_name": "vip", "tag_value": "true"},
        actor=Actor(user=marketer),
    ), people


def test_runs_in_chunks_and_a_second_run_does_nothing_twice(project, marketer, monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK", 2)
    job, people = _job(project, marketer)
    assert job.status == BulkStatus.QUEUED  # adding a tag needs no confirmation
    run_bulk_job.fn(job.pk)
    job.refresh_from_db()
    assert (job.status, job.processed, job.changed) == (BulkStatus.DONE, 5, 5)
    assert all(services.tags_of(p)["vip"] is True for p in people)
    run_bulk_job.fn(job.pk)  # delivered twice: a finished job is left alone
    job.refresh_from_db()
    assert (job.processed, job.changed) == (5, 5)


def test_a_job_interrupted_mid_way_resumes_after_its_mark(project, marketer, monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK", 2)
    job, _ = _job(project, marketer, action="opt_out", evidence="asked by phone")
    bulk.confirm_bulk_job(job=job, actor=Actor(user=marketer))
    calls = []
    original = bulk._apply

    def dies_on_the_second_chunk(job, ids, actor):
        calls.append(ids)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return original(job, ids, actor)

    monkeypatch.setattr(bulk, "_apply", dies_on_the_second_chunk)
    with pytest.raises(RuntimeError):
        run_bulk_job.fn(job.pk)
    job.refresh_from_db()
    assert (job.status, job.processed) == (BulkStatus.RUNNING, 2)  # the first chunk committed
    run_bulk_job.fn(job.pk)  # the actor's retry
    job.refresh_from_db()
    assert (job.status, job.processed, job.changed) == (BulkStatus.DONE, 5, 5)
    ledger = ConsentChange.objects.filter(state=ConsentState.OPTED_OUT, evidence="asked by phone")
    assert ledger.count() == 5  # nobody twice


def test_a_job_whose_retries_are_used_up_says_so(project, marketer):
    job, _ = _job(project, marketer)
    fail_bulk_job.fn({"args": [job.pk]}, {"retries": 3})
    job.refresh_from_db()
    assert job.status == BulkStatus.FAILED
    assert "several attempts" in job.error


def test_irreversible_actions_wait_for_confirmation_once(
    project, marketer, django_capture_on_commit_callbacks
):
    job, _ = _job(project, marketer, action="delete")
    assert job.status == BulkStatus.DRAFT
    run_bulk_job.fn(job.pk)  # a draft is never run
    assert Subscriber.objects.for_project(project).count() == 5
    with django_capture_on_commit_callbacks() as queued:
        bulk.confirm_bulk_job(job=job, actor=Actor(user=marketer))
        bulk.confirm_bulk_job(job=job, actor=Actor(user=marketer))
    assert len(queued) == 1
    assert AuditEntry.objects.filter(project=project, action="subscribers.bulk_delete").count() == 1


def test_progress_polls_until_done_then_stops(client, project, marketer):
    client.force_login(marketer)
    job, _ = _job(project, marketer)
    url = reverse("subscribers:bulk_job", args=[project.slug, job.public_id])
    part = client.get(url, headers={"HX-Request": "true"})
    assert part.status_code == 200
    assert 'hx-trigger="every 1s"' in part.content.decode()
    run_bulk_job.fn(job.pk)
    part = client.get(url, headers={"HX-Request": "true"})
    assert part.status_code == 286
    assert "Tag “vip” set to “true” on 5 subscribers." in part.content.decode()


def test_job_pages_are_for_marketers_of_the_project(client, project, marketer, member_of, outsider):
    job, _ = _job(project, marketer, action="delete")
    page = reverse("subscribers:bulk_job", args=[project.slug, job.public_id])
    confirm = reverse("subscribers:bulk_job_confirm", args=[project.slug, job.public_id])
    client.force_login(outsider)
    assert client.get(page).status_code == 404
    assert client.post(confirm).status_code == 404
    client.force_login(member_of(Role.VIEWER))
    assert client.get(page).status_code == 403
    assert client.post(confirm).status_code == 403
    job.refresh_from_db()
    assert job.status == BulkStatus.DRAFT
