"""Drop the database foreign key from tag values to their definition.

Checking it cost about 10 CPU-seconds of a million-row import: one check and share lock of the
same few definition rows per value, and with two writers at once each went through a MultiXact
(docs/benchmarks-import.md). Writers of tag values now hold the definitions once per transaction
and deleting a tag locks its definition first (tags.hold_definitions, services.delete_tag), so
no value outlives its definition. The cascade stays in Django; the index on tag stays.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('subscribers', '0005_drop_subscriber_project_index'),
    ]

    operations = [
        migrations.AlterField(
            model_name='tagvalue',
            name='tag',
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name='values', to='subscribers.tagdefinition'),
        ),
    ]
