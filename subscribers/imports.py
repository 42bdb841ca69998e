"""CSV import: upload, column mapping, and the set-based background pipeline.

Three steps, each a service:

1. :func:`create_import` stores the upload, detects encoding and delimiter and counts the rows
   (clear errors for files that are not CSV or too large).
2. :func:`start_import` saves the column mapping and enqueues the job after commit.
3. :func:`run_import` (called by the actor) reads the file in chunks. Each chunk is validated in
   Python (phones, profile fields, tag types, consent, duplicates inside the file), then applied
   set-based in one transaction: existing subscribers fetched in one query, new ones bulk
   inserted, changed ones bulk updated, tag values diffed in bulk, ledger rows bulk inserted.
   On PostgreSQL the inserts stream through COPY.

Idempotency and restarts: rows whose values are already stored are "unchanged" and touch
nothing (not even ``updated_at``), so importing a file twice changes nothing. Each chunk commits
together with the job's checkpoint (``processed_rows`` and the counts); the rejected rows of a
chunk are appended to a work file before that commit. A re-run resumes after the last committed
chunk and trims the work file to it, so a crashed job ends in the same state as an uninterrupted
one. A run owns the job through ``started_at`` (its claim token): a newer run takes over, and the
older one stops at its next checkpoint.
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import os
import queue
import re
import threading
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Any

import phonenumbers
import psycopg
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import validate_email
from django.db import IntegrityError, connection, connections, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone

from controlpanel.models import Project
from controlpanel.services import SYSTEM, Actor, record_audit

from . import tags as tagtypes
from .errors import InvalidInput
from .ids import uuid7s
from .models import (
    ConsentChange,
    ConsentChannel,
    ConsentSource,
    ConsentState,
    ImportJob,
    ImportStatus,
    Subscriber,
    TagDefinition,
    TagType,
    TagValue,
)
from .phones import normalize_phone
from .signals import SubscriberErased, subscriber_erased

# Rows per chunk: one transaction, one progress update. Tests lower it to cover chunk edges.
CHUNK_SIZE = 10_000
PREVIEW_ROWS = 10
DELIMITERS = (",", ";", "\t")
VALUE_COLUMNS = ("value_text", "value_number", "value_bool", "value_date", "value_datetime")
PROFILE_TARGETS = ("name", "email", "language", "country", "time_zone")
# Stored numbers have 8 decimal places: compare and write them rounded the same way, or a
# re-import of 1.123456789 would look like a change every time.
_NUMBER_QUANTUM = Decimal("1e-8")


def max_rows() -> int:
    return getattr(settings, "IMPORT_MAX_ROWS", 1_000_000)


def writer_count() -> int:
    """Writer threads of a job: SQLite takes one writer at a time, so it gets one."""
    if connection.vendor != "postgresql":
        return 1
    return max(1, getattr(settings, "IMPORT_WRITERS", 2))


def max_bytes() -> int:
    return getattr(settings, "IMPORT_MAX_BYTES", 256 * 1024 * 1024)


class ImportFileError(Exception):
    """The file cannot be imported: the message says why, for the person who uploaded it."""


class _Superseded(Exception):
    """Another run claimed the job; this one stops without touching it."""


# --- Targets of a column -----------------------------------------------------------------

TARGET_LABELS = {
    "": "Ignore",
    "phone": "Phone",
    "external_id": "External id",
    "name": "Name",
    "email": "Email",
    "language": "Language",
    "country": "Country",
    "time_zone": "Time zone",
    "consent": "WhatsApp consent",
    "consent_evidence": "Consent evidence",
    "new": "New tag",
}
SINGLE_TARGETS = ("phone", "external_id", *PROFILE_TARGETS, "consent", "consent_evidence")
CONSENT_VALUES = {
    "yes": ConsentState.OPTED_IN,
    "y": ConsentState.OPTED_IN,
    "true": ConsentState.OPTED_IN,
    "1": ConsentState.OPTED_IN,
    "opted_in": ConsentState.OPTED_IN,
    "opted in": ConsentState.OPTED_IN,
    "opt-in": ConsentState.OPTED_IN,
    "no": ConsentState.OPTED_OUT,
    "n": ConsentState.OPTED_OUT,
    "false": ConsentState.OPTED_OUT,
    "0": ConsentState.OPTED_OUT,
    "opted_out": ConsentState.OPTED_OUT,
    "opted out": ConsentState.OPTED_OUT,
    "opt-out": ConsentState.OPTED_OUT,
}
_FORMULA_START = ("=", "+", "-", "@")
# Our own export writes "unknown" for people who never answered: no change, not an error.
CONSENT_NO_CHANGE = {"unknown"}

_HEADER_TARGETS = {
    "phone": "phone",
    "phonenumber": "phone",
    "mobile": "phone",
    "mobilephone": "phone",
    "mobilenumber": "phone",
    "msisdn": "phone",
    "cell": "phone",
    "cellphone": "phone",
    "telephone": "phone",
    "tel": "phone",
    "whatsapp": "phone",
    "whatsappnumber": "phone",
    "whatsappphone": "phone",
    "handy": "phone",
    "telefon": "phone",
    "externalid": "external_id",
    "userid": "external_id",
    "customerid": "external_id",
    "clientid": "external_id",
    "crmid": "external_id",
    "name": "name",
    "fullname": "name",
    "contactname": "name",
    "customername": "name",
    "email": "email",
    "emailaddress": "email",
    "mail": "email",
    "language": "language",
    "lang": "language",
    "locale": "language",
    "country": "country",
    "countrycode": "country",
    "timezone": "time_zone",
    "tz": "time_zone",
    "consent": "consent",
    "optin": "consent",
    "whatsappoptin": "consent",
    "whatsappconsent": "consent",
    "marketingconsent": "consent",
    "consentevidence": "consent_evidence",
    "optinevidence": "consent_evidence",
    "evidence": "consent_evidence",
    # Columns of our own export and of the rejected-rows report that are not imported.
    "line": "",
    "reason": "",
    "id": "",
    "createdat": "",
    "updatedat": "",
    "lastinboundat": "",
}


def _header_key(header: str) -> str:
    return re.sub(r"[\s_\-.]", "", header.strip().lower())


def auto_targets(headers: list[str], definitions: dict[str, TagDefinition]) -> list[dict[str, str]]:
    """A first guess at the mapping: known header names, existing tags, else a new tag."""
    used: set[str] = set()
    out = []
    for header in headers:
        key = _header_key(header)
        target = _HEADER_TARGETS.get(key)
        new_name = ""
        if target is None:
            existing = definitions.get(header.strip().lower())
            if existing is not None:
                target = f"tag:{existing.name}"
            elif tagtypes.builtin(header) is not None or not tagtypes.TAG_NAME_RE.match(header.strip()):
                target = ""
            else:
                target, new_name = "new", header.strip()
        if target in SINGLE_TARGETS and target in used:
            target = ""
        used.add(target)
        out.append({"target": target, "new_tag": new_name or header.strip()[:64]})
    return out


# --- Reading the file ------------------------------------------------------------------


@dataclass(frozen=True)
class FileFormat:
    encoding: str
    delimiter: str
    notice: str = ""


def _looks_binary(head: bytes) -> str | None:
    if head.startswith(b"PK\x03\x04"):
        return "This is an Excel or other zipped file, not a CSV. Save it as “CSV UTF-8” and upload that."
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "This is an old Excel (.xls) file, not a CSV. Save it as “CSV UTF-8” and upload that."
    if head.startswith(b"%PDF"):
        return "This is a PDF, not a CSV file."
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "This file contains binary data, not text: upload a CSV file."
    return None


def detect_format(stream) -> FileFormat:
    """Encoding (UTF-8 with or without BOM, UTF-16 with BOM, else Latin-1) and delimiter.

    Reads the whole file once to be sure that it decodes; ``stream`` is a binary file.
    """
    stream.seek(0)
    head = stream.read(64 * 1024)
    problem = _looks_binary(head[:8192])
    if problem:
        raise ImportFileError(problem)
    notice = ""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
        decoder = codecs.getincrementaldecoder("utf-8")()
        stream.seek(0)
        line = 1
        try:
            while chunk := stream.read(1024 * 1024):
                decoder.decode(chunk)
                line += chunk.count(b"\n")
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            encoding = "latin-1"
            notice = (
                f"The file is not valid UTF-8 (first bad character near line {line}), so it was "
                "read as Latin-1 (Western European). Check accented letters in the preview; if "
                "they look wrong, save the file as “CSV UTF-8” and upload it again."
            )
    stream.seek(0)
    sample = stream.read(64 * 1024).decode(encoding, errors="replace")
    return FileFormat(encoding=encoding, delimiter=_detect_delimiter(sample), notice=notice)


def _detect_delimiter(sample: str) -> str:
    lines = sample.splitlines()
    if len(sample) >= 64 * 1024 and len(lines) > 1:
        lines = lines[:-1]  # the last line of a cut sample is incomplete
    lines = [ln for ln in lines[:50] if ln.strip()]
    best, best_score = ",", (0, 0)
    for delimiter in DELIMITERS:
        try:
            rows = list(csv.reader(lines, delimiter=delimiter))
        except csv.Error:
            continue
        if not rows:
            continue
        width = len(rows[0])
        if width < 2:
            continue
        consistent = sum(1 for r in rows if len(r) == width)
        score = (consistent, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def open_text(job: ImportJob) -> io.TextIOWrapper:
    fmt = job.mapping["file"]
    binary = job.file.open("rb")
    return io.TextIOWrapper(binary, encoding=fmt["encoding"], newline="")


def read_records(text: io.TextIOBase, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where the record starts, cells) for every non-blank record after the header."""
    reader = csv.reader(text, delimiter=delimiter)
    last_line = 0
    for cells in reader:
        start = last_line + 1
        last_line = reader.line_num
        if start == 1:
            continue  # the header
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        yield start, cells


