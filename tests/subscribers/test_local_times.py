"""A date or time without an offset is the project's local time, wherever it comes in: a CSV
cell, an API tag value or event time, a segment rule; the panel shows times in that zone too.
The factory's projects are in Europe/Berlin (UTC+1 in January, UTC+2 in July)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from controlpanel.services import Actor, create_api_key
from subscribers import imports
from subscribers.models import Event, Subscriber, TagDefinition, TagType, TagValue
from subscribers.segments import compiler, parse_rule
from subscribers.services import set_tags
from tests.factories import ProjectFactory, SubscriberFactory
from tests.subscribers.test_api_subscribers import ApiClient

pytestmark = pytest.mark.django_db


def stored(project, tag: str) -> list[datetime]:
    return sorted(
        TagValue.objects.for_project(project).filter(tag__name=tag).values_list("value_datetime", flat=True)
    )


def test_csv_times_without_an_offset_are_the_projects(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    project = ProjectFactory()
    TagDefinition.objects.create(project=project, name="last_order", type=TagType.DATETIME)
    actor = Actor(label="test")
    content = "phone,last_order\n+4915112345601,2026-01-31 10:00\n+4915112345602,2026-01-31T10:00:00+00:00\n"
    job = imports.create_import(
        project=project, upload=SimpleUploadedFile("t.csv", content.encode(), "text/csv"), actor=actor
    )
    imports.start_import(
        job=job, columns=job.mapping["columns"], key="phone", default_evidence="", actor=actor
    )
    imports.run_import(job_id=job.pk)
    assert stored(project, "last_order") == [
        datetime(2026, 1, 31, 9, 0, tzinfo=UTC),  # 10:00 in Berlin
        datetime(2026, 1, 31, 10, 0, tzinfo=UTC),  # said UTC itself
    ]
    assert timezone.get_current_timezone_name() == "UTC"  # the import's zone ends with it


def test_api_tag_values_and_event_times_without_an_offset_are_the_projects(client):
    project = ProjectFactory()
    api = ApiClient(client, create_api_key(project=project, name="t", actor=Actor(label="t"))[1])
    response = api.post(
        "/subscribers", {"phone": "+4915112345601", "tags": {"last_order": "2026-07-01T12:00:00"}}
    )
    assert response.status_code == 201, response.content
    assert stored(project, "last_order") == [datetime(2026, 7, 1, 10, 0, tzinfo=UTC)]  # CEST
    response = api.post(
        "/events",
        {
            "subscriber": {"phone": "+4915112345601"},
            "name": "OrderPlaced",
            "occurred_at": "2026-01-31T10:00:00",
        },
    )
    assert response.status_code in (200, 201), response.content
    event = Event.objects.for_project(project).get(name="OrderPlaced")
    assert event.occurred_at == datetime(2026, 1, 31, 9, 0, tzinfo=UTC)


def test_the_apis_time_zone_does_not_carry_over_to_the_next_request(client):
    project = ProjectFactory(time_zone="Asia/Tokyo")
    api = ApiClient(client, create_api_key(project=project, name="t", actor=Actor(label="t"))[1])
    assert api.get("/segments").status_code == 200
    client.get("/healthz")
    assert timezone.get_current_timezone_name() == "UTC"


def test_segment_rules_compare_times_without_an_offset_in_the_projects_zone():
    project = ProjectFactory()
    early, late = SubscriberFactory(project=project), SubscriberFactory(project=project)
    set_tags(
        project=project, subscriber=early, tags={"last_order": "2026-01-31T08:30:00+00:00"}
    )  # 09:30 local
    set_tags(
        project=project, subscriber=late, tags={"last_order": "2026-01-31T09:30:00+00:00"}
    )  # 10:30 local
    rule = parse_rule('T("last_order", gt, "2026-01-31T10:00:00")')
    assert list(compiler.audience(project, rule).values_list("pk", flat=True)) == [late.pk]
    assert compiler.count(project, rule) == 1
    assert Subscriber.objects.for_project(project).count() == 2


def test_event_attributes_and_tags_written_by_workers_use_the_projects_zone():
    """Actors run with the default zone (UTC) active; the services read local times themselves."""
    from subscribers.services import record_event

    project = ProjectFactory()
    subscriber = SubscriberFactory(project=project)
    assert timezone.get_current_timezone_name() == "UTC"
    event = record_event(
        project=project, subscriber=subscriber, name="Delivered", attributes={"when": "2026-01-31T10:00:00"}
    )
    assert datetime.fromisoformat(event.attributes["when"]) == datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
    set_tags(project=project, subscriber=subscriber, tags={"last_order": "2026-01-31T10:00:00"})
    assert stored(project, "last_order") == [datetime(2026, 1, 31, 9, 0, tzinfo=UTC)]


def test_bulk_api_tag_values_without_an_offset_are_the_projects(client):
    project = ProjectFactory()
    api = ApiClient(client, create_api_key(project=project, name="t", actor=Actor(label="t"))[1])
    response = api.post(
        "/subscribers/bulk",
        {"subscribers": [{"phone": "+4915112345601", "tags": {"last_order": "2026-07-01T12:00:00"}}]},
    )
    assert response.status_code == 200, response.content
    assert stored(project, "last_order") == [datetime(2026, 7, 1, 10, 0, tzinfo=UTC)]  # CEST
