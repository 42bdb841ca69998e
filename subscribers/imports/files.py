"""Reading an uploaded CSV: encoding and delimiter, the header, records one by one.

Bytes that do not decode stay in the text, escaped, so that no valid row is ever read in
another encoding behind anyone's back; records that cannot be read are yielded with their
problem, so that one bad line never stops a file.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.conf import settings
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from ..models import ImportJob, UndecodableRows

DELIMITERS = (",", ";", "\t")


def max_rows() -> int:
    return getattr(settings, "IMPORT_MAX_ROWS", 1_000_000)


def max_bytes() -> int:
    return getattr(settings, "IMPORT_MAX_BYTES", 256 * 1024 * 1024)


class ImportFileError(Exception):
    """The file cannot be imported: the message says why, for the person who uploaded it."""


# A byte that does not decode is read as the character U+DC00 + byte (like "surrogateescape",
# but for every byte value: an odd trailing byte of UTF-16 may be below 0x80). Decoded text
# holds no lone surrogates otherwise, so each such character marks one undecodable byte, and
# encoding with the same handler gives the file's bytes back (the GDPR scrub rewrites a file
# without changing what it does not remove).
UNDECODABLE = "subscribers.imports.undecodable"
_ESCAPED = re.compile("[\udc00-\udcff]")

ENCODING_LABELS = {
    "utf-8-sig": "UTF-8",
    "utf-16": "UTF-16",
    "cp1252": "Windows-1252 (Western European)",
    "latin-1": "Latin-1 (ISO 8859-1)",
}

# Undecodable rows listed on the mapping page; the count covers all of them.
UNDECODABLE_SHOWN = 20

# Cells of a row that could not be split are cut to this length in the report.
_RAW_CELL = 1000


def _undecodable(exc: UnicodeError) -> tuple[str | bytes, int]:
    if isinstance(exc, UnicodeDecodeError):
        return "".join(chr(0xDC00 + b) for b in exc.object[exc.start : exc.end]), exc.end
    if isinstance(exc, UnicodeEncodeError):
        chars = exc.object[exc.start : exc.end]
        if len(_ESCAPED.findall(chars)) == len(chars):
            return bytes(ord(c) - 0xDC00 for c in chars), exc.end
    raise exc


codecs.register_error(UNDECODABLE, _undecodable)


def readable(text: str) -> str:
    """``text`` with each undecodable byte shown as the replacement character."""
    return _ESCAPED.sub("\ufffd", text)


def _bad_bytes(text: str) -> str:
    return " ".join(f"0x{ord(c) - 0xDC00:02X}" for c in _ESCAPED.findall(text))


@dataclass(frozen=True)
class FileFormat:
    encoding: str
    delimiter: str
    decodes: bool = True  # every byte is valid in ``encoding``


def _looks_binary(head: bytes) -> str | None:
    if head.startswith(b"PK\x03\x04"):
        return _("This is an Excel or other zipped file, not a CSV. Save it as “CSV UTF-8” and upload that.")
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return _("This is an old Excel (.xls) file, not a CSV. Save it as “CSV UTF-8” and upload that.")
    if head.startswith(b"%PDF"):
        return _("This is a PDF, not a CSV file.")
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _("This file contains binary data, not text: upload a CSV file.")
    return None


def _decodes(stream, encoding: str) -> bool:
    """Whether the whole binary ``stream`` decodes in ``encoding`` (at C speed, 1 MB at a time)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    stream.seek(0)
    try:
        while chunk := stream.read(1024 * 1024):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    finally:
        stream.seek(0)
    return True


def detect_format(stream) -> FileFormat:
    """Encoding (UTF-16 with a BOM, else UTF-8 with or without BOM) and delimiter.

    The encoding is never guessed from a file's bad bytes: a file that does not decode keeps
    its encoding (``decodes`` is False) and the person importing it decides, row by row
    evidence in hand, what happens to the rows that do not decode (see create_import). So a
    UTF-8 file with one stray byte keeps every valid row as it is. ``stream`` is binary.
    """
    stream.seek(0)
    head = stream.read(64 * 1024)
    problem = _looks_binary(head[:8192])
    if problem:
        raise ImportFileError(problem)
    encoding = "utf-16" if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    decodes = _decodes(stream, encoding)
    sample = head.decode(encoding, errors="replace")
    return FileFormat(encoding=encoding, delimiter=_detect_delimiter(sample), decodes=decodes)


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


