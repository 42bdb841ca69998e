"""CSV import: the pipeline end to end (upload, mapping, the job, the report)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction

from controlpanel.services import Actor
from subscribers import imports
from subscribers.errors import InvalidInput
from subscribers.imports import pipeline
from subscribers.models import (
    ConsentChange,
    ConsentChannel,
    ConsentSource,
    ConsentState,
    Event,
    ImportJob,
    ImportStatus,
    Subscriber,
    TagDefinition,
    TagValue,
)
from subscribers.services import SubscriberData, change_consent, tags_of, upsert_subscriber
from tests.factories import ProjectFactory, SubscriberFactory


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


def snapshot(project) -> dict:
    subs = {
        s.phone: (
            s.pk,
            s.name,
            s.email,
            s.whatsapp_consent,
            s.updated_at,
            tuple(sorted(tags_of(s).items(), key=str)),
        )
        for s in Subscriber.objects.for_project(project)
    }
    return {
        "subscribers": subs,
        "tag_values": sorted(TagValue.objects.for_project(project).values_list("id", flat=True)),
        "ledger": ConsentChange.objects.for_project(project).count(),
        "events": sorted(Event.objects.for_project(project).values_list("id", flat=True)),
    }


PEOPLE = (
    "phone,name,city,orders,vip,interests,opt_in\n"
    '+4915112345678,Ada,Berlin,3,true,"pizza, sushi",yes\n'
    "+4915112345679,Bob,Hamburg,0,false,,no\n"
    "015112345680,Cy,Köln,12,true,sushi,\n"
)


def test_importing_the_same_file_twice_changes_nothing(project, user):
    TagDefinition.objects.create(project=project, name="interests", type="list")
    first = do_import(project, user, PEOPLE, evidence="Signed up in store")
    assert (first.created_count, first.rejected_count) == (3, 0)
    before = snapshot(project)
    second = do_import(project, user, PEOPLE, evidence="Signed up in store")
    assert second.status == ImportStatus.DONE
    assert (second.created_count, second.updated_count, second.unchanged_count) == (0, 0, 3)
    assert not second.report
    assert snapshot(project) == before


def test_changed_rows_update_only_what_changed(project, user):
    TagDefinition.objects.create(project=project, name="interests", type="list")
    do_import(project, user, PEOPLE, evidence="Signed up in store")
    ada = Subscriber.objects.get(project=project, phone="+4915112345678")
    bob_before = Subscriber.objects.get(project=project, phone="+4915112345679").updated_at
    changed = PEOPLE.replace("Ada,Berlin,3", "Ada Lovelace,Berlin,4")
    job = do_import(project, user, changed, evidence="Signed up in store")
    assert (job.created_count, job.updated_count, job.unchanged_count) == (0, 1, 2)
    ada.refresh_from_db()
    assert ada.name == "Ada Lovelace"
    assert tags_of(ada)["orders"] == 4
    assert tags_of(ada)["interests"] == ["pizza", "sushi"]
    assert Subscriber.objects.get(project=project, phone="+4915112345679").updated_at == bob_before


def test_new_tags_take_the_type_of_their_first_value(project, user):
    job = do_import(
        project,
        user,
        "phone,orders,vip,price,birthday,city,code\n"
        "+4915112345678,12,true,4.50,2000-01-31,Berlin,007\n"
        "+4915112345679,7,false,3.10,1999-12-01,Hamburg,12\n"
        "+4915112345680,many,maybe,cheap,soon,Köln,x\n",
    )
    types = dict(TagDefinition.objects.for_project(project).values_list("name", "type"))
    assert types == {
        "orders": "integer",
        "vip": "boolean",
        "price": "decimal",
        "birthday": "date",
        "city": "string",
        "code": "string",
    }
    assert (job.created_count, job.rejected_count) == (2, 1)
    (rejected,) = report_rows(job)
    assert rejected["line"] == "4"
    for expected in (
        "Tag 'orders' expects integer, got 'many'.",
        "Tag 'vip' expects boolean, got 'maybe'.",
        "Tag 'price' expects decimal (price), got 'cheap'.",
        "Tag 'birthday' expects date, got 'soon'.",
    ):
        assert expected in rejected["reason"]
    first = Subscriber.objects.get(project=project, phone="+4915112345678")
    assert tags_of(first) | {} == tags_of(first)
    assert tags_of(first)["price"] == "4.5"
    assert tags_of(first)["birthday"] == "2000-01-31"
    assert tags_of(first)["code"] == "007"


def test_a_value_of_the_wrong_type_for_an_existing_tag_is_rejected(project, user):
    TagDefinition.objects.create(project=project, name="Birthday", type="date")
    job = do_import(project, user, "phone,birthday\n+4915112345678,31.01.2000\n+4915112345679,2000-01-31\n")
    assert job.mapping["columns"][1]["target"] == "tag:Birthday"
    (rejected,) = report_rows(job)
    assert rejected["reason"] == "Tag 'Birthday' expects date, got '31.01.2000'."
    assert job.created_count == 1


def test_duplicates_inside_the_file_reject_the_later_row(project, user):
    job = do_import(
        project,
        user,
        "phone,external_id,name\n"
        "+4915112345678,c-1,Ada\n"
        "015112345678,c-2,Ada again\n"  # the same number, written nationally
        "+4915112345679,c-1,Bob\n"
        "+4915112345680,c-3,Cy\n",
    )
    assert (job.created_count, job.rejected_count) == (2, 2)
    rows = report_rows(job)
    assert [(r["line"], r["reason"]) for r in rows] == [
        ("3", "Duplicate: the phone +4915112345678 is already on line 2."),
        ("4", "Duplicate: the external id 'c-1' is already on line 2."),
    ]
    assert Subscriber.objects.get(project=project, phone="+4915112345678").name == "Ada"


def test_a_duplicate_of_a_rejected_row_is_imported(project, user):
    job = do_import(project, user, "phone,email\n+4915112345678,broken\n+4915112345678,ada@example.com\n")
    assert (job.created_count, job.rejected_count) == (1, 1)
    assert Subscriber.objects.get(project=project).email == "ada@example.com"


def test_consent_column_writes_ledger_rows_once(project, user):
    content = (
        "phone,whatsapp opt-in,evidence\n"
        "+4915112345678,yes,Web form 2025-03-01\n"
        "+4915112345679,yes,\n"
        "+4915112345680,no,\n"
        "+4915112345681,,\n"
        "+4915112345682,perhaps,\n"
    )
    job = do_import(project, user, content, evidence="Store sign-up sheet")
    assert [c["target"] for c in job.mapping["columns"]] == ["phone", "consent", "consent_evidence"]
    assert (job.created_count, job.rejected_count) == (4, 1)
    assert "Consent 'perhaps' is not one of yes, no" in report_rows(job)[0]["reason"]
    ledger = {
        c.subscriber.phone: (c.state, c.source, c.evidence, c.actor_user_id)
        for c in ConsentChange.objects.for_project(project).select_related("subscriber")
    }
    assert ledger == {
        "+4915112345678": ("opted_in", "import", "Web form 2025-03-01", user.pk),
        "+4915112345679": ("opted_in", "import", "Store sign-up sheet", user.pk),
        "+4915112345680": ("opted_out", "import", "", user.pk),
    }
    consent = dict(Subscriber.objects.for_project(project).values_list("phone", "whatsapp_consent"))
    assert consent["+4915112345681"] == "unknown"
    assert consent["+4915112345678"] == "opted_in"

    again = do_import(project, user, content, evidence="Store sign-up sheet")
    assert (again.unchanged_count, again.updated_count) == (4, 0)
    assert ConsentChange.objects.for_project(project).count() == 3

    flipped = do_import(project, user, "phone,consent\n+4915112345678,opted_out\n+4915112345680,0\n")
    assert (flipped.updated_count, flipped.unchanged_count) == (1, 1)
    assert ConsentChange.objects.for_project(project).count() == 4
    assert Subscriber.objects.get(project=project, phone="+4915112345678").whatsapp_consent == "opted_out"


def events_of(project) -> list[tuple]:
    return sorted(
        (phone, name, json.dumps(attributes, sort_keys=True), json.dumps(facets, sort_keys=True))
        for phone, name, attributes, facets in Event.objects.for_project(project).values_list(
            "subscriber__phone", "name", "attributes", "facets"
        )
    )


def ledger_of(project) -> list[tuple]:
    return sorted(
        ConsentChange.objects.for_project(project).values_list(
            "subscriber__phone", "channel", "state", "source", "evidence", "actor_user_id", "actor_label"
        )
    )


def test_an_import_records_the_events_and_ledger_rows_the_services_record(project, user):
    # The same two changes through the services (as the API makes them, with the import's
    # source) and through an import: one new person opting in, one known person opting out.
    by_services = ProjectFactory()
    actor = Actor(user=user)
    for p in (project, by_services):
        SubscriberFactory(project=p, phone="+4915112345600", whatsapp_consent="opted_in")
    upsert_subscriber(
        project=by_services,
        data=SubscriberData(phone="+4915112345601", opt_in_evidence="Web form"),
        actor=actor,
        source=ConsentSource.IMPORT,
    )
    change_consent(
        subscriber=Subscriber.objects.get(project=by_services, phone="+4915112345600"),
        channel=ConsentChannel.WHATSAPP,
        state=ConsentState.OPTED_OUT,
        source=ConsentSource.IMPORT,
        evidence="",
        actor=actor,
    )

    content = "phone,consent,evidence\n+4915112345601,yes,Web form\n+4915112345600,no,\n"
    job = do_import(project, user, content)

    assert (job.created_count, job.updated_count) == (1, 1)
    assert events_of(project) == events_of(by_services)
    assert events_of(project) == [
        (
            "+4915112345600",
            "Unsubscribed",
            '{"channel": "whatsapp", "source": "import"}',
            '{"channel": "whatsapp", "source": "import"}',
        ),
        ("+4915112345601", "Subscribed", '{"source": "import"}', '{"source": "import"}'),
    ]
    assert ledger_of(project) == ledger_of(by_services)
    # The events happened when the import wrote the change, as the services' happen when they do.
    opted_out = Subscriber.objects.get(project=project, phone="+4915112345600")
    assert (
        Event.objects.get(project=project, name="Unsubscribed").occurred_at == opted_out.whatsapp_consent_at
    )

    again = do_import(project, user, content)
    assert again.unchanged_count == 2
    assert Event.objects.for_project(project).count() == 2


def test_an_import_of_a_new_person_opting_out_records_both_events(project, user):
    do_import(project, user, "phone,consent\n+4915112345601,no\n")
    assert [name for _, name, _, _ in events_of(project)] == ["Subscribed", "Unsubscribed"]


def test_an_opt_in_without_any_evidence_is_rejected(project, user):
    job = upload(
        project, user, "phone,consent,evidence\n+4915112345678,yes,\n+4915112345679,yes,Paper form\n"
    )
    job = run(job, user=user)  # evidence column mapped, no default text
    assert job.created_count == 1
    assert report_rows(job)[0]["reason"] == "Opting in needs evidence: this row's evidence cell is empty."


def test_rows_match_existing_subscribers_by_external_id(project, user):
    ada = SubscriberFactory(project=project, phone="+4915112345678", external_id="crm-1", name="Ada")
    SubscriberFactory(project=project, phone="+4915112345679", external_id="crm-2")
    job = do_import(
        project,
        user,
        "customer id,phone,name\n"
        "crm-1,+4915199999999,Ada L.\n"  # moves Ada to her new number
        "crm-2,+4915112345678,Bob\n"  # Ada's old number now, but not at the time of the chunk
        "crm-9,,Nobody\n"
        "crm-10,+4915177777777,New\n"
        ",+4915166666666,No id\n",
        key="external_id",
    )
    ada.refresh_from_db()
    assert (ada.phone, ada.name) == ("+4915199999999", "Ada L.")
    assert (job.created_count, job.updated_count, job.rejected_count) == (1, 1, 3)
    reasons = {r["line"]: r["reason"] for r in report_rows(job)}
    assert reasons["3"] == (
        "The phone +4915112345678 and the external id 'crm-2' belong to two different subscribers."
    )
    assert reasons["4"] == (
        "No subscriber has the external id 'crm-9', and without a phone number no new one can be created."
    )
    assert reasons["6"] == "The external id is missing."


def test_a_long_file_is_applied_in_chunks_with_progress(project, user, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_SIZE", 4)
    lines = ["phone,name"] + [f"+49151123456{n:02d},P{n}" for n in range(10)] + ["bad,Oops"]
    job = do_import(project, user, "\n".join(lines) + "\n")
    assert (job.total_rows, job.processed_rows, job.created_count, job.rejected_count) == (11, 11, 10, 1)
    assert report_rows(job)[0]["line"] == "12"


def test_a_crashed_job_resumes_and_ends_in_the_same_state(project, user, monkeypatch, settings, tmp_path):
    monkeypatch.setattr(imports, "CHUNK_SIZE", 3)
    lines = ["phone,orders,consent"]
    for n in range(10):
        lines.append(f"+49151123456{n:02d},{n},yes")
        if n in (2, 6):
            lines.append(f"+49151123456{n:02d},{n},yes")  # duplicates, one in a later chunk
    lines.append("12345,1,yes")
    content = "\n".join(lines) + "\n"

    reference_project = ProjectFactory()
    reference = do_import(reference_project, user, content, evidence="Form")

    job = upload(project, user, content)
    imports.start_import(
        job=job, columns=job.mapping["columns"], key="phone", default_evidence="Form", actor=Actor(user=user)
    )
    calls = {"n": 0}
    original = imports.Applier._apply_rows

    def crash_on_third_chunk(self, rows, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker killed")
        return original(self, rows, **kwargs)

    monkeypatch.setattr(imports.Applier, "_apply_rows", crash_on_third_chunk)
    with pytest.raises(RuntimeError):
        imports.run_import(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.RUNNING
    assert job.processed_rows == 6
    assert job.file  # kept for the retry

    imports.run_import(job_id=job.pk)  # the retry
    job.refresh_from_db()

    def counts(j):
        return (
            j.status,
            j.processed_rows,
            j.created_count,
            j.updated_count,
            j.unchanged_count,
            j.rejected_count,
        )

    assert counts(job) == counts(reference)
    assert [(r["line"], r["reason"]) for r in report_rows(job)] == [
        (r["line"], r["reason"]) for r in report_rows(reference)
    ]
    assert Subscriber.objects.for_project(project).count() == 10
    assert TagValue.objects.for_project(project).count() == 10
    assert ConsentChange.objects.for_project(project).count() == 10
    # The events committed with their chunk: the retry records the third chunk's, once.
    assert events_of(project) == events_of(reference_project)
    assert len(events_of(project)) == 10


def test_running_a_finished_job_again_does_nothing(project, user):
    from subscribers.actors import run_import_job

    job = do_import(project, user, PEOPLE, evidence="x")
    before = (snapshot(project), ImportJob.objects.filter(pk=job.pk).values().get())
    run_import_job.fn(job.pk)
    imports.run_import(job_id=job.pk)
    assert (snapshot(project), ImportJob.objects.filter(pk=job.pk).values().get()) == before


def test_a_run_that_lost_its_claim_stops(project, user):
    job = upload(project, user, PEOPLE)
    imports.start_import(
        job=job, columns=job.mapping["columns"], key="phone", default_evidence="x", actor=Actor(user=user)
    )
    job.refresh_from_db()
    applier = imports.Applier(job, token=job.started_at or job.created_at, tags=dict)
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.RUNNING)
    chunk = imports.Chunk(first_index=0, end_index=0)
    with pytest.raises(imports._Superseded):
        applier.apply(chunk, imports.ReportWriter(job, keep_below=0))


def test_the_source_file_is_deleted_and_the_report_kept(project, user):
    job = upload(project, user, "phone\n+4915112345678\nnope\n")
    source = job.file.path
    job = run(job, user=user)
    assert not job.file
    assert not Path(source).exists()
    assert Path(job.report.path).exists()


def test_failing_a_job_keeps_its_partial_report_and_drops_the_file(project, user, monkeypatch):
    from subscribers.actors import fail_import_job

    monkeypatch.setattr(imports, "CHUNK_SIZE", 2)
    job = upload(project, user, "phone\nbad\n+4915112345678\n+4915112345679\n+4915112345680\n")
    imports.start_import(
        job=job, columns=job.mapping["columns"], key="phone", default_evidence="", actor=Actor(user=user)
    )
    calls = {"n": 0}
    original = imports.Applier._apply_rows

    def crash_on_second_chunk(self, rows, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("database gone")
        return original(self, rows, **kwargs)

    monkeypatch.setattr(imports.Applier, "_apply_rows", crash_on_second_chunk)
    with pytest.raises(RuntimeError):
        imports.run_import(job_id=job.pk)
    source = job.file.path
    fail_import_job.fn({"args": [job.pk]}, {"retries": 3, "max_retries": 3})
    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED
    assert "upload the file again" in job.error
    assert not Path(source).exists()
    assert [r["line"] for r in report_rows(job)] == ["2"]


def test_erasing_a_subscriber_scrubs_import_reports(
    project, user, django_capture_on_commit_callbacks, monkeypatch
):
    from subscribers import actors, services

    # The scrub runs in a worker (tests/subscribers/test_queues.py); here it runs at once.
    monkeypatch.setattr(actors.scrub_import_files, "send", actors.scrub_import_files.fn)

    job = do_import(
        project,
        user,
        "phone,name,email\n"
        "+4915112345678,Ada,ada@example.com\n"
        "0151 12345678,Ada twice,\n"  # rejected as a duplicate: her number, nationally written
        "+4915112345679,Bob,\n"
        "+4915112345679,Bob twice,\n"
        "x,Someone,ada@example.com\n",  # rejected, mentions her email
    )
    assert len(report_rows(job)) == 3
    pending = upload(project, user, "phone,name\n+4915112345678,Ada\n+4915112345690,Other\n")
    ada = Subscriber.objects.get(project=project, phone="+4915112345678")
    with django_capture_on_commit_callbacks(execute=True):
        services.erase_subscriber(subscriber=ada, actor=Actor(user=user))
    # The cleaned copies replace the files under new names (a bucket has no rename).
    job.refresh_from_db()
    pending.refresh_from_db()
    assert [r["name"] for r in report_rows(job)] == ["Bob twice"]
    with pending.file.open("rb") as f:
        remaining = f.read().decode()
    assert "12345678" not in remaining and "+4915112345690" in remaining


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("people.xlsx", b"PK\x03\x04whatever", "is a spreadsheet, not a CSV file"),
        ("people.csv", b"PK\x03\x04\x14\x00\x06\x00", "This is an Excel or other zipped file"),
        ("people.csv", b"\x00\x01\x02binary\x00", "binary data"),
        ("people.csv", b"", "The file is empty."),
        ("people.csv", b"phone,name\n", "a header line but no rows"),
        ("people.csv", b'"' + b"9" * 200_000 + b'"\nx\n', "Line 1 is not valid CSV"),
        ("people.csv", ",".join(f"c{n}" for n in range(50_000)).encode() + b"\n1\n", "at most 200"),
    ],
)
def test_unusable_files_are_refused_with_a_reason(project, user, name, content, message):
    with pytest.raises(imports.ImportFileError, match=message):
        upload(project, user, content, name=name)
    assert not ImportJob.objects.exists()


def test_too_many_rows_are_refused(project, user, settings):
    settings.IMPORT_MAX_ROWS = 2
    with pytest.raises(imports.ImportFileError, match="more than 2 rows"):
        upload(project, user, "phone\n+4915112345678\n+4915112345679\n+4915112345680\n")


@pytest.mark.parametrize(
    ("content", "encoding", "delimiter"),
    [
        ("phone;name;city\n+4915112345678;Jürgen;Köln\n".encode(), "utf-8-sig", ";"),
        ("\ufeffphone,name,city\n+4915112345678,Jürgen,Köln\n".encode(), "utf-8-sig", ","),
        ("phone\tname\tcity\n+4915112345678\tJürgen\tKöln\n".encode("utf-16"), "utf-16", "\t"),
    ],
)
def test_encodings_and_delimiters_are_detected(project, user, content, encoding, delimiter):
    job = upload(project, user, content)
    assert job.mapping["file"]["encoding"] == encoding
    assert job.mapping["file"]["delimiter"] == delimiter
    assert job.mapping["file"]["decodes"] is True
    assert "undecodable" not in job.mapping["file"]
    assert job.mapping["headers"] == ["phone", "name", "city"]
    assert imports.preview(job) == [(2, ["+4915112345678", "Jürgen", "Köln"])]
    job = run(job, user=user)
    sub = Subscriber.objects.get(project=project)
    assert (sub.name, tags_of(sub)["city"]) == ("Jürgen", "Köln")


def test_auto_mapping_reads_common_header_names(project, user):
    TagDefinition.objects.create(project=project, name="City", type="string")
    job = upload(
        project,
        user,
        "Mobile Number,E-Mail,Customer ID,Full Name,Lang,Country,Time zone,WhatsApp opt-in,city,Notes,id\n"
        "+4915112345678,a@b.de,1,A,de,DE,Europe/Berlin,yes,Berlin,x,y\n",
    )
    assert [c["target"] for c in job.mapping["columns"]] == [
        "phone",
        "email",
        "external_id",
        "name",
        "language",
        "country",
        "time_zone",
        "consent",
        "tag:City",
        "new",
        "",
    ]


@pytest.mark.parametrize(
    ("targets", "key", "evidence", "field", "message"),
    [
        (["phone", "phone"], "phone", "", "col_1", "are both mapped to Phone"),
        (["", "name"], "phone", "", "key", "map a column to Phone"),
        (["phone", "consent"], "phone", "", "default_evidence", "Opt-ins need evidence"),
        (["phone", "consent_evidence"], "phone", "x", "key", "needs a consent column"),
        (["phone", "new"], "phone", "", "col_1", "is a built-in field"),
    ],
)
def test_mapping_mistakes_are_explained(project, user, targets, key, evidence, field, message):
    job = upload(project, user, "a,name\n+4915112345678,yes\n")
    columns = [{"target": t, "new_tag": ""} for t in targets]
    with pytest.raises(InvalidInput, match=message) as exc:
        imports.start_import(
            job=job, columns=columns, key=key, default_evidence=evidence, actor=Actor(user=user)
        )
    assert exc.value.field == field
    job.refresh_from_db()
    assert job.status == ImportStatus.UPLOADED


def test_a_new_tag_named_like_an_existing_one_writes_that_tag(project, user):
    TagDefinition.objects.create(project=project, name="Orders", type="integer")
    job = upload(project, user, "phone,n\n+4915112345678,5\n")
    columns = [{"target": "phone", "new_tag": ""}, {"target": "new", "new_tag": "orders"}]
    job = run(job, columns=columns, user=user)
    assert job.mapping["columns"][1] == {"target": "tag:Orders", "new_tag": ""}
    assert TagDefinition.objects.for_project(project).count() == 1
    assert tags_of(Subscriber.objects.get(project=project))["Orders"] == 5


@pytest.mark.django_db(transaction=True)
def test_the_threaded_pipeline_imports_like_the_inline_one(settings, tmp_path, monkeypatch):
    from tests.factories import MembershipFactory

    settings.MEDIA_ROOT = tmp_path / "threaded"
    monkeypatch.setattr(imports, "CHUNK_SIZE", 5)
    member = MembershipFactory()
    project, user = member.project, member.user
    lines = ["phone,score,consent"] + [f"+49151123456{n:02d},{n},yes" for n in range(23)] + ["bad,1,yes"]
    job = upload(project, user, "\n".join(lines) + "\n")
    imports.start_import(
        job=job, columns=job.mapping["columns"], key="phone", default_evidence="Form", actor=Actor(user=user)
    )
    imports.run_import(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.created_count, job.rejected_count, job.processed_rows) == ("done", 23, 1, 24)
    assert TagValue.objects.for_project(project).count() == 23
    assert ConsentChange.objects.for_project(project).count() == 23


@pytest.mark.django_db(transaction=True)
def test_the_events_of_an_import_reach_the_durable_feed(settings, tmp_path, monkeypatch):
    from subscribers import feed
    from tests.factories import MembershipFactory

    settings.MEDIA_ROOT = tmp_path / "feed"
    monkeypatch.setattr(imports, "CHUNK_SIZE", 2)
    member = MembershipFactory()
    cursor = feed.ensure_cursor("import-test")  # a consumer that starts before the import
    lines = ["phone,consent"] + [f"+49151123456{n:02d},{'no' if n % 2 else 'yes'}" for n in range(5)]
    do_import(member.project, member.user, "\n".join(lines) + "\n", evidence="Form")
    read = feed.read((cursor.position_txid, cursor.position_event_id), 100)
    assert sorted((e.subscriber.phone, e.name) for e in read) == sorted(
        [(f"+49151123456{n:02d}", "Subscribed") for n in range(5)]
        + [(f"+49151123456{n:02d}", "Unsubscribed") for n in (1, 3)]
    )


MIXED = (
    # existing subscribers (created below) are updated, moved, conflict; new ones are created
    ["phone,external_id,name,tier,consent"]
    + [f"+49151200000{n:02d},ext-{n},Existing {n} renamed,gold,yes" for n in range(0, 12)]
    + [f"+49151300000{n:02d},new-{n},New {n},silver,{'yes' if n % 2 else 'no'}" for n in range(0, 20)]
    + [
        "+4915120000012,ext-13,Conflict,gold,yes",  # phone of #12, external id of #13
        "+4915199999999,ext-14,Moved,gold,yes",  # #14 moves to a new number
        "+4915130000001,ext-x,Duplicate,gold,yes",
        "bad,ext-y,Bad,gold,yes",
    ]
)


def seed_existing(project):
    for n in range(16):
        SubscriberFactory(
            project=project,
            phone=f"+49151200000{n:02d}",
            external_id=f"ext-{n}",
            name=f"Existing {n}",
            whatsapp_consent="unknown",
        )


def final_state(project) -> set:
    subs = {
        (
            s.phone,
            s.external_id,
            s.name,
            s.whatsapp_consent,
            tuple(
                sorted((k, str(v)) for k, v in tags_of(s).items() if k not in ("First seen", "Last inbound"))
            ),
        )
        for s in Subscriber.objects.for_project(project)
    }
    ledger = sorted(
        ConsentChange.objects.for_project(project).values_list("subscriber__phone", "state", "evidence")
    )
    return subs, tuple(ledger), tuple(events_of(project))


def job_counts(job):
    return (
        job.status,
        job.processed_rows,
        job.created_count,
        job.updated_count,
        job.unchanged_count,
        job.rejected_count,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("crash_at", [None, 4])
def test_parallel_writers_end_like_one_writer(settings, tmp_path, monkeypatch, crash_at):
    """Two writer threads (PostgreSQL) or one (SQLite), with or without a crash: same result
    as the inline, one-chunk-after-the-other run."""
    from tests.factories import MembershipFactory

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMPORT_WRITERS = 2
    monkeypatch.setattr(imports, "CHUNK_SIZE", 3)
    content = "\n".join(MIXED) + "\n"
    results = []
    for mode in ("inline", "threaded"):
        member = MembershipFactory()
        project, user = member.project, member.user
        seed_existing(project)
        job = upload(project, user, content)
        imports.start_import(
            job=job,
            columns=job.mapping["columns"],
            key="phone",
            default_evidence="Form",
            actor=Actor(user=user),
        )
        if mode == "inline":
            from django.db import transaction

            with transaction.atomic():
                imports.run_import(job_id=job.pk)
        else:
            if crash_at:
                calls = {"n": 0}
                original = imports.Applier._apply_rows

                def crash(self, rows, calls=calls, original=original, **kwargs):
                    calls["n"] += 1
                    if calls["n"] == crash_at:
                        raise RuntimeError("worker killed")
                    return original(self, rows, **kwargs)

                monkeypatch.setattr(imports.Applier, "_apply_rows", crash)
                with pytest.raises(RuntimeError):
                    imports.run_import(job_id=job.pk)
                monkeypatch.setattr(imports.Applier, "_apply_rows", original)
                assert ImportJob.objects.get(pk=job.pk).status == ImportStatus.RUNNING
            imports.run_import(job_id=job.pk)
        job.refresh_from_db()
        results.append(
            (job_counts(job), [(r["line"], r["reason"]) for r in report_rows(job)], final_state(project))
        )
    inline, threaded = results
    assert inline[0] == ("done", 36, 20, 13, 0, 3)
    assert [line for line, _ in inline[1]] == ["34", "36", "37"]
    assert threaded == inline


@pytest.mark.django_db(transaction=True)
def test_a_chunk_read_early_sees_a_number_moved_by_the_chunk_before(settings, tmp_path, monkeypatch):
    """With two writers (PostgreSQL), a chunk reads its subscribers while the chunk before is
    still writing. When that chunk moves a subscriber off a number of this chunk, the number
    is free by this chunk's turn: it creates a subscriber instead of updating the moved one."""
    import time

    from tests.factories import MembershipFactory

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMPORT_WRITERS = 2
    monkeypatch.setattr(imports, "CHUNK_SIZE", 2)
    member = MembershipFactory()
    project, user = member.project, member.user
    SubscriberFactory(project=project, phone="+4915120000000", external_id="crm-1", name="Ada")
    original = imports.Applier._apply_rows

    def slow_move(self, rows, **kwargs):
        if not kwargs.get("new_only") and any(r.phone == "+4915199999999" for r in rows):
            time.sleep(0.5)  # the next chunk reads meanwhile
        return original(self, rows, **kwargs)

    monkeypatch.setattr(imports.Applier, "_apply_rows", slow_move)
    job = do_import(
        project,
        user,
        "phone,external_id,name\n"
        "+4915199999999,crm-1,Ada moved\n"  # found by external id: Ada moves to this number
        "+4915130000000,crm-5,Filler\n"
        "+4915120000000,crm-2,New on Ada's old number\n"
        "+4915130000001,crm-6,Filler\n",
    )
    assert (job.created_count, job.updated_count, job.rejected_count) == (3, 1, 0)
    by_phone = dict(Subscriber.objects.for_project(project).values_list("phone", "external_id"))
    assert by_phone["+4915199999999"] == "crm-1"
    assert by_phone["+4915120000000"] == "crm-2"


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's planner")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("column", "index"),
    [("phone", "subscriber_unique_phone"), ("external_id", "subscriber_unique_external_id")],
)
def test_keyed_lookups_probe_the_unique_index_not_the_trigram_index(column, index):
    """Each chunk's lookup must cost the same, however large the project: one btree probe per key.

    Caught here: the planner flattening the keys into a hash join over the whole project. Not
    reproducible at this size: with a million-row project's statistics it also chose the phone
    trigram index (which answers "=" too) and spent 6 ms per key in its posting lists; the chunk
    settings turn bitmap scans off, the only way to read that index."""
    rows = 20_000
    project = ProjectFactory()
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO subscribers_subscriber (project_id, public_id, phone, wa_id, external_id, name, "
            "email, language, country, time_zone, whatsapp_consent, created_at, updated_at) "
            "SELECT %s, gen_random_uuid(), '+49151' || (10000000 + n * 4099 %% 89999999), '', "
            "'ext-' || n, 'Name', '', '', '', '', 'unknown', now(), now() "
            "FROM generate_series(1, %s) AS n",
            [project.pk, rows],
        )
        # VACUUM also fills in the trigram index's statistics, which its cost estimate reads.
        cur.execute("VACUUM ANALYZE subscribers_subscriber")
    keys = [f"+4917{n:09d}" for n in range(10_000)]  # a chunk's worth
    with transaction.atomic():
        imports.chunk_settings()
        cur = imports._binding_cursor()
        cur.execute(
            "EXPLAIN " + imports.PostgresStore.lookup_sql(column, ("id", "phone")),
            [keys, project.pk],
            binary=True,
        )
        plan = "\n".join(r[0] for r in cur.fetchall())
    assert f"Index Scan using {index}" in plan, plan
    assert "Bitmap" not in plan, plan


def test_imports_collect_garbage_less_often_and_restore_the_thresholds(project, user, monkeypatch):
    import gc

    before = gc.get_threshold()
    seen = []
    original = pipeline._run

    def run(job, token):
        seen.append(gc.get_threshold())
        with imports._fewer_collections:  # a second import in the same worker
            seen.append(gc.get_threshold())
        seen.append(gc.get_threshold())  # still the first one's
        original(job, token)

    monkeypatch.setattr(pipeline, "_run", run)
    job = do_import(project, user, "phone\n+4915112345678\n")
    assert job.created_count == 1
    assert seen == [imports._FewerCollections.THRESHOLD] * 3
    assert gc.get_threshold() == before
