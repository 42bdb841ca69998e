"""CSV import: files that do not decode, broken quotes, huge cells and numbers, too many columns.

Each of these used to corrupt data or fail a whole file; now the rows concerned are reported
one by one (or the person importing chooses first) and every good row is kept.
"""

from __future__ import annotations

import io

import pytest

from controlpanel.services import Actor
from subscribers import imports
from subscribers.errors import InvalidInput
from subscribers.models import ImportStatus, Subscriber, TagDefinition, UndecodableRows
from subscribers.services import tags_of
from tests.subscribers.test_import import _media, report_rows, run, upload  # noqa: F401 - _media: a fixture

NAMES = ["Ayşe Öztürk", "Jürgen Groß", "Zoë Lefèvre", "Ana"]
CITIES = ["Köln", "München", "Düsseldorf", "Berlin"]


def utf8_file_with_a_stray_byte(rows: int = 200, bad_line: int = 181) -> bytes:
    """A UTF-8 file whose line ``bad_line`` has one Latin-1 byte (ö written as 0xF6)."""
    lines = [b"phone,name,city"]
    for n in range(2, rows + 2):
        name, city = NAMES[n % 4], CITIES[n % 4]
        line = f"+49151{n:08d},{name},{city}".encode()
        if n == bad_line:
            line = f"+49151{n:08d},Björn,".encode().replace("ö".encode(), b"\xf6") + "Köln".encode()
        lines.append(line)
    return b"\n".join(lines) + b"\n"


def names_by_phone(project) -> dict[str, str]:
    return dict(Subscriber.objects.for_project(project).values_list("phone", "name"))


def test_a_stray_byte_does_not_re_decode_the_valid_rows_and_nothing_is_written_before_a_choice(
    project, owner
):
    job = upload(project, owner, utf8_file_with_a_stray_byte())
    fmt = job.mapping["file"]
    assert (fmt["encoding"], fmt["decodes"]) == ("utf-8-sig", False)
    found = fmt["undecodable"]
    assert found["count"] == 1
    assert found["rows"] == [
        {
            "line": 181,
            "bytes": "0xF6",
            "text": "+4915100000181,Bj\ufffdrn,Köln",
            "alternative": "+4915100000181,Björn,KÃ¶ln",
        }
    ]
    assert found["alternative"] == "cp1252"
    assert found["recoded"] == 149  # the valid rows with accents (not "Ana,Berlin"), read otherwise
    # The preview reads the valid rows as UTF-8.
    assert imports.preview(job)[0] == (2, ["+4915100000002", "Zoë Lefèvre", "Düsseldorf"])
    with pytest.raises(InvalidInput, match="choose what happens to them first") as exc:
        run(job, user=owner)
    assert exc.value.field == "encoding"
    job.refresh_from_db()
    assert job.status == ImportStatus.UPLOADED
    assert not Subscriber.objects.for_project(project).exists()


def test_skipping_undecodable_rows_keeps_every_valid_row_as_utf8(project, owner):
    job = upload(project, owner, utf8_file_with_a_stray_byte())
    job = imports.choose_undecodable_rows(job=job, choice=UndecodableRows.SKIP, actor=Actor(user=owner))
    assert job.undecodable_rows == "skip"
    job = run(job, user=owner)
    assert (job.status, job.created_count, job.rejected_count) == ("done", 199, 1)
    names = names_by_phone(project)
    assert names["+4915100000004"] == "Ayşe Öztürk"
    assert "+4915100000181" not in names
    assert Subscriber.objects.for_project(project).filter(name__contains="Öztürk").count() == 50
    ayse = Subscriber.objects.get(project=project, phone="+4915100000004")
    assert tags_of(ayse)["city"] == "Köln"
    (rejected,) = report_rows(job)
    assert rejected["line"] == "181"
    assert "0xF6" in rejected["reason"] and "UTF-8" in rejected["reason"]
    assert rejected["name"] == "Bj\ufffdrn"


def test_reading_the_whole_file_in_the_other_encoding_is_a_choice_shown_first(project, owner):
    content = "phone;name;city\n+4915112345678;Jürgen;Köln\n+4915112345679;Ana;Berlin\n".encode("cp1252")
    job = upload(project, owner, content)
    found = job.mapping["file"]["undecodable"]
    assert (found["count"], found["recoded"], found["alternative"]) == (1, 0, "cp1252")
    assert found["rows"][0]["alternative"] == "+4915112345678;Jürgen;Köln"
    job = imports.choose_undecodable_rows(job=job, choice=UndecodableRows.REENCODE, actor=Actor(user=owner))
    assert imports.preview(job)[0] == (2, ["+4915112345678", "Jürgen", "Köln"])
    job = run(job, user=owner)
    assert (job.created_count, job.rejected_count) == (2, 0)
    jurgen = Subscriber.objects.get(project=project, phone="+4915112345678")
    assert (jurgen.name, tags_of(jurgen)["city"]) == ("Jürgen", "Köln")


