"""Checking rows in file order: phones, profile fields, tag types, consent, duplicates."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from .. import tags as tagtypes
from ..errors import InvalidInput
from ..models import ConsentState, ImportJob
from ..profile import clean_profile_value
from ..upsert import Item
from .files import ImportFileError
from .mapping import _FORMULA_START, parse_consent
from .phone_numbers import fast_phone


@dataclass(kw_only=True)
class Row(Item):
    """A validated row, ready to apply: the upsert's Item with where it came from."""

    index: int  # 0-based position among the file's records
    line: int
    cells: list[str]


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
        phone = external_id = consent = email_consent = None
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
                    # parse_text refused numbers the column cannot hold: one range for every writer.
                    tags[definition.id] = tagtypes.value_tuples(definition.type, value)
                elif target == "external_id":
                    if len(text) > 200:
                        raise InvalidInput("The external id is longer than 200 characters.")
                    external_id = text
                elif target == "consent":
                    consent = parse_consent(text)
                elif target == "email_consent":
                    email_consent = parse_consent(text)
                elif target == "consent_evidence":
                    evidence = text
                else:
                    profile[target] = clean_profile_value(target, text)
            except InvalidInput as exc:
                errors.append(exc.message)
        opts_in = ConsentState.OPTED_IN in (consent, email_consent)
        if opts_in and not (evidence or self.default_evidence):
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
            email_consent=email_consent,
            email_evidence=self.email_evidence(
                evidence or (self.default_evidence if email_consent == ConsentState.OPTED_IN else "")
            ),
        )

    def email_evidence(self, evidence: str) -> str:
        """The ledger's evidence of an email consent cell: the row's (or the default) evidence and
        the file it came from, so an email opt-in can be traced to its list."""
        source = f"CSV import “{self.job.original_name}”"
        return (f"{evidence} ({source})" if evidence else source)[:5000]

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
