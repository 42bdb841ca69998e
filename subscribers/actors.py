"""Background work of the audience app. Actors take ids and are safe to run twice."""

from __future__ import annotations

import dramatiq

from . import imports


@dramatiq.actor(
    queue_name="long",
    max_retries=3,
    min_backoff=5_000,
    time_limit=2 * 60 * 60 * 1000,
    on_retry_exhausted="fail_import_job",
)
def run_import_job(job_id: int) -> None:
    """Run or resume a CSV import. A finished job is left alone; a retry resumes at the checkpoint."""
    imports.run_import(job_id=job_id)


@dramatiq.actor(queue_name="default", max_retries=0)
def fail_import_job(message: dict, retry_info: dict) -> None:
    """Called by the Retries middleware when ``run_import_job`` gave up: tell the user."""
    job_id = message["args"][0]
    imports.fail_import(
        job_id=job_id,
        error=(
            f"The import stopped after {retry_info.get('retries', 0) + 1} attempts because of an "
            "internal error. Rows up to the last progress shown were imported; upload the file "
            "again to import the rest (rows already imported will show as unchanged)."
        ),
    )


@dramatiq.actor(queue_name="long", max_retries=3, min_backoff=10_000, time_limit=6 * 60 * 60 * 1000)
def build_attribute_index(index_id: int) -> None:
    """Build an event attribute index (CONCURRENTLY: may take minutes on millions of events)."""
    from . import attribute_indexes

    attribute_indexes.build(index_id)


# DROP INDEX CONCURRENTLY waits for every transaction that might use the index.
@dramatiq.actor(queue_name="long", max_retries=3, min_backoff=10_000)
def drop_attribute_index(index_id: int) -> None:
    from . import attribute_indexes

    attribute_indexes.drop(index_id)


@dramatiq.actor(queue_name="long", max_retries=5, min_backoff=10_000, time_limit=60 * 60 * 1000)
def scrub_import_files(project_id: int, identifiers: list[str]) -> None:
    """GDPR: remove an erased subscriber's rows from the project's import files (reads every file)."""
    imports.scrub_import_files(project_id=project_id, identifiers=identifiers)