def _read_header(text: io.TextIOBase, delimiter: str) -> list[str]:
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError("The file is empty.") from None
    except csv.Error as exc:
        raise ImportFileError(f"Line 1 is not valid CSV: {exc}.") from None
    return [h.strip() or f"Column {i + 1}" for i, h in enumerate(header)]


# --- Step 1: upload ----------------------------------------------------------------------


def create_import(*, project: Project, upload: UploadedFile, actor: Actor) -> ImportJob:
    """Store an uploaded CSV as a new ImportJob (status "uploaded") with a guessed mapping.

    Raises ImportFileError, with nothing stored, for a file that is not a usable CSV.
    """
    name = os.path.basename(upload.name or "upload.csv")[:255]
    if upload.size > max_bytes():
        raise ImportFileError(
            f"The file is {upload.size / 1024 / 1024:.0f} MB; the limit is "
            f"{max_bytes() / 1024 / 1024:.0f} MB. Split it into smaller files."
        )
    if name.lower().endswith((".xlsx", ".xls", ".numbers", ".ods")):
        raise ImportFileError(
            f"“{name}” is a spreadsheet, not a CSV file. Save it as “CSV UTF-8” and upload that."
        )
    stream = upload.file
    fmt = detect_format(stream)
    stream.seek(0)
    text = io.TextIOWrapper(stream, encoding=fmt.encoding, newline="")
    try:
        headers = _read_header(text, fmt.delimiter)
        rows = 0
        limit = max_rows()
        last_line = 1
        for line, _cells in read_records(_rewind(text), fmt.delimiter):
            last_line = line
            rows += 1
            if rows > limit:
                raise ImportFileError(
                    f"The file has more than {limit:,} rows; one import takes at most {limit:,}. "
                    "Split it into several files."
                )
    except csv.Error as exc:
        raise ImportFileError(f"The file is not valid CSV after line {last_line}: {exc}.") from None
    finally:
        text.detach()
    if rows == 0:
        raise ImportFileError("The file has a header line but no rows to import.")
    mapping = {
        "file": {"encoding": fmt.encoding, "delimiter": fmt.delimiter, "notice": fmt.notice},
        "headers": headers,
        "columns": auto_targets(headers, tagtypes.definitions(project)),
    }
    stream.seek(0)
    with transaction.atomic():
        job = ImportJob(
            project=project,
            original_name=name,
            mapping=mapping,
            total_rows=rows,
            created_by=actor.user,
        )
        job.file.save(f"{uuid.uuid4().hex}.csv", File(stream), save=False)
        job.save()
        record_audit(project=project, actor=actor, action="import.uploaded", obj=job, changes={"rows": rows})
    return job


def _rewind(text: io.TextIOWrapper) -> io.TextIOWrapper:
    text.seek(0)
    return text


def preview(job: ImportJob, rows: int = PREVIEW_ROWS) -> list[tuple[int, list[str]]]:
    """The first ``rows`` records of the file, each padded to the header's width."""
    width = len(job.mapping["headers"])
    out = []
    with open_text(job) as text:
        for line, cells in read_records(text, job.mapping["file"]["delimiter"]):
            out.append((line, (cells + [""] * width)[: max(width, len(cells))]))
            if len(out) >= rows:
                break
    return out


# --- Step 2: mapping ---------------------------------------------------------------------


def clean_mapping(
    *,
    project: Project,
    headers: list[str],
    columns: list[dict[str, str]],
    key: str,
    default_evidence: str,
    opt_ins: Callable[[int], bool] | None = None,
) -> dict[str, Any]:
    """Check a mapping chosen on the mapping page; raise InvalidInput naming the column.

    ``opt_ins(column)`` says whether the file opts anyone in through that column: only then is
    evidence required (a file of opt-outs needs none).
    """
    if len(columns) != len(headers):
        raise InvalidInput("The mapping does not match the file's columns.", field="columns")
    definitions = tagtypes.definitions(project)
    seen: dict[str, str] = {}
    tag_names: dict[str, str] = {}
    cleaned = []
    for i, (header, col) in enumerate(zip(headers, columns, strict=True)):
        target = col.get("target", "")
        new_tag = (col.get("new_tag") or "").strip()
        field_name = f"col_{i}"
        if target in SINGLE_TARGETS:
            if target in seen:
                raise InvalidInput(
                    f"“{header}” and “{seen[target]}” are both mapped to {TARGET_LABELS[target]}; "
                    "choose one.",
                    field=field_name,
                )
            seen[target] = header
        elif target == "new":
            new_tag = tagtypes.validate_tag_name(new_tag or header)
            if tagtypes.builtin(new_tag) is not None:
                raise InvalidInput(
                    f"“{new_tag}” is a built-in field: map “{header}” to it directly.", field=field_name
                )
            existing = definitions.get(new_tag.lower())
            if existing is not None:
                target, new_tag = f"tag:{existing.name}", ""
        elif target.startswith("tag:"):
            if target[4:].lower() not in definitions:
                raise InvalidInput(f"The tag {target[4:]!r} no longer exists.", field=field_name)
            target = f"tag:{definitions[target[4:].lower()].name}"
            new_tag = ""
        elif target != "":
            raise InvalidInput(f"Unknown target for “{header}”.", field=field_name)
        tag_name = target[4:] if target.startswith("tag:") else new_tag if target == "new" else None
        if tag_name is not None:
            if tag_name.lower() in tag_names:
                raise InvalidInput(
                    f"“{header}” and “{tag_names[tag_name.lower()]}” both write the tag {tag_name!r}.",
                    field=field_name,
                )
            tag_names[tag_name.lower()] = header
        cleaned.append({"target": target, "new_tag": new_tag if target == "new" else ""})
    if key not in ("phone", "external_id"):
        raise InvalidInput("Choose whether rows are matched by phone or by external id.", field="key")
    if key not in seen:
        raise InvalidInput(
            f"Rows are matched by {TARGET_LABELS[key].lower()}, so map a column to {TARGET_LABELS[key]}.",
            field="key",
        )
    default_evidence = (default_evidence or "").strip()
    consent_column = next((i for i, c in enumerate(cleaned) if c["target"] == "consent"), None)
    if (
        consent_column is not None
        and "consent_evidence" not in seen
        and not default_evidence
        and (opt_ins is None or opt_ins(consent_column))
    ):
        raise InvalidInput(
            "Opt-ins need evidence: map a consent evidence column or describe how these people "
            "agreed (e.g. “Signed up in store, paper form 2025”).",
            field="default_evidence",
        )
    if "consent_evidence" in seen and "consent" not in seen:
        raise InvalidInput("A consent evidence column needs a consent column too.", field="key")
    return {"columns": cleaned, "key": key, "default_evidence": default_evidence}


