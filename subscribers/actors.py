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


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=5 * 60 * 1000)
def pump_feed(consumer: str) -> None:
    """Hand new events to one feed consumer for a few seconds (sent every second by the scheduler).

    No retries: a failed batch stays where it was and the next tick's pump tries again.
    """
    from django.conf import settings

    from . import feed

    if consumer in {c.name for c in feed.consumers()}:
        feed.pump(consumer, seconds=settings.EVENT_FEED_PUMP_SECONDS)


@dramatiq.actor(
    queue_name="long",
    max_retries=3,
    min_backoff=5_000,
    time_limit=60 * 60 * 1000,
    on_retry_exhausted="fail_bulk_job",
)
def run_bulk_job(job_id: int) -> None:
    """Run or resume a bulk action from the subscriber list (see subscribers.bulk)."""
    from . import bulk

    bulk.run_bulk_job(job_id=job_id)


@dramatiq.actor(queue_name="default", max_retries=0)
def fail_bulk_job(message: dict, retry_info: dict) -> None:
    """Called by the Retries middleware when ``run_bulk_job`` gave up."""
    from . import bulk

    bulk.fail_bulk_job(job_id=message["args"][0])


@dramatiq.actor(queue_name="long", max_retries=5, min_backoff=10_000, time_limit=60 * 60 * 1000)
def scrub_import_files(project_id: int, identifiers: list[str]) -> None:
    """GDPR: remove an erased subscriber's rows from the project's import files (reads every file)."""
    imports.scrub_import_files(project_id=project_id, identifiers=identifiers)
