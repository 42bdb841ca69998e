"""CSV import: upload, column mapping, and the set-based background pipeline.

Three steps, each a service:

1. :func:`create_import` stores the upload, detects encoding and delimiter and counts the rows
   (clear errors for files that are not CSV or too large). Rows whose bytes do not decode are
   listed, and the person importing chooses what happens to them
   (:func:`choose_undecodable_rows`) before anything is written.
2. :func:`start_import` saves the column mapping and enqueues the job after commit.
3. :func:`run_import` (called by the actor) reads the file in chunks. Each chunk is validated in
   Python (phones, profile fields, tag types, consent, duplicates inside the file), then applied
   in one transaction by the bulk form of the one subscriber upsert (subscribers.upsert, which
   the API and WhatsApp inbound use too): existing subscribers fetched in one query, new ones
   bulk inserted, changed ones bulk updated, tag values diffed in bulk, ledger rows and events
   bulk inserted. On PostgreSQL the upsert's store streams the inserts through COPY.

Idempotency and restarts: rows whose values are already stored are "unchanged" and touch
nothing (not even ``updated_at``), so importing a file twice changes nothing. Each chunk commits
together with the job's checkpoint (``processed_rows`` and the counts), its rejected rows
(ImportRejection) and its events (``Subscribed``, ``Unsubscribed``, as the services record them).
A re-run, on any machine, resumes after the last committed chunk, so a crashed job ends in the
same state as an uninterrupted one. Files go through the storage API only (no local paths): the
web process and the workers may run on different machines. A run owns the job through
``started_at`` (its claim token): a newer run takes over, and the older one stops at its next
checkpoint.

The modules, in the order a file goes through them: ``files`` (encoding, delimiter, records),
``mapping`` (column targets), ``jobs`` (the services of steps 1 and 2), ``pipeline`` (step 3),
``validation`` with ``phone_numbers``, ``writers`` (inline or threaded), ``applier`` (a chunk's
transaction), ``stores`` (the upsert's ORM and COPY stores), ``reports`` (rejected rows), ``gctuning``, and
``gdpr`` (erasure scrubs import files).
"""

from __future__ import annotations

from . import gdpr  # noqa: F401 - connects the erasure receiver
from .applier import Applier, _Superseded
from .files import (
    ENCODING_LABELS,
    ImportFileError,
    Record,
    detect_format,
    max_bytes,
    max_columns,
    max_rows,
    open_text,
    read_records,
    readable,
)
from .gctuning import _fewer_collections, _FewerCollections
from .gdpr import scrub_import_files
from .jobs import choose_undecodable_rows, create_import, discard_import, preview, start_import
from .mapping import CONSENT_TARGETS, PROFILE_TARGETS, TARGET_LABELS, auto_targets, clean_mapping
from .phone_numbers import fast_phone
from .pipeline import fail_import, run_import, writer_count
from .reports import ReportWriter, finish_report
from .stores import PostgresStore, Store, _binding_cursor, chunk_settings
from .validation import Chunk, Rejection, Row, Validator

# Rows per chunk: one transaction, one progress update. Tests lower it to cover chunk edges;
# each run reads it here (pipeline._run).
CHUNK_SIZE = 10_000

__all__ = [
    "CHUNK_SIZE",
    "CONSENT_TARGETS",
    "ENCODING_LABELS",
    "PROFILE_TARGETS",
    "TARGET_LABELS",
    "Applier",
    "Chunk",
    "ImportFileError",
    "PostgresStore",
    "Record",
    "Rejection",
    "ReportWriter",
    "Row",
    "Store",
    "Validator",
    "_FewerCollections",
    "_Superseded",
    "_binding_cursor",
    "_fewer_collections",
    "auto_targets",
    "choose_undecodable_rows",
    "chunk_settings",
    "clean_mapping",
    "create_import",
    "detect_format",
    "discard_import",
    "fail_import",
    "fast_phone",
    "finish_report",
    "max_bytes",
    "max_columns",
    "max_rows",
    "open_text",
    "preview",
    "read_records",
    "readable",
    "run_import",
    "scrub_import_files",
    "start_import",
    "writer_count",
]