def test_reading_another_encoding_reads_the_header_again(project, owner):
    content = "phone,straße\n+4915112345678,Hauptstraße 1\n".encode("cp1252")
    job = upload(project, owner, content)
    assert job.mapping["headers"] == ["phone", "stra\ufffde"]
    assert job.mapping["file"]["undecodable"]["rows"][0]["line"] == 1
    job = imports.choose_undecodable_rows(job=job, choice=UndecodableRows.REENCODE, actor=Actor(user=owner))
    assert job.mapping["headers"] == ["phone", "straße"]
    assert job.mapping["columns"][1] == {"target": "new", "new_tag": "straße"}


def test_a_file_that_decodes_has_nothing_to_choose(project, owner):
    job = upload(project, owner, "phone,name\n+4915112345678,Ayşe\n")
    with pytest.raises(InvalidInput, match="nothing to choose"):
        imports.choose_undecodable_rows(job=job, choice="skip", actor=Actor(user=owner))
    job = run(job, user=owner)
    assert job.created_count == 1


def test_a_utf16_file_with_an_odd_trailing_byte_reports_that_row(project, owner):
    content = "phone\tname\n+4915112345678\tJürgen\n+4915112345679\tAyşe".encode("utf-16") + b"\x41"
    job = upload(project, owner, content)
    found = job.mapping["file"]["undecodable"]
    assert (found["count"], found["alternative"]) == (1, None)
    assert found["rows"][0]["line"] == 3 and found["rows"][0]["bytes"] == "0x41"
    with pytest.raises(InvalidInput, match="cannot be read in another encoding"):
        imports.choose_undecodable_rows(job=job, choice="reencode", actor=Actor(user=owner))
    imports.choose_undecodable_rows(job=job, choice="skip", actor=Actor(user=owner))
    job.refresh_from_db()
    job = run(job, user=owner)
    assert (job.created_count, job.rejected_count) == (1, 1)
    assert names_by_phone(project) == {"+4915112345678": "Jürgen"}
    (rejected,) = report_rows(job)
    assert rejected["line"] == "3" and "UTF-16" in rejected["reason"]


@pytest.mark.parametrize(
    "rest",
    [
        # The quote is never closed: it would run to the end of the file.
        "+4915112345679,Bob\n+4915112345680,Cy\n",
        # A later quote closes it: the swallowed lines would make one cell with line breaks.
        '+4915112345679,Bob\n+4915112345680,"Cy"\n',
    ],
)
def test_a_quote_left_open_rejects_its_line_and_keeps_the_rows_after_it(project, owner, rest):
    job = upload(project, owner, 'phone,name\n+4915112345677,Ann\n+4915112345678,"Ada\n' + rest)
    assert job.total_rows == 4
    job = run(job, user=owner)
    assert (job.created_count, job.rejected_count) == (3, 1)
    assert names_by_phone(project) == {
        "+4915112345677": "Ann",
        "+4915112345679": "Bob",
        "+4915112345680": "Cy",
    }
    (rejected,) = report_rows(job)
    assert rejected["line"] == "3"
    assert "not closed on its line" in rejected["reason"]
    assert rejected["name"] == '"Ada'


def test_a_line_break_in_an_ignored_column_is_still_one_row(project, owner):
    content = 'phone,name,notes\n+4915112345678,Ada,"two\nlines"\n+4915112345679,Bob,\n'
    job = upload(project, owner, content)
    columns = [{"target": "phone"}, {"target": "name"}, {"target": ""}]
    job = run(job, columns=columns, user=owner)
    assert (job.created_count, job.rejected_count) == (2, 0)
    assert names_by_phone(project) == {"+4915112345678": "Ada", "+4915112345679": "Bob"}


def test_a_cell_over_the_csv_size_limit_rejects_its_row_only(project, owner):
    content = "phone,name\n+4915112345678,Ada\n+4915112345679," + "x" * 200_000 + "\n+4915112345680,Cy\n"
    job = run(upload(project, owner, content), user=owner)
    assert (job.created_count, job.rejected_count) == (2, 1)
    assert set(names_by_phone(project)) == {"+4915112345678", "+4915112345680"}
    (rejected,) = report_rows(job)
    assert rejected["line"] == "3"
    assert rejected["reason"] == "A cell is longer than 131,072 characters."
    assert len(rejected["name"]) == 1000