def _has_opt_ins(job: ImportJob, column: int) -> bool:
    with open_text(job) as text:
        for _line, cells in read_records(text, job.mapping["file"]["delimiter"]):
            if (
                column < len(cells)
                and CONSENT_VALUES.get(cells[column].strip().lower()) == ConsentState.OPTED_IN
            ):
                return True
    return False


def start_import(
    *,
    job: ImportJob,
    columns: list[dict[str, str]],
    key: str,
    default_evidence: str,
    actor: Actor,
) -> ImportJob:
    """Save the mapping of an uploaded job and queue it (the actor is sent after commit).

    Raises InvalidInput for a bad mapping. A job that is already queued or further along is
    returned unchanged, so a double-submitted form starts one import.
    """
    cleaned = clean_mapping(
        project=job.project,
        headers=job.mapping["headers"],
        columns=columns,
        key=key,
        default_evidence=default_evidence,
        opt_ins=lambda column: _has_opt_ins(job, column),
    )
    with transaction.atomic():
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        if locked.status != ImportStatus.UPLOADED:
            return locked
        locked.mapping = {**locked.mapping, **cleaned}
        locked.status = ImportStatus.QUEUED
        locked.save(update_fields=["mapping", "status"])
        record_audit(
            project=locked.project,
            actor=actor,
            action="import.started",
            obj=locked,
            changes={"key": key, "rows": locked.total_rows},
        )
        from .actors import run_import_job

        transaction.on_commit(lambda: run_import_job.send(locked.pk))
    return locked


def discard_import(*, job: ImportJob, actor: Actor) -> None:
    """Delete a job that is not running, with its uploaded file and report."""
    if job.status in (ImportStatus.QUEUED, ImportStatus.RUNNING):
        raise InvalidInput("This import is still running; wait until it has finished.", code="conflict")
    with transaction.atomic():
        record_audit(
            project=job.project,
            actor=actor,
            action="import.deleted",
            changes={"import": str(job.public_id), "file": job.original_name},
        )
        job.delete()
    _delete_file(job.file)
    _delete_file(job.report)
    _work_path(job).unlink(missing_ok=True)


def _delete_file(f) -> None:
    if f and f.name:
        f.storage.delete(f.name)


# --- Step 3: the pipeline --------------------------------------------------------------


@dataclass
class Row:
    """A validated row, ready to apply."""

    index: int  # 0-based position among the file's records
    line: int
    cells: list[str]
    phone: str | None
    external_id: str | None
    profile: dict[str, str]
    tags: dict[int, tuple[tuple, ...]]  # tag id -> value tuples (see _value_tuples)
    consent: str | None
    evidence: str


@dataclass
class Rejection:
    index: int
    line: int
    reason: str
    cells: list[str]


@dataclass
class Chunk:
    first_index: int  # rows before this are committed (resume) or earlier chunks
    end_index: int
    rows: list[Row] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


_E164_DIGITS = re.compile(r"\+([1-9]\d{6,16})")
# Every number type; a number is valid when the general pattern and any type pattern match.
_NUMBER_TYPES = (
    "mobile",
    "fixed_line",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)
_MAX_NSN = 17


def _length_checks(metadata) -> dict[int, tuple[re.Pattern, re.Pattern]]:
    """For each national number length: (general pattern, any type's pattern as one regex).

    Restates the library's ``_number_type_helper(...) != UNKNOWN``: the general description
    matches, and so does at least one type's; a description with possible lengths applies only
    to those lengths. One alternation instead of up to ten calls is what makes it fast.
    """
    general = metadata.general_desc
    if general is None or not general.national_number_pattern:
        return {}
    out = {}
    for length in range(1, _MAX_NSN + 1):
        if general.possible_length and length not in general.possible_length:
            continue
        patterns = []
        for name in _NUMBER_TYPES:
            desc = getattr(metadata, name)
            if desc is None or not desc.national_number_pattern:
                continue
            if desc.possible_length and length not in desc.possible_length:
                continue
            patterns.append(f"(?:{desc.national_number_pattern})")
        if patterns:
            out[length] = (re.compile(general.national_number_pattern), re.compile("|".join(patterns)))
    return out


@cache
def _phone_rules(cc: int) -> tuple[re.Pattern | None, Callable[[str], bool]] | None:
    """(national prefix pattern, validity check) for a calling code; None: use the full path.

    The validity check is ``phonenumbers.is_valid_number`` restated over the library's own
    metadata: pick the region as ``region_code_for_number`` does, then check the number against
    that region's patterns (see _length_checks).
    """
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc)
    if not regions or phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY in regions:
        return None
    main = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
        cc, phonenumbers.region_code_for_country_code(cc)
    )
    if main is None:
        return None
    rules = []
    for region in regions:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is None:
            continue
        leading = re.compile(metadata.leading_digits) if metadata.leading_digits is not None else None
        rules.append((leading, _length_checks(metadata)))
    single = len(regions) == 1

    def valid(nsn: str) -> bool:
        for leading, checks in rules:
            check = checks.get(len(nsn))
            fits = (
                check is not None
                and check[0].fullmatch(nsn) is not None
                and check[1].fullmatch(nsn) is not None
            )
            if single:
                return fits
            if leading is not None:
                if leading.match(nsn):
                    return fits
            elif fits:
                return True
        return False

    prefix = main.national_prefix_for_parsing
    return (re.compile(prefix) if prefix else None), valid


def fast_phone(text: str, default_country: str) -> str:
    """``normalize_phone``, with a shortcut for numbers already written as +<digits>.

    ``phonenumbers`` spends ~25 µs per number, most of the import's Python time. For "+" and
    digits only, parsing is splitting off the calling code, unless the national part starts
    with 0 or matches the country's national prefix (then parse may strip digits): those, and
    every number the shortcut does not find valid, take the full path, which words the error.
    tests/subscribers/test_import_phones.py checks that both paths agree.
    """
    match = _E164_DIGITS.fullmatch(text)
    if match is not None:
        digits = match.group(1)
        for size in (1, 2, 3):
            cc = int(digits[:size])
            if cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                national = digits[size:]
                rules = _phone_rules(cc)
                if (
                    rules is not None
                    and national[0] != "0"
                    and (rules[0] is None or rules[0].match(national) is None)
                    and rules[1](national)
                ):
                    return text
                break
    return normalize_phone(text, default_country)


