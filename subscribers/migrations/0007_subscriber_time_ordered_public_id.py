"""New subscribers get time-ordered public ids (UUID version 7, subscribers/ids.py).

Only the default changes: no SQL, and the ids that exist stay as they are.
"""

import subscribers.ids
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("subscribers", "0006_tagvalue_tag_held_not_constrained"),
    ]

    operations = [
        migrations.AlterField(
            model_name="subscriber",
            name="public_id",
            field=models.UUIDField(default=subscribers.ids.uuid7, editable=False, unique=True),
        ),
    ]
