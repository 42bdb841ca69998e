"""The events' dedup-key constraint covers only events that have a key.

Most events (inbound messages aside, every API event without a key, imports' Subscribed) have none,
yet the full unique index took an entry for each: one of six index writes per event. Look-ups by key
(``dedup_key = …``, ``dedup_key IN (…)``) imply NOT NULL, so they use the partial index as before.
One transaction on PostgreSQL: there is no moment without the constraint.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('controlpanel', '0003_country_names'),
        ('subscribers', '0013_import_rejection'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='event',
            name='event_unique_dedup',
        ),
        migrations.AddConstraint(
            model_name='event',
            constraint=models.UniqueConstraint(condition=models.Q(('dedup_key__isnull', False)), fields=('project', 'dedup_key'), name='event_unique_dedup'),
        ),
    ]