class Validator:
    """Checks rows in file order; remembers the keys of accepted rows to find duplicates."""

    def __init__(self, job: ImportJob):
        self.job = job
        self.project = job.project
        self.country = job.project.default_country
        # Cells with a time but no offset are the project's local time, as the panel shows them.
        self.tz = zoneinfo.ZoneInfo(job.project.time_zone)
        mapping = job.mapping
        self.key = mapping["key"]
        self.default_evidence = mapping.get("default_evidence", "")
        self.width = len(mapping["headers"])
        self.headers = mapping["headers"]
        definitions = tagtypes.definitions(self.project)
        # (cell index, target, tag definition or None, new tag name)
        self.columns: list[list[Any]] = []
        for i, col in enumerate(mapping["columns"]):
            target = col["target"]
            if not target:
                continue
            if target.startswith("tag:"):
                definition = definitions.get(target[4:].lower())
                if definition is None:
                    raise ImportFileError(f"The tag {target[4:]!r} was deleted after the import was set up.")
                self.columns.append([i, "tag", definition, None])
            elif target == "new":
                existing = definitions.get(col["new_tag"].lower())
                self.columns.append([i, "tag", existing, col["new_tag"]])
            else:
                self.columns.append([i, target, None, None])
        self.seen_phone: dict[str, int] = {}
        self.seen_external: dict[str, int] = {}

    def tags(self) -> dict[int, str]:
        """The import's tag definitions so far (new ones appear with their first value): id -> name."""
        return {c[2].pk: c[2].name for c in self.columns if c[1] == "tag" and c[2] is not None}

    def check(self, index: int, line: int, cells: list[str]) -> Row | Rejection:
        errors: list[str] = []
        width = self.width
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            return Rejection(
                index, line, f"The row has {len(cells)} cells but the header has {width} columns.", cells
            )
        phone = external_id = consent = None
        evidence = ""
        profile: dict[str, str] = {}
        tags: dict[int, tuple[tuple, ...]] = {}
        for col in self.columns:
            i, target = col[0], col[1]
            text = cells[i].strip() if i < len(cells) else ""
            if not text:
                continue
            if text[0] == "'" and text[1:2] in _FORMULA_START:
                text = text[1:]  # our export's guard against spreadsheet formulas
            try:
                if target == "phone":
                    phone = fast_phone(text, self.country)
                elif target == "tag":
                    definition = col[2]
                    if definition is None:
                        definition = col[2] = tagtypes.get_or_create_definition(
                            self.project, col[3], text, from_text=True
                        )
                    value = tagtypes.parse_text(definition.name, definition.type, text, tz=self.tz)
                    tags[definition.id] = _value_tuples(definition.type, value)
                elif target == "external_id":
                    if len(text) > 200:
                        raise InvalidInput("The external id is longer than 200 characters.")
                    external_id = text
                elif target == "consent":
                    lowered = text.lower()
                    if lowered not in CONSENT_NO_CHANGE:
                        consent = CONSENT_VALUES.get(lowered)
                        if consent is None:
                            raise InvalidInput(
                                f"Consent {text!r} is not one of yes, no, true, false, 1, 0, "
                                "opted_in, opted_out."
                            )
                elif target == "consent_evidence":
                    evidence = text
                else:
                    profile[target] = _clean_profile_value(target, text)
            except InvalidInput as exc:
                errors.append(exc.message)
        if consent == ConsentState.OPTED_IN and not (evidence or self.default_evidence):
            errors.append("Opting in needs evidence: this row's evidence cell is empty.")
        key_value = phone if self.key == "phone" else external_id
        if key_value is None and not errors:
            errors.append(
                "The phone number is missing." if self.key == "phone" else "The external id is missing."
            )
        if errors:
            return Rejection(index, line, " ".join(errors), cells)
        if phone is not None and phone in self.seen_phone:
            return Rejection(
                index,
                line,
                f"Duplicate: the phone {phone} is already on line {self.seen_phone[phone]}.",
                cells,
            )
        if external_id is not None and external_id in self.seen_external:
            return Rejection(
                index,
                line,
                f"Duplicate: the external id {external_id!r} is already on line "
                f"{self.seen_external[external_id]}.",
                cells,
            )
        self.remember(line, phone, external_id)
        return Row(
            index=index,
            line=line,
            cells=cells,
            phone=phone,
            external_id=external_id,
            profile=profile,
            tags=tags,
            consent=consent,
            # The default evidence describes how people opted in; an opt-out keeps only its cell.
            evidence=(evidence or (self.default_evidence if consent == ConsentState.OPTED_IN else ""))[:5000],
        )

    def remember(self, line: int, phone: str | None, external_id: str | None) -> None:
        if phone is not None:
            self.seen_phone[phone] = line
        if external_id is not None:
            self.seen_external[external_id] = line

    def replay(self, line: int, cells: list[str]) -> None:
        """Remember the keys of a row that an earlier run of this job accepted."""
        phone = external_id = None
        for i, target, _definition, _new in self.columns:
            text = cells[i].strip() if i < len(cells) else ""
            if not text:
                continue
            if target == "phone":
                phone = fast_phone(text, self.country)
            elif target == "external_id":
                external_id = text
        self.remember(line, phone, external_id)


def _clean_profile_value(target: str, text: str) -> str:
    if target == "email":
        try:
            validate_email(text)
        except ValidationError:
            raise InvalidInput(f"{text!r} is not an email address.") from None
        return text.lower()
    if target == "country":
        if len(text) != 2 or not text.isalpha() or not text.isascii():
            raise InvalidInput(f"Country {text!r} must be a two-letter code like DE.")
        return text.upper()
    if target == "time_zone":
        if text not in _time_zones():
            raise InvalidInput(f"Unknown time zone {text!r}; use a name like Europe/Berlin.")
        return text
    if target == "language":
        if len(text) > 16:
            raise InvalidInput(f"Language {text!r} is too long; use a code like de or pt_BR.")
        return text
    if len(text) > 200:
        raise InvalidInput("The name is longer than 200 characters.")
    return text


def _value_tuples(type_: str, value: Any) -> tuple[tuple, ...]:
    """A tag value as TagValue column tuples (VALUE_COLUMNS order), in a canonical order."""
    match type_:
        case TagType.STRING:
            return ((value, None, None, None, None),)
        case TagType.INTEGER | TagType.DECIMAL:
            # Rounded as PostgreSQL rounds numeric(24, 8): half away from zero.
            return (
                (None, Decimal(value).quantize(_NUMBER_QUANTUM, rounding=ROUND_HALF_UP), None, None, None),
            )
        case TagType.BOOLEAN:
            return ((None, None, value, None, None),)
        case TagType.DATE:
            return ((None, None, None, value, None),)
        case TagType.DATETIME:
            return ((None, None, None, None, value),)
        case TagType.LIST:
            return tuple((item, None, None, None, None) for item in sorted(value))
    raise ValueError(type_)


def _stored_tuples(rows: list[tuple]) -> tuple[tuple, ...]:
    if len(rows) < 2:
        return tuple(rows)
    return tuple(sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r)))


# --- Applying a chunk --------------------------------------------------------------------


# Columns read of matched subscribers: what rows are compared with (plus the mapped profile fields).
KEY_FIELDS = ("id", "phone", "external_id", "whatsapp_consent")
Existing = dict[str, Any]


@dataclass
class Applied:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def merge(self, other: Applied) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejections += other.rejections


class _Aborted(Exception):
    """Another writer of the same run failed; this one gives up its chunk."""


class _Turns:
    """Chunks commit in file order: the checkpoint means "every row before it is applied".

    With several writers, a chunk does its independent work (new subscribers) in parallel, then
    waits here until the chunk before it has committed.
    """

    def __init__(self, done: int):
        self.done = done
        self.failed = False
        # Set (for good) once a chunk changes a subscriber's phone or external id.
        self.moved = False
        self.cond = threading.Condition()

    def is_turn(self, first_index: int) -> bool:
        with self.cond:
            return self.done == first_index

    def wait(self, first_index: int) -> None:
        with self.cond:
            while self.done != first_index:
                if self.failed:
                    raise _Aborted
                self.cond.wait(timeout=1.0)

    def advance(self, end_index: int) -> None:
        with self.cond:
            self.done = end_index
            self.cond.notify_all()

    def fail(self) -> None:
        with self.cond:
            self.failed = True
            self.cond.notify_all()


