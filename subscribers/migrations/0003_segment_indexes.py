"""Indexes and statistics for segment counts and imports at a million subscribers.

Measured in docs/benchmarks.md:
- Events get ``facets``, their attributes with long texts replaced by ``true`` (see
  ``events.facets_of``), backfilled here; the event index covers them, so attribute filters
  become index-only scans. (Covering ``attributes`` itself would make inserting an event with
  a long text fail: a btree entry must stay below 2,704 bytes.)
- ``AttributeIndex``: per-project indexes on the attributes segments filter on often.
- ``project`` on tag values, events and the ledger loses its database FK and single-column
  index (the subscriber implies the project): fewer checks and index writes per imported row.
- PostgreSQL only: extended statistics on (tag, value_text), without which the planner took a
  value's frequency over all tags (Berlin: 8,007 rows estimated, 120,033 real) and chose
  per-subscriber nested loops; and a trigram index on phone for searching number fragments.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from subscribers.migrations._postgresql import postgresql_only

CREATE = [
    "CREATE STATISTICS IF NOT EXISTS tagvalue_tag_text (dependencies, mcv) "
    "ON tag_id, value_text FROM subscribers_tagvalue",
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    # Matches the "phone"::text LIKE '%...%' that phone__contains emits.
    "CREATE INDEX IF NOT EXISTS subscriber_phone_trgm ON subscribers_subscriber "
    "USING gin ((phone::text) gin_trgm_ops)",
]
DROP = ["DROP STATISTICS IF EXISTS tagvalue_tag_text", "DROP INDEX IF EXISTS subscriber_phone_trgm"]


def backfill_facets(apps, schema_editor):
    """The facets of the events recorded so far, in batches (the same rule as events.facets_of)."""
    Event = apps.get_model("subscribers", "Event")
    last = 0
    while True:
        batch = list(Event.objects.filter(pk__gt=last).order_by("pk").only("pk", "attributes")[:5000])
        if not batch:
            return
        for event in batch:
            event.facets = {
                key: True if isinstance(value, str) and len(value) > 64 else value
                for key, value in (event.attributes or {}).items()
            }
        Event.objects.bulk_update(batch, ["facets"])
        last = batch[-1].pk


class Migration(migrations.Migration):
    dependencies = [
        ("controlpanel", "0001_initial"),
        ("subscribers", "0002_name_trigram"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AttributeIndex",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("event_name", models.CharField(max_length=64)),
                ("attribute", models.CharField(max_length=64)),
                (
                    "attribute_type",
                    models.CharField(
                        choices=[
                            ("string", "String"),
                            ("integer", "Integer"),
                            ("decimal", "Decimal (price)"),
                            ("boolean", "Boolean"),
                            ("date", "Date"),
                            ("datetime", "Date and time"),
                            ("list", "List of strings"),
                        ],
                        max_length=10,
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Waiting to be built"),
                            ("building", "Building"),
                            ("ready", "Ready"),
                            ("failed", "Failed"),
                            ("removing", "Being removed"),
                        ],
                        default="pending",
                        max_length=10,
                    ),
                ),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name_plural": "attribute indexes",
                "ordering": ["event_name", "attribute"],
            },
        ),
        migrations.RemoveIndex(
            model_name="event",
            name="event_project_name_time",
        ),
        migrations.AddField(
            model_name="event",
            name="facets",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(backfill_facets, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="consentchange",
            name="project",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="controlpanel.project",
            ),
        ),
        migrations.AlterField(
            model_name="event",
            name="project",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="controlpanel.project",
            ),
        ),
        migrations.AlterField(
            model_name="tagvalue",
            name="project",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="controlpanel.project",
            ),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                fields=["project", "name", "occurred_at"],
                include=("subscriber", "facets"),
                name="event_project_name_time",
            ),
        ),
        migrations.AddField(
            model_name="attributeindex",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="attributeindex",
            name="project",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="attribute_indexes",
                to="controlpanel.project",
            ),
        ),
        migrations.AddConstraint(
            model_name="attributeindex",
            constraint=models.UniqueConstraint(
                fields=("project", "event_name", "attribute"), name="attributeindex_unique"
            ),
        ),
        migrations.RunPython(postgresql_only(CREATE), postgresql_only(DROP)),
    ]
