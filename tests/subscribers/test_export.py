"""Streamed CSV exports: the subscriber list (whole, filtered, a segment) and the consent ledger."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse

from controlpanel.models import AuditEntry
from subscribers import exports
from subscribers.models import ConsentChange, Segment, Subscriber, TagDefinition, TagValue
from tests.factories import ProjectFactory, SubscriberFactory


def read_csv(response) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def tag(project, subscriber, name, type_, *values):
    definition, _ = TagDefinition.objects.get_or_create(project=project, name=name, defaults={"type": type_})
    column = {
        "string": "value_text",
        "list": "value_text",
        "integer": "value_number",
        "decimal": "value_number",
        "boolean": "value_bool",
        "date": "value_date",
    }[type_]
    for value in values:
        TagValue.objects.create(project=project, subscriber=subscriber, tag=definition, **{column: value})


@pytest.fixture
def people(project):
    ada = SubscriberFactory(
        project=project,
        phone="+4915112345678",
        name="Ada",
        email="ada@example.com",
        external_id="crm-1",
        language="de",
        country="DE",
        time_zone="Europe/Berlin",
    )
    bob = SubscriberFactory(
        project=project, phone="+4915112345679", name='=HYPERLINK("x")', whatsapp_consent="opted_out"
    )
    tag(project, ada, "interests", "list", "pizza", "sushi")
    tag(project, ada, "orders", "integer", Decimal(12))
    tag(project, ada, "price", "decimal", Decimal("4.50"))
    tag(project, ada, "vip", "boolean", True)
    tag(project, bob, "birthday", "date", date(2000, 1, 31))
    SubscriberFactory(project=ProjectFactory(), phone="+4915100000000")  # another project's
    return ada, bob


def test_exports_every_subscriber_with_one_column_per_tag(owner_client, project, people):
    ada, _ = people
    response = owner_client.get(reverse("subscribers:export", args=[project.slug]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith(
        f'attachment; filename="subscribers-{project.slug}-all-'
    )
    header, *rows = read_csv(response)
    assert header == [
        "id",
        "phone",
        "external_id",
        "name",
        "email",
        "language",
        "country",
        "time_zone",
        "whatsapp_consent",
        "email_consent",
        "email_undeliverable_at",
        "push_consent",
        "created_at",
        "last_inbound_at",
        "push_devices",
        "birthday",
        "interests",
        "orders",
        "price",
        "vip",
    ]
    assert len(rows) == 2
    by_phone = {r[1]: dict(zip(header, r, strict=True)) for r in rows}
    a = by_phone["+4915112345678"]
    assert a["id"] == str(ada.public_id)
    assert (a["external_id"], a["name"], a["email"], a["language"], a["country"], a["time_zone"]) == (
        "crm-1",
        "Ada",
        "ada@example.com",
        "de",
        "DE",
        "Europe/Berlin",
    )
    assert (a["interests"], a["orders"], a["price"], a["vip"], a["birthday"]) == (
        "pizza, sushi",
        "12",
        "4.5",
        "true",
        "",
    )
    assert a["created_at"] == ada.created_at.isoformat()
    b = by_phone["+4915112345679"]
    assert b["name"] == '\'=HYPERLINK("x")'  # neutralized for spreadsheets
    assert (b["whatsapp_consent"], b["birthday"], b["interests"]) == ("opted_out", "2000-01-31", "")
    assert AuditEntry.objects.filter(project=project, action="subscribers.exported").exists()


def test_export_follows_the_list_filters(owner_client, project, people):
    url = reverse("subscribers:export", args=[project.slug])
    _, *rows = read_csv(owner_client.get(url, {"consent": "opted_out"}))
    assert [r[1] for r in rows] == ["+4915112345679"]
    _, *rows = read_csv(owner_client.get(url, {"q": "Ada"}))
    assert [r[1] for r in rows] == ["+4915112345678"]


def test_export_of_a_segment(owner_client, project, people):
    segment = Segment.objects.create(
        project=project, name="VIPs", rule={"type": "tag", "tag": "vip", "op": "eq", "value": True}
    )
    response = owner_client.get(
        reverse("subscribers:export", args=[project.slug]), {"segment": segment.public_id}
    )
    assert "subscribers-" in response["Content-Disposition"] and "-vips-" in response["Content-Disposition"]
    _, *rows = read_csv(response)
    assert [r[1] for r in rows] == ["+4915112345678"]


def test_an_unknown_segment_exports_nothing_and_says_why(owner_client, project, people):
    response = owner_client.get(
        reverse("subscribers:export", args=[project.slug]),
        {"segment": "00000000-0000-0000-0000-000000000000"},
    )
    assert response.status_code == 302
    assert "segment" in response["Location"]


def test_export_streams_in_chunks(project, monkeypatch, django_assert_max_num_queries):
    monkeypatch.setattr(exports, "CHUNK_SIZE", 3)
    subs = [SubscriberFactory(project=project) for _ in range(10)]
    for n, s in enumerate(subs):
        tag(project, s, "score", "integer", Decimal(n))
    rows = exports.subscriber_rows(project, Subscriber.objects.for_project(project))
    header = next(rows)
    first = next(rows)  # the first row is out before later chunks are read
    assert header[-1] == "score" and first[-1] == 0
    with django_assert_max_num_queries(8):  # 1 subscriber read per chunk + 1 tag read per chunk
        rest = list(rows)
    assert [r[-1] for r in rest] == list(range(1, 10))


def test_consent_ledger_export(owner_client, project, owner):
    ada = SubscriberFactory(project=project, phone="+4915112345678")
    ConsentChange.objects.create(
        project=project,
        subscriber=ada,
        channel="whatsapp",
        state="opted_in",
        source="import",
        evidence="Paper form",
        actor_user=owner,
        actor_label=owner.email,
    )
    ConsentChange.objects.create(
        project=project,
        subscriber=ada,
        channel="whatsapp",
        state="opted_out",
        source="keyword",
        evidence="STOP",
        actor_label="system",
    )
    other = SubscriberFactory(project=ProjectFactory())
    ConsentChange.objects.create(
        project=other.project,
        subscriber=other,
        channel="whatsapp",
        state="opted_in",
        source="api",
        evidence="x",
    )
    response = owner_client.get(reverse("subscribers:export_consent", args=[project.slug]))
    header, *rows = read_csv(response)
    assert header == [
        "subscriber_id",
        "phone",
        "channel",
        "state",
        "source",
        "evidence",
        "actor",
        "created_at",
    ]
    assert [r[:7] for r in rows] == [
        [str(ada.public_id), "+4915112345678", "whatsapp", "opted_in", "import", "Paper form", owner.email],
        [str(ada.public_id), "+4915112345678", "whatsapp", "opted_out", "keyword", "STOP", "system"],
    ]


def test_an_exported_file_imports_back_unchanged(owner_client, project, people, owner, settings, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from controlpanel.services import Actor
    from subscribers import imports

    settings.MEDIA_ROOT = tmp_path
    TagDefinition.objects.filter(project=project, name="interests").update(type="list")
    content = b"".join(owner_client.get(reverse("subscribers:export", args=[project.slug])).streaming_content)
    job = imports.create_import(
        project=project, upload=SimpleUploadedFile("export.csv", content), actor=Actor(user=owner)
    )
    targets = [c["target"] for c in job.mapping["columns"]]
    assert targets[:15] == [
        "",
        "phone",
        "external_id",
        "name",
        "email",
        "language",
        "country",
        "time_zone",
        "consent",
        "email_consent",
        "",
        "",
        "",
        "",
        "",
    ]
    imports.start_import(
        job=job,
        columns=job.mapping["columns"],
        key="phone",
        default_evidence="Export",
        actor=Actor(user=owner),
    )
    imports.run_import(job_id=job.pk)
    job.refresh_from_db()
    assert (job.created_count, job.updated_count, job.unchanged_count, job.rejected_count) == (0, 0, 2, 0)
