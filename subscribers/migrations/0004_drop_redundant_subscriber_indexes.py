"""Drop the single-column subscriber indexes on events and tag values.

Both tables have a composite index leading with the subscriber (event_subscriber_time,
tagvalue_subscriber) that serves every lookup the single-column one did; at 10M events and
11M tag values the two cost 180 MB and an index write per inserted row.

Only the indexes go: a plain AlterField would also drop and re-validate the foreign keys, a
full scan of both tables.
"""

import django.db.models.deletion
from django.db import migrations, models


def drop_indexes(apps, schema_editor):
    for model_name in ("Event", "TagValue"):
        model = apps.get_model("subscribers", model_name)
        columns = ["subscriber_id"]
        for name in schema_editor._constraint_names(model, columns, index=True, type_=models.Index.suffix):
            schema_editor.execute(schema_editor._delete_index_sql(model, name))


def create_indexes(apps, schema_editor):
    for model_name in ("Event", "TagValue"):
        model = apps.get_model("subscribers", model_name)
        field = model._meta.get_field("subscriber")
        schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


class Migration(migrations.Migration):
    dependencies = [("subscribers", "0003_segment_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="subscriber",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="subscribers.subscriber",
                    ),
                ),
                migrations.AlterField(
                    model_name="tagvalue",
                    name="subscriber",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="tag_values",
                        to="subscribers.subscriber",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
        )
    ]