@pytest.mark.parametrize("digits", [17, 21, 30])
def test_a_number_too_large_for_its_column_rejects_its_row_only(project, owner, digits):
    TagDefinition.objects.create(project=project, name="orders", type="integer")
    huge = "9" * digits
    content = f"phone,orders\n+4915112345678,3\n+4915112345679,{huge}\n+4915112345680,123456789012345\n"
    job = run(upload(project, owner, content), user=owner)
    assert (job.status, job.created_count, job.rejected_count) == ("done", 2, 1)
    assert (
        tags_of(Subscriber.objects.get(project=project, phone="+4915112345680"))["orders"] == 123456789012345
    )
    (rejected,) = report_rows(job)
    assert rejected["line"] == "3"
    # Names the tag and the limit (here: 16 digits; the shared parser may word its own range).
    reason = rejected["reason"]
    assert "orders" in reason and any(ch.isdigit() for ch in reason.replace(huge, ""))


def test_a_decimal_that_rounds_past_the_limit_is_rejected(project, owner):
    TagDefinition.objects.create(project=project, name="amount", type="decimal")
    job = run(upload(project, owner, "phone,amount\n+4915112345678,9999999999999999.999999999\n"), user=owner)
    assert (job.created_count, job.rejected_count) == (0, 1)


def test_too_many_columns_are_refused_before_anything_is_stored(project, owner, settings):
    settings.IMPORT_MAX_COLUMNS = 3
    with pytest.raises(
        imports.ImportFileError, match="The first line has 4 columns; an import takes at most 3"
    ):
        upload(project, owner, "a,b,c,d\n1,2,3,4\n")


def test_every_quote_left_open_is_one_rejected_line_even_at_the_end_of_the_file():
    text = io.StringIO('h1,h2\n1,"a\n2,"b\n3,c\n4,"d', newline="")
    records = list(imports.read_records(text, ",", width=2, single_line={0, 1}))
    assert [(r.line, r.cells, bool(r.problem)) for r in records] == [
        (2, ["1", '"a'], True),
        (3, ["2", '"b'], True),
        (4, ["3", "c"], False),
        (5, ["4", "d"], False),  # on its own line: the quote ends with the file, no other line lost
    ]


def test_erasure_scrubs_a_pending_file_that_does_not_decode_and_keeps_its_other_bytes(
    project, owner, django_capture_on_commit_callbacks, monkeypatch
):
    from subscribers import actors, services
    from tests.factories import SubscriberFactory

    # The scrub runs in a worker (tests/subscribers/test_queues.py); here it runs at once.
    monkeypatch.setattr(actors.scrub_import_files, "send", actors.scrub_import_files.fn)

    ada = SubscriberFactory(project=project, phone="+4915112345678")
    kept = "+4915112345690,Ayşe\n".encode() + b"+4915112345691,J\xfcrgen\n"
    pending = upload(project, owner, b"phone,name\n+4915112345678,Ada\n" + kept)
    with django_capture_on_commit_callbacks(execute=True):
        services.erase_subscriber(subscriber=ada, actor=Actor(user=owner))
    pending.refresh_from_db()  # the cleaned copy has a new name
    with pending.file.open("rb") as f:
        assert f.read() == b"phone,name\r\n" + kept.replace(b"\n", b"\r\n")


def test_a_row_with_thousands_of_cells_is_previewed_within_the_column_limit(project, owner, settings):
    settings.IMPORT_MAX_COLUMNS = 5
    job = upload(project, owner, "phone,name\n" + "+4915112345678,Ada" + ",x" * 50_000 + "\n")
    ((line, cells),) = imports.preview(job)
    assert (line, len(cells), cells[:2]) == (2, 5, ["+4915112345678", "Ada"])
    job = run(job, user=owner)
    (rejected,) = report_rows(job)
    assert rejected["reason"] == "The row has 50002 cells but the header has 2 columns."


def test_choosing_for_a_file_that_is_gone_says_so(project, owner):
    job = upload(project, owner, utf8_file_with_a_stray_byte(rows=3, bad_line=2))
    job.file.storage.delete(job.file.name)
    with pytest.raises(InvalidInput, match="The uploaded file is gone"):
        imports.choose_undecodable_rows(job=job, choice="skip", actor=Actor(user=owner))
    job.refresh_from_db()
    assert job.undecodable_rows == ""