def text_encoding(job: ImportJob) -> str:
    """The encoding the job's file is read in: its own, or the one chosen for the whole file."""
    fmt = job.mapping["file"]
    if job.undecodable_rows == UndecodableRows.REENCODE:
        return fmt["undecodable"]["alternative"]
    return fmt["encoding"]


def open_text(job: ImportJob) -> io.TextIOWrapper:
    binary = job.file.open("rb")
    return text_reader(binary, text_encoding(job))


def text_reader(binary, encoding: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(binary, encoding=encoding, errors=UNDECODABLE, newline="")


class Record(NamedTuple):
    line: int  # where the record starts
    cells: list[str]
    # Why the record cannot be imported ("" if it can be read); its cells are then readable.
    problem: str = ""


class _Lines:
    """The lines of a text for csv.reader, keeping those of the record being read, so that a
    broken record can be given back and read again from its second line."""

    __slots__ = ("ended", "iterator", "lines", "pending", "taken")

    def __init__(self, text: Iterable[str]):
        self.pending: list[str] = []  # given back, the next one last
        self.taken: list[str] = []
        self.ended = False
        self.lines = iter(text)
        # A generator, not a __next__ method: resuming it costs half as much per line.
        self.iterator = self._feed()

    def __iter__(self) -> Iterator[str]:
        return self.iterator

    def _feed(self) -> Iterator[str]:
        taken, pending = self.taken, self.pending
        for line in self.lines:
            while pending:  # lines given back come before the next one of the file
                taken.append(given := pending.pop())
                yield given
            taken.append(line)
            yield line
        while pending:
            taken.append(given := pending.pop())
            yield given
        self.ended = True

    def give_back(self, lines: list[str]) -> None:
        """Read ``lines`` again next; the caller makes a new csv.reader over this object."""
        self.pending.extend(reversed(lines))
        if self.ended:  # a finished generator yields nothing more: start another one
            self.ended = False
            self.iterator = self._feed()


def _fits_lines(cells: list[str], width: int, single_line: Container[int]) -> bool:
    """Whether a record that spans lines can be one: a cell may hold a line break (a note, an
    address), but a quote left open swallows the lines after it until the next quote; what it
    leaves has another number of cells, or a line break where one cannot be (a phone, a name)."""
    if len(cells) != width:
        return False
    return not any(("\n" in c or "\r" in c) and i in single_line for i, c in enumerate(cells))


def _raw_cells(line: str, delimiter: str) -> list[str]:
    return [readable(c[:_RAW_CELL]) for c in line.rstrip("\r\n").split(delimiter)]


def read_records(
    text: Iterable[str],
    delimiter: str,
    *,
    width: int,
    single_line: Container[int] = (),
    undecodable: str = "",
) -> Iterator[Record]:
    """Every non-blank record after the header, in file order.

    A record that cannot be read is yielded with its problem instead of stopping the file: a
    quote left open (the record ends on its own line, and reading goes on with the next line,
    so the rows it would have swallowed are kept), a cell over csv's size limit, and, when
    ``undecodable`` names the encoding, a record with bytes that do not decode in it.
    ``single_line``: the columns whose cells cannot hold a line break (the mapped ones).
    """
    source = _Lines(text)
    reader = csv.reader(source, delimiter=delimiter)
    line = 0  # lines before the next record
    first = True
    while True:
        source.taken.clear()
        problem = ""
        try:
            cells: list[str] | None = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            cells = None
            problem = (
                f"A cell is longer than {csv.field_size_limit():,} characters."
                if "field larger than field limit" in str(exc)
                else f"This row is not valid CSV: {exc}."
            )
            reader = csv.reader(source, delimiter=delimiter)  # the old one stopped mid-record
        taken = source.taken
        start = line + 1
        if first:
            first = False
            line += len(taken)
            continue  # the header
        if len(taken) > 1 and (cells is None or not _fits_lines(cells, width, single_line)):
            problem = (
                "A quote opened in this row is not closed on its line, so the row ran on into "
                f"line {start + len(taken) - 1}. Only this line is skipped; the lines after it "
                "are read as rows of their own."
            )
            source.give_back(taken[1:])
            reader = csv.reader(source, delimiter=delimiter)
            del taken[1:]
            cells = None
        line += len(taken)
        if cells is None:
            yield Record(start, _raw_cells(taken[0], delimiter), problem)
        elif not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        elif undecodable and _ESCAPED.search(joined := delimiter.join(cells)):
            yield Record(
                start,
                [readable(c) for c in cells],
                f"Not valid {undecodable}: {_bad_bytes(joined)} cannot be read. Rows like this are "
                "skipped, as chosen before the import.",
            )
        else:
            yield Record(start, cells)


def max_columns() -> int:
    return getattr(settings, "IMPORT_MAX_COLUMNS", 200)


def _n(number: int) -> str:
    return number_format(number, force_grouping=True)


def read_header(text: Iterable[str], delimiter: str) -> list[str]:
    """The header's cells as read (undecodable bytes still escaped)."""
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError(_("The file is empty.")) from None
    except csv.Error as exc:
        raise ImportFileError(_("Line 1 is not valid CSV: %(error)s.") % {"error": exc}) from None
    limit = max_columns()
    if len(header) > limit:
        # The mapping page has a column of choices per column: tens of thousands of them made
        # a page of over a hundred megabytes.
        raise ImportFileError(
            _(
                "The first line has %(count)s columns; an import takes at most %(limit)s. "
                "Delete the columns you do not need and upload the file again."
            )
            % {"count": _n(len(header)), "limit": _n(limit)}
        )
    return header


def header_names(header: list[str]) -> list[str]:
    return [readable(h.strip()) or f"Column {i + 1}" for i, h in enumerate(header)]


def single_line_columns(columns: list[dict[str, str]]) -> set[int]:
    return {i for i, c in enumerate(columns) if c["target"]}


def job_records(job: ImportJob, text: Iterable[str]) -> Iterator[Record]:
    """read_records with the job's delimiter, width, mapped columns and encoding choice."""
    fmt = job.mapping["file"]
    return read_records(
        text,
        fmt["delimiter"],
        width=len(job.mapping["headers"]),
        single_line=single_line_columns(job.mapping["columns"]),
        undecodable="" if fmt.get("decodes", True) else ENCODING_LABELS[text_encoding(job)],
    )


def alternative_encoding(stream, fmt: FileFormat) -> str | None:
    """The encoding to offer for a whole UTF-8 file that does not decode: Windows-1252 (what
    spreadsheets on Windows write) if every byte is valid in it, else Latin-1 (every byte is)."""
    if fmt.decodes or fmt.encoding != "utf-8-sig":
        return None
    return "cp1252" if _decodes(stream, "cp1252") else "latin-1"


def count_records(
    records: Iterator[Record], header: list[str], fmt: FileFormat, alternative: str | None
) -> tuple[int, dict[str, Any]]:
    """The number of records; for a file that does not decode also its undecodable rows (the
    first few shown, all counted) and how many valid rows the alternative would read otherwise."""
    found: dict[str, Any] = {"count": 0, "rows": [], "alternative": alternative, "recoded": 0}

    def note(line: int, cells: list[str]) -> None:
        joined = fmt.delimiter.join(cells)
        if _ESCAPED.search(joined):
            found["count"] += 1
            if len(found["rows"]) < UNDECODABLE_SHOWN:
                found["rows"].append(_row_in_both(line, joined, alternative))
        elif not joined.isascii():
            found["recoded"] += 1
            if "recoded_example" not in found:
                found["recoded_example"] = _row_in_both(line, joined, alternative)

    if not fmt.decodes:
        note(1, header)
    rows = 0
    limit = max_rows()
    for record in records:
        rows += 1
        if rows > limit:
            raise ImportFileError(
                _(
                    "The file has more than %(limit)s rows; one import takes at most %(limit)s. "
                    "Split it into several files."
                )
                % {"limit": _n(limit)}
            )
        if not fmt.decodes and not record.problem:
            note(record.line, record.cells)
    if rows == 0:
        raise ImportFileError(_("The file has a header line but no rows to import."))
    return rows, found


def _row_in_both(line: int, text: str, alternative: str | None) -> dict[str, Any]:
    """A row for the encoding choice: its bad bytes, and its text as read and as ``alternative``."""
    # Only UTF-8 has an alternative: its bytes are the text encoded again, bad bytes included.
    raw = text.encode("utf-8", UNDECODABLE) if alternative else b""
    return {
        "line": line,
        "bytes": _bad_bytes(text),
        "text": readable(text)[:500],
        "alternative": raw.decode(alternative, errors="replace")[:500] if alternative else "",
    }


def rewind(text: io.TextIOWrapper) -> io.TextIOWrapper:
    text.seek(0)
    return text