class Store:
    """Set-based reads and writes of one chunk through the ORM (SQLite, and any database)."""

    def __init__(self, project: Project):
        self.project = project

    def fetch_subscribers(
        self, phones: list[str], external_ids: list[str], fields: tuple[str, ...]
    ) -> list[Existing]:
        q = Q(phone__in=phones) if phones else Q(pk__in=[])
        if external_ids:
            q |= Q(external_id__in=external_ids)
        return list(Subscriber.objects.for_project(self.project).filter(q).values(*fields))

    def fetch_tag_values(self, subscriber_ids: list[int], tag_ids: list[int]) -> list[tuple]:
        """(id, subscriber id, tag id, *VALUE_COLUMNS) of these subscribers and tags."""
        if not subscriber_ids or not tag_ids:
            return []
        return list(
            TagValue.objects.filter(subscriber_id__in=subscriber_ids, tag_id__in=tag_ids).values_list(
                "id", "subscriber_id", "tag_id", *VALUE_COLUMNS
            )
        )

    def insert_subscribers(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Insert new subscribers; return their ids by phone (new ones always have a phone)."""
        objs = [Subscriber(project=self.project, **r) for r in rows]
        Subscriber.objects.bulk_create(objs, batch_size=1000)
        if all(o.pk for o in objs):
            return {o.phone: o.pk for o in objs}
        return dict(
            Subscriber.objects.for_project(self.project)
            .filter(phone__in=[o.phone for o in objs])
            .values_list("phone", "id")
        )

    def update_subscribers(self, rows: list[dict[str, Any]], fields: list[str]) -> None:
        """Set ``fields`` (all given in every row, with "id") on these subscribers."""
        objs = [Subscriber(**r) for r in rows]
        Subscriber.objects.bulk_update(objs, fields, batch_size=500)

    def delete_tag_values(self, ids: list[int]) -> None:
        for start in range(0, len(ids), 5000):
            TagValue.objects.filter(pk__in=ids[start : start + 5000])._raw_delete(TagValue.objects.db)

    def insert_tag_values(self, rows: list[tuple]) -> None:
        """rows: (subscriber id, tag id, *VALUE_COLUMNS)."""
        pid = self.project.pk
        TagValue.objects.bulk_create(
            [
                TagValue(
                    project_id=pid, subscriber_id=s, tag_id=t, **dict(zip(VALUE_COLUMNS, v, strict=True))
                )
                for s, t, *v in rows
            ],
            batch_size=2000,
        )

    def insert_consent(self, rows: list[dict[str, Any]]) -> None:
        ConsentChange.objects.bulk_create(
            [ConsentChange(project_id=self.project.pk, **r) for r in rows], batch_size=2000
        )


class PostgresStore(Store):
    """The same operations with arrays and COPY: 3-5x faster than the ORM at this volume."""

    # Keyed lookups must probe a btree once per key. Two things keep the planner there while
    # this very import fills the tables: sequential and bitmap scans are off in the chunk's
    # transaction (see lookup_sql for the bitmap trap), and the statistics are refreshed as the
    # project grows (see _Statistics). The tag condition is
    # written "tag_id + 0" so that only the (subscriber, tag) index can serve the lookup.
    def fetch_subscribers(
        self, phones: list[str], external_ids: list[str], fields: tuple[str, ...]
    ) -> list[Existing]:
        found: dict[int, tuple] = {}
        with _binding_cursor() as cur:
            for column, keys in (("phone", phones), ("external_id", external_ids)):
                if keys:
                    cur.execute(self.lookup_sql(column, fields), [keys, self.project.pk], binary=True)
                    found.update((r[0], r) for r in cur.fetchall())
        return [dict(zip(fields, r, strict=True)) for r in found.values()]

    @staticmethod
    def lookup_sql(column: str, fields: tuple[str, ...]) -> str:
        """The subscribers whose ``column`` is one of the keys (parameters: keys, project id).

        It probes the unique (project, key) index once per key, whatever the statistics say,
        because every other plan read the whole project once per chunk (quadratic over an
        import, while the statistics lag behind the growing table):
        - "key = ANY(10,000 keys)" scanned the project's index and tested every row against the
          array; so did a join with the keys, flattened into a hash join over the project.
          OFFSET 0 keeps the subquery from being flattened: it runs once per key.
        - The phone trigram index also answers "=", its cost estimate for one key is below the
          btree's, and each probe reads the posting lists of the trigrams that every German
          number shares ("+49", "491"): 6 ms per key instead of 5 µs. Bitmap scans (the only
          way to read a GIN index) are off in a chunk's transaction (chunk_settings).
        """
        cols = ", ".join(f"s.{f}" for f in fields)
        return (
            f"SELECT {cols} FROM unnest(%b::text[]) AS k(key) "  # noqa: S608 - names from code
            "CROSS JOIN LATERAL (SELECT * FROM subscribers_subscriber "
            f"WHERE project_id = %b::bigint AND {column} = k.key OFFSET 0) AS s"
        )

    def fetch_tag_values(self, subscriber_ids: list[int], tag_ids: list[int]) -> list[tuple]:
        if not subscriber_ids or not tag_ids:
            return []
        with _binding_cursor() as cur:
            cur.execute(
                "SELECT id, subscriber_id, tag_id, value_text, value_number, value_bool, value_date, "
                "value_datetime FROM subscribers_tagvalue "
                "WHERE subscriber_id = ANY(%b::bigint[]) AND tag_id + 0 = ANY(%b::bigint[])",
                [subscriber_ids, tag_ids],
                binary=True,
            )
            return cur.fetchall()

    def insert_subscribers(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        pid = self.project.pk
        with connection.cursor() as cur:
            # Ids drawn from the table's own sequence up front: COPY can then carry them, and no
            # query is needed afterwards to learn which id each new phone got.
            cur.execute(
                "SELECT nextval(pg_get_serial_sequence('subscribers_subscriber', 'id')) "
                "FROM generate_series(1, %s)",
                [len(rows)],
            )
            ids = [r[0] for r in cur.fetchall()]
            with _copy(cur, "subscribers_subscriber", _SUBSCRIBER_COPY) as copy:
                for n, (r, public_id) in enumerate(zip(rows, uuid7s(len(rows)), strict=True)):
                    copy.write_row(
                        (
                            ids[n],
                            pid,
                            public_id,
                            r["phone"],
                            "",
                            None,
                            r["external_id"],
                            r["name"],
                            r["email"],
                            r["language"],
                            r["country"],
                            r["time_zone"],
                            r["whatsapp_consent"],
                            r["whatsapp_consent_at"],
                            _NO_DEVICES,
                            r["created_at"],
                            r["updated_at"],
                        )
                    )
        return {r["phone"]: ids[n] for n, r in enumerate(rows)}

    def update_subscribers(self, rows: list[dict[str, Any]], fields: list[str]) -> None:
        casts = {"whatsapp_consent_at": "timestamptz[]", "updated_at": "timestamptz[]"}
        sets = ", ".join(f"{f} = u.{f}" for f in fields)
        arrays = ", ".join(f"%s::{casts.get(f, 'text[]')}" for f in fields)
        with connection.cursor() as cur:
            cur.execute(
                f"UPDATE subscribers_subscriber AS s SET {sets} "  # noqa: S608 - names from code
                f"FROM unnest(%s::bigint[], {arrays}) AS u(id, {', '.join(fields)}) WHERE s.id = u.id",
                [[r["id"] for r in rows], *[[r[f] for r in rows] for f in fields]],
            )

    def delete_tag_values(self, ids: list[int]) -> None:
        with connection.cursor() as cur:
            cur.execute("DELETE FROM subscribers_tagvalue WHERE id = ANY(%s::bigint[])", [ids])

    def insert_tag_values(self, rows: list[tuple]) -> None:
        pid = self.project.pk
        with connection.cursor() as cur, _copy(cur, "subscribers_tagvalue", _TAG_VALUE_COPY) as copy:
            for r in rows:
                copy.write_row((pid, *r))

    def insert_consent(self, rows: list[dict[str, Any]]) -> None:
        pid = self.project.pk
        with connection.cursor() as cur, _copy(cur, "subscribers_consentchange", _CONSENT_COPY) as copy:
            for r in rows:
                copy.write_row(
                    (
                        pid,
                        r["subscriber_id"],
                        r["channel"],
                        r["state"],
                        r["source"],
                        r["evidence"],
                        r["actor_user_id"],
                        r["actor_label"],
                        r["created_at"],
                    )
                )


# (column, PostgreSQL type) of each COPY. Binary COPY: the server does not parse text into
# timestamps, UUIDs and numerics (three timestamps and a UUID per subscriber).
_SUBSCRIBER_COPY = (
    ("id", "int8"),
    ("project_id", "int8"),
    ("public_id", "uuid"),
    ("phone", "text"),
    ("wa_id", "text"),
    ("bsuid", "text"),
    ("external_id", "text"),
    ("name", "text"),
    ("email", "text"),
    ("language", "text"),
    ("country", "text"),
    ("time_zone", "text"),
    ("whatsapp_consent", "text"),
    ("whatsapp_consent_at", "timestamptz"),
    ("push_devices", "jsonb"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)
_TAG_VALUE_COPY = (
    ("project_id", "int8"),
    ("subscriber_id", "int8"),
    ("tag_id", "int8"),
    ("value_text", "text"),
    ("value_number", "numeric"),
    ("value_bool", "bool"),
    ("value_date", "date"),
    ("value_datetime", "timestamptz"),
)
_CONSENT_COPY = (
    ("project_id", "int8"),
    ("subscriber_id", "int8"),
    ("channel", "text"),
    ("state", "text"),
    ("source", "text"),
    ("evidence", "text"),
    ("actor_user_id", "int8"),
    ("actor_label", "text"),
    ("created_at", "timestamptz"),
)
# The jsonb dumper serializes a Python value: "[]" as a str would be stored as a JSON string.
_NO_DEVICES: list[str] = []


def _binding_cursor() -> psycopg.Cursor:
    """A cursor on Django's connection (same transaction) that sends parameters separately.

    Django's cursors inline parameters into the SQL text, quoting a 10,000-key array element by
    element in Python; bound in binary, the array costs next to nothing, and so do the results.
    """
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


@contextmanager
def _copy(cur: CursorWrapper, table: str, columns: tuple[tuple[str, str], ...]) -> Iterator[psycopg.Copy]:
    names = ", ".join(c for c, _ in columns)
    with cur.cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([t for _, t in columns])
        yield copy


def chunk_settings() -> None:
    """Settings of a chunk's transaction on PostgreSQL (SET LOCAL: they end with it)."""
    with connection.cursor() as cur:
        # A crash loses at most the last moments of commits, never consistency: the checkpoint
        # commits with its chunk, and a re-run redoes what is lost.
        cur.execute("SET LOCAL synchronous_commit = off")
        # Foreign keys checked statement by statement, not at COMMIT: the commit is on the path
        # that chunks take one at a time (see _Turns).
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # Keyed lookups probe btrees (see PostgresStore).
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_bitmapscan = off")


def _store(project: Project) -> Store:
    return PostgresStore(project) if connection.vendor == "postgresql" else Store(project)


class Applier:
    """Applies validated chunks, each in one transaction together with the job's checkpoint."""

    def __init__(
        self,
        job: ImportJob,
        token: datetime,
        tags: Callable[[], dict[int, str]],
        turns: _Turns | None = None,
    ):
        self.turns = turns or _Turns(job.processed_rows)
        mapped = {c["target"] for c in job.mapping["columns"]}
        self.fields = (*KEY_FIELDS, *(f for f in PROFILE_TARGETS if f in mapped))
        self.job = job
        self.project = job.project
        self.token = token
        self.tags = tags
        self.actor_user_id = job.created_by_id
        self.actor_label = (job.created_by.email if job.created_by else "CSV import")[:200]
        self.counts = {
            "created": job.created_count,
            "updated": job.updated_count,
            "unchanged": job.unchanged_count,
            "rejected": job.rejected_count,
        }

    def apply(self, chunk: Chunk, report: ReportWriter) -> None:
        for attempt in (1, 2):
            try:
                with transaction.atomic():
                    if connection.vendor == "postgresql":
                        chunk_settings()
                    self._hold_tags()
                    rows, applied = chunk.rows, Applied()
                    early: list[Existing] | None = None
                    if rows and not self.turns.is_turn(chunk.first_index):
                        # While the chunk before is still being written: insert the rows that
                        # match no stored subscriber. No other chunk can touch those (keys are
                        # unique within the file); everything else waits for its turn.
                        applied, rows, early = self._apply_rows(rows, new_only=True)
                    self.turns.wait(chunk.first_index)
                    self._claim_checkpoint()
                    if rows:
                        # What the early pass read is still what earlier chunks left, unless one
                        # of them moved a phone or external id (the only way a row of theirs
                        # reaches a subscriber that a key of this chunk matches).
                        known = None if self.turns.moved else early
                        rest, _, _ = self._apply_rows(rows, existing=known)
                        applied.merge(rest)
                    rejections = sorted(chunk.rejections + applied.rejections, key=lambda r: r.index)
                    report.append(rejections)
                    self.counts["created"] += applied.created
                    self.counts["updated"] += applied.updated
                    self.counts["unchanged"] += applied.unchanged
                    self.counts["rejected"] += len(rejections)
                    self._checkpoint(chunk.end_index)
                self.turns.advance(chunk.end_index)
                return
            except IntegrityError:
                # Someone else (the API, a panel user) wrote one of these subscribers meanwhile:
                # the plan is stale. Plan the chunk again against the committed state, once.
                report.truncate_to(chunk.first_index)
                self._reload_counts()
                if attempt == 2:
                    raise

    def _hold_tags(self) -> None:
        # Until this chunk commits, its tags cannot be deleted (tags.hold_definitions).
        tags = self.tags()
        held = tagtypes.hold_definitions(tags)
        gone = sorted(name for pk, name in tags.items() if pk not in held)
        if gone:
            names = ", ".join(map(repr, gone))
            raise ImportFileError(
                f"The tag{'s' if len(gone) > 1 else ''} {names} {'were' if len(gone) > 1 else 'was'} "
                "deleted while the import ran. The rows before this point are imported; import "
                "the file again to continue."
            )

    def _claim_checkpoint(self) -> None:
        # Locks the job row until the chunk commits, so a run that claims the job meanwhile
        # waits for this chunk and then resumes after it.
        owned = ImportJob.objects.filter(
            pk=self.job.pk, started_at=self.token, status=ImportStatus.RUNNING
        ).update(status=ImportStatus.RUNNING)
        if owned != 1:
            raise _Superseded

    def _checkpoint(self, processed: int) -> None:
        ImportJob.objects.filter(pk=self.job.pk, started_at=self.token).update(
            processed_rows=processed,
            created_count=self.counts["created"],
            updated_count=self.counts["updated"],
            unchanged_count=self.counts["unchanged"],
            rejected_count=self.counts["rejected"],
        )

    def _reload_counts(self) -> None:
        job = ImportJob.objects.get(pk=self.job.pk)
        self.counts = {
            "created": job.created_count,
            "updated": job.updated_count,
            "unchanged": job.unchanged_count,
            "rejected": job.rejected_count,
        }

    def _apply_rows(
        self, rows: list[Row], *, new_only: bool = False, existing: list[Existing] | None = None
    ) -> tuple[Applied, list[Row], list[Existing]]:
        """Write ``rows``; with ``new_only`` only those matching no subscriber, returning the rest.

        ``existing``: the stored subscribers that the rows' keys match, if already read in this
        transaction. Returns them too, for the second pass over the rest.
        """
        store = _store(self.project)
        now = timezone.now()
        out = Applied()
        rest: list[Row] = []
        if existing is None:
            phones = [r.phone for r in rows if r.phone]
            externals = [r.external_id for r in rows if r.external_id]
            existing = store.fetch_subscribers(phones, externals, self.fields)
        by_phone = {e["phone"]: e for e in existing if e["phone"]}
        by_external = {e["external_id"]: e for e in existing if e["external_id"]}

        inserts: list[dict[str, Any]] = []
        inserted_rows: list[Row] = []
        updates: dict[int, dict[str, Any]] = {}
        matched: list[tuple[Row, Existing]] = []
        for row in rows:
            p = by_phone.get(row.phone) if row.phone else None
            x = by_external.get(row.external_id) if row.external_id else None
            if new_only and (p is not None or x is not None or row.phone is None):
                rest.append(row)
                continue
            if p is not None and x is not None and p["id"] != x["id"]:
                out.rejections.append(
                    Rejection(
                        row.index,
                        row.line,
                        f"The phone {row.phone} and the external id {row.external_id!r} belong to two "
                        "different subscribers.",
                        row.cells,
                    )
                )
                continue
            target = p or x
            if target is None:
                if row.phone is None:
                    out.rejections.append(
                        Rejection(
                            row.index,
                            row.line,
                            f"No subscriber has the external id {row.external_id!r}, and without a "
                            "phone number no new one can be created.",
                            row.cells,
                        )
                    )
                    continue
                consent = row.consent or ConsentState.UNKNOWN
                inserts.append(
                    {
                        "phone": row.phone,
                        "external_id": row.external_id,
                        "name": row.profile.get("name", ""),
                        "email": row.profile.get("email", ""),
                        "language": row.profile.get("language", ""),
                        "country": row.profile.get("country", ""),
                        "time_zone": row.profile.get("time_zone", ""),
                        "whatsapp_consent": consent,
                        "whatsapp_consent_at": now if row.consent else None,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                inserted_rows.append(row)
                continue
            # Matched by external id with another phone: the row moves the subscriber to it
            # (the phone is free: had another subscriber it, that would be a conflict above).
            changes: dict[str, Any] = {}
            if row.phone and target["phone"] != row.phone:
                changes["phone"] = row.phone
                self.turns.moved = True
            if row.external_id and target["external_id"] != row.external_id:
                changes["external_id"] = row.external_id
                self.turns.moved = True
            for key, value in row.profile.items():
                if target[key] != value:
                    changes[key] = value
            if row.consent and target["whatsapp_consent"] != row.consent:
                changes["whatsapp_consent"] = row.consent
                changes["whatsapp_consent_at"] = now
            if changes:
                updates[target["id"]] = changes
            matched.append((row, target))

        ids_by_phone = store.insert_subscribers(inserts) if inserts else {}
        out.created = len(inserts)

        # Tag values: new subscribers get theirs inserted; existing ones are diffed.
        tag_inserts: list[tuple] = []
        for row in inserted_rows:
            sid = ids_by_phone[row.phone]
            for tag_id, values in row.tags.items():
                tag_inserts.extend((sid, tag_id, *value) for value in values)
        tag_deletes: list[int] = []
        tag_changed: set[int] = set()
        matched_with_tags = [(row, target) for row, target in matched if row.tags]
        if matched_with_tags:
            # (subscriber, tag) -> [(row id, value tuple)]. Stored numbers carry the column's 8
            # decimal places; Decimals compare by value, so 5 == 5.00000000.
            stored: dict[tuple[int, int], list[tuple[int, tuple]]] = {}
            for r in store.fetch_tag_values([t["id"] for _, t in matched_with_tags], list(self.tags())):
                key = (r[1], r[2])
                entry = (r[0], r[3:])
                if key in stored:
                    stored[key].append(entry)
                else:
                    stored[key] = [entry]
            no_values: list[tuple[int, tuple]] = []
            for row, target in matched_with_tags:
                sid = target["id"]
                for tag_id, wanted in row.tags.items():
                    have = stored.get((sid, tag_id), no_values)
                    if len(have) == len(wanted) and (
                        (len(have) == 1 and have[0][1] == wanted[0])
                        or _stored_tuples([v for _, v in have]) == wanted
                    ):
                        continue
                    tag_deletes.extend(rid for rid, _ in have)
                    tag_inserts.extend((sid, tag_id, *value) for value in wanted)
                    tag_changed.add(sid)

        # Subscriber updates: one statement per set of changed columns (usually one or two).
        for sid in tag_changed:
            updates.setdefault(sid, {})
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for sid, changes in updates.items():
            groups.setdefault(tuple(sorted(changes)), []).append({**changes, "id": sid, "updated_at": now})
        for fields, group in groups.items():
            store.update_subscribers(group, [*fields, "updated_at"])
        if tag_deletes:
            store.delete_tag_values(tag_deletes)
        if tag_inserts:
            store.insert_tag_values(tag_inserts)

        ledger = []
        for row in inserted_rows:
            if row.consent:
                ledger.append(self._ledger(ids_by_phone[row.phone], row, now))
        for row, target in matched:
            if "whatsapp_consent" in updates.get(target["id"], {}):
                ledger.append(self._ledger(target["id"], row, now))
        if ledger:
            store.insert_consent(ledger)

        out.updated = len(updates)
        out.unchanged = len(matched) - len(updates)
        return out, rest, existing

    def _ledger(self, subscriber_id: int, row: Row, now: datetime) -> dict[str, Any]:
        return {
            "subscriber_id": subscriber_id,
            "channel": ConsentChannel.WHATSAPP,
            "state": row.consent,
            "source": ConsentSource.IMPORT,
            "evidence": row.evidence,
            "actor_user_id": self.actor_user_id,
            "actor_label": self.actor_label,
            "created_at": now,
        }


# --- The rejected-rows report ---------------------------------------------------------------


def _work_path(job: ImportJob) -> Path:
    return Path(settings.MEDIA_ROOT) / "imports" / "work" / f"{job.public_id}-rejected.csv"


class ReportWriter:
    """The work file of rejected rows: [record index, line, reason, *cells] per row.

    Appended and synced before each chunk commits; trimmed to the checkpoint on resume.
    """

    def __init__(self, job: ImportJob, keep_below: int):
        self.path = _work_path(job)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[list[str]] = []
        if keep_below and self.path.exists():
            with self.path.open(newline="", encoding="utf-8") as f:
                kept = [r for r in csv.reader(f) if r and int(r[0]) < keep_below]
        self.indexes = {int(r[0]) for r in kept}
        self._rewrite(kept)

    def _rewrite(self, rows: list[list[str]]) -> None:
        with self.path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
            f.flush()
            os.fsync(f.fileno())

    def append(self, rejections: list[Rejection]) -> None:
        if not rejections:
            return
        with self.path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            for r in rejections:
                writer.writerow([r.index, r.line, r.reason, *r.cells])
            f.flush()
            os.fsync(f.fileno())

    def truncate_to(self, below: int) -> None:
        with self.path.open(newline="", encoding="utf-8") as f:
            kept = [r for r in csv.reader(f) if r and int(r[0]) < below]
        self._rewrite(kept)

    def finish(self, job: ImportJob) -> str:
        return finish_report(job)


def finish_report(job: ImportJob) -> str:
    """Turn the work file into the downloadable report in storage; return its name ("" if none)."""
    path = _work_path(job)
    if not path.exists():
        return ""
    if path.stat().st_size == 0:
        path.unlink()
        return ""
    out = path.with_suffix(".report.csv")
    with (
        path.open(newline="", encoding="utf-8") as src,
        out.open("w", newline="", encoding="utf-8-sig") as dst,
    ):
        writer = csv.writer(dst, delimiter=job.mapping["file"]["delimiter"])
        writer.writerow(["line", "reason", *job.mapping["headers"]])
        for r in csv.reader(src):
            writer.writerow(r[1:])
    with out.open("rb") as f:
        job.report.save(f"import-{job.public_id}-rejected.csv", File(f), save=False)
    out.unlink()
    path.unlink()
    return job.report.name


# --- Running a job ----------------------------------------------------------------------------


def run_import(*, job_id: int) -> None:
    """Run (or resume) an import job. Idempotent: a finished job is left as it is.

    Raises on unexpected errors so that the actor retries (resuming at the checkpoint); a file
    that turns out unreadable fails the job with a message instead.
    """
    token = timezone.now()
    claimed = ImportJob.objects.filter(
        pk=job_id, status__in=[ImportStatus.QUEUED, ImportStatus.RUNNING]
    ).update(status=ImportStatus.RUNNING, started_at=token)
    if not claimed:
        return
    job = ImportJob.objects.select_related("project", "created_by").get(pk=job_id)
    try:
        with _fewer_collections:
            _run(job, token)
    except _Superseded:
        return
    except ImportFileError as exc:
        fail_import(job_id=job.pk, error=str(exc))


class _FewerCollections:
    """Run the cyclic garbage collector far less often while imports run in this process.

    An import allocates a few container objects per cell, many of which live until their chunk
    commits; with the default thresholds (a collection every 700 allocations) the collector
    ran so often, rescanning so many live objects, that it took a third of the import's Python
    time (31 -> 23 CPU-seconds for a million rows; a re-import went from 37 to 23 s). Imports
    make no reference cycles of their own, and collections still happen, only less often.
    Thresholds are per process: other jobs in the same worker get them too meanwhile, which
    costs them nothing but later collections. With two imports in one worker, the defaults
    come back when the last one ends.
    """

    THRESHOLD = (50_000, 20, 100)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.previous: tuple[int, ...] = gc.get_threshold()

    def __enter__(self) -> None:
        with self.lock:
            if self.running == 0:
                self.previous = gc.get_threshold()
                gc.set_threshold(*self.THRESHOLD)
            self.running += 1

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.running -= 1
            if self.running == 0:
                gc.set_threshold(*self.previous)


_fewer_collections = _FewerCollections()


def _run(job: ImportJob, token: datetime) -> None:
    validator = Validator(job)
    resume_at = job.processed_rows
    report = ReportWriter(job, keep_below=resume_at)
    applier = Applier(job, token, validator.tags)
    statistics = None
    if connection.in_atomic_block:  # inside a caller's transaction (tests): no other connection
        sink: _InlineSink | _ThreadedSink = _InlineSink(applier, report)
    else:
        sink = _ThreadedSink(applier, report, writers=writer_count())
        statistics = _Statistics(resume_at)
    chunk_size = CHUNK_SIZE
    delimiter = job.mapping["file"]["delimiter"]
    try:
        with open_text(job) as text:
            chunk = Chunk(first_index=resume_at, end_index=resume_at)
            index = -1
            try:
                for index, (line, cells) in enumerate(read_records(text, delimiter)):
                    if index < resume_at:
                        if index not in report.indexes:
                            validator.replay(line, cells)
                        continue
                    checked = validator.check(index, line, cells)
                    if isinstance(checked, Row):
                        chunk.rows.append(checked)
                    else:
                        chunk.rejections.append(checked)
                    if index + 1 - chunk.first_index >= chunk_size:
                        chunk.end_index = index + 1
                        sink.put(chunk)
                        chunk = Chunk(first_index=index + 1, end_index=index + 1)
                        if statistics is not None:
                            statistics.maybe_refresh(applier.turns.done)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise ImportFileError(
                    f"The file could not be read after record {index + 1}: {exc}."
                ) from None
            chunk.end_index = index + 1
            if chunk.end_index > chunk.first_index or chunk.first_index == 0:
                sink.put(chunk)
        sink.close()
    finally:
        sink.abort()
    _finish(job, token, report)


class _Statistics:
    """Refreshes PostgreSQL's statistics of the tables an import grows, every 4x of growth.

    Planned with the statistics of an empty project, the keyed lookups of later chunks scan the
    whole project for every chunk (a million-row import went from minutes to quadratic). ANALYZE
    samples a fixed number of rows, so each refresh takes a fraction of a second.
    """

    TABLES = ("subscribers_subscriber", "subscribers_tagvalue")

    def __init__(self, start: int):
        self.next_at = max(start, 5_000) * 2

    def maybe_refresh(self, committed: int) -> None:
        if connection.vendor != "postgresql" or committed < self.next_at:
            return
        self.next_at = committed * 4
        with connection.cursor() as cur:
            for table in self.TABLES:
                # Not the owner of the table: PostgreSQL skips it with a warning, no error.
                cur.execute(f"ANALYZE {table}")


class _InlineSink:
    def __init__(self, applier: Applier, report: ReportWriter):
        self.applier, self.report = applier, report

    def put(self, chunk: Chunk) -> None:
        self.applier.apply(chunk, self.report)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class _ThreadedSink:
    """Applies chunks on writer threads (each with its own DB connection) while the reading
    thread validates the next ones.

    Validation is Python work and applying is mostly database work, so they overlap; with two
    writers PostgreSQL works on two chunks at once (foreign key checks make it the bottleneck).
    The queue holds a few chunks; an error on a writer stops the reader at its next put.
    """

    def __init__(self, applier: Applier, report: ReportWriter, writers: int):
        self.applier, self.report = applier, report
        self.queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=writers + 1)
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._work, name=f"import-writer-{n}", daemon=True)
            for n in range(writers)
        ]
        for thread in self.threads:
            thread.start()

    def _work(self) -> None:
        try:
            while (chunk := self.queue.get()) is not None:
                if self.error is None:
                    try:
                        self.applier.apply(chunk, self.report)
                    except BaseException as exc:  # handed to the reading thread
                        with self.lock:
                            if self.error is None or isinstance(self.error, _Aborted):
                                self.error = exc
                        self.applier.turns.fail()
        finally:
            connections.close_all()

    def put(self, chunk: Chunk) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(chunk)

    def close(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        self.threads = []
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        if not self.threads:
            return
        self.error = self.error or _Aborted()
        self.applier.turns.fail()
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        self.threads = []


def _finish(job: ImportJob, token: datetime, report: ReportWriter) -> None:
    report_name = report.finish(job)
    finished = timezone.now()
    with transaction.atomic():
        updated = ImportJob.objects.filter(pk=job.pk, started_at=token, status=ImportStatus.RUNNING).update(
            status=ImportStatus.DONE, finished_at=finished, report=report_name, file=""
        )
        if not updated:
            return
        source = job.file.name
        job.refresh_from_db()
        job.file.name = source
        record_audit(
            project=job.project,
            actor=SYSTEM,
            action="import.finished",
            obj=job,
            changes={
                "created": job.created_count,
                "updated": job.updated_count,
                "unchanged": job.unchanged_count,
                "rejected": job.rejected_count,
            },
        )
    _delete_source(job)


def _delete_source(job: ImportJob) -> None:
    # GDPR: the uploaded file holds personal data we no longer need once the job has ended.
    name = ImportJob.objects.filter(pk=job.pk).values_list("file", flat=True).first()
    for candidate in {job.file.name, name} - {None, ""}:
        job.file.storage.delete(candidate)
    ImportJob.objects.filter(pk=job.pk).update(file="")


def fail_import(*, job_id: int, error: str) -> None:
    """Mark a job failed with a message for the user; keep the report of what was done."""
    job = ImportJob.objects.select_related("project").filter(pk=job_id).first()
    if job is None or job.status in (ImportStatus.DONE, ImportStatus.FAILED):
        return
    report_name = finish_report(job)
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportStatus.FAILED, error=error[:2000], finished_at=timezone.now(), report=report_name
    )
    _delete_source(job)


