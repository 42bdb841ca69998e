"""Drop the single-column project index on subscribers.

Every other subscriber index leads with the project (unique phone, external id and BSUID,
created, consent, name, last inbound), so it served nothing they do not, and cost a write per
imported subscriber (about 2.6 s per million, docs/benchmarks-import.md). As in 0004, only the
index goes, not the foreign key.
"""

import django.db.models.deletion
from django.db import migrations, models


def drop_index(apps, schema_editor):
    model = apps.get_model("subscribers", "Subscriber")
    for name in schema_editor._constraint_names(model, ["project_id"], index=True, type_=models.Index.suffix):
        schema_editor.execute(schema_editor._delete_index_sql(model, name))


def create_index(apps, schema_editor):
    model = apps.get_model("subscribers", "Subscriber")
    schema_editor.execute(schema_editor._create_index_sql(model, fields=[model._meta.get_field("project")]))


class Migration(migrations.Migration):
    dependencies = [
        ("controlpanel", "0001_initial"),
        ("subscribers", "0004_drop_redundant_subscriber_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="subscriber",
                    name="project",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="subscribers",
                        to="controlpanel.project",
                    ),
                )
            ],
            database_operations=[migrations.RunPython(drop_index, create_index)],
        )
    ]