# --- GDPR: erasure scrubs import files ----------------------------------------------------


@receiver(subscriber_erased, dispatch_uid="subscribers.imports.scrub_erased")
def scrub_erased_subscriber(sender, payload: SubscriberErased, **kwargs) -> None:
    # Reading every import file of the project is a worker's job, not the erasing request's.
    from .actors import scrub_import_files as scrub_actor

    scrub_actor.send(payload.project_id, list(payload.identifiers))


def scrub_import_files(*, project_id: int, identifiers: list[str] | tuple[str, ...]) -> None:
    """Remove every row that names the erased subscriber from the project's import files.

    Covers finished jobs' rejected-rows reports and the source files of jobs not started yet.
    Idempotent: a second run finds nothing left to remove.
    """
    identifiers = {i.strip().lower() for i in identifiers if i and i.strip()}
    if not identifiers:
        return
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return
    phones = {i for i in identifiers if i.startswith("+")}
    jobs = ImportJob.objects.for_project(project).exclude(
        status__in=[ImportStatus.QUEUED, ImportStatus.RUNNING]
    )
    for job in jobs:
        if job.report and job.report.name:
            _scrub(
                job.report,
                identifiers,
                phones,
                project.default_country,
                "utf-8-sig",
                job.mapping["file"]["delimiter"],
            )
        if job.status == ImportStatus.UPLOADED and job.file and job.file.name:
            fmt = job.mapping["file"]
            _scrub(job.file, identifiers, phones, project.default_country, fmt["encoding"], fmt["delimiter"])


def _mentions(cells: list[str], identifiers: set[str], phones: set[str], country: str) -> bool:
    for cell in cells:
        text = cell.strip().lower()
        if not text:
            continue
        if text in identifiers:
            return True
        if phones and sum(ch.isdigit() for ch in text) >= 6:
            try:
                if normalize_phone(text, country) in phones:
                    return True
            except InvalidInput:
                continue
    return False


def _scrub(f, identifiers: set[str], phones: set[str], country: str, encoding: str, delimiter: str) -> None:
    path = Path(f.path)
    if not path.exists():
        return
    tmp = path.with_suffix(".scrub")
    removed = 0
    with (
        path.open(newline="", encoding=encoding) as src,
        tmp.open("w", newline="", encoding=encoding) as dst,
    ):
        reader = csv.reader(src, delimiter=delimiter)
        writer = csv.writer(dst, delimiter=delimiter)
        for n, cells in enumerate(reader):
            if n > 0 and _mentions(cells, identifiers, phones, country):
                removed += 1
                continue
            writer.writerow(cells)
    if removed:
        os.replace(tmp, path)
    else:
        tmp.unlink()
