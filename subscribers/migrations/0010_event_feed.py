"""The durable event feed: consumer cursors, set-aside failures, and each event's transaction id.

On PostgreSQL every event gets ``feed_txid``, the id of the transaction that wrote it (see
``subscribers/feed.py`` for why the feed orders by it). The column is added without a default
first, so existing rows are not rewritten (they keep NULL: all of them committed long ago, and a
consumer starts at the end of the feed); the default then applies to new rows only. The ORM
does not know the column: inserts leave it to the default, whichever path writes the event
(ORM, bulk_create, COPY). The partial index serves the feed's read and stays empty for old rows.
SQLite needs none of it: its writers are serialised, so ids follow commit order.
"""

from django.db import migrations, models

FORWARD = [
    "ALTER TABLE subscribers_event ADD COLUMN feed_txid xid8",
    "ALTER TABLE subscribers_event ALTER COLUMN feed_txid SET DEFAULT pg_current_xact_id()",
    "CREATE INDEX event_feed_position ON subscribers_event (feed_txid, id) WHERE feed_txid IS NOT NULL",
]
BACKWARD = [
    "DROP INDEX IF EXISTS event_feed_position",
    "ALTER TABLE subscribers_event DROP COLUMN IF EXISTS feed_txid",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ('subscribers', '0009_search_key_functions'),
    ]

    operations = [
        migrations.RunPython(_run(FORWARD), _run(BACKWARD)),
        migrations.CreateModel(
            name='FeedCursor',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('consumer', models.CharField(max_length=64, unique=True)),
                ('position_txid', models.BigIntegerField(default=0)),
                ('position_event_id', models.BigIntegerField(default=0)),
                ('handled', models.BigIntegerField(default=0, help_text='Events handled since the cursor was made.')),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('failures', models.IntegerField(default=0)),
                ('last_error', models.TextField(blank=True)),
            ],
        ),
        migrations.CreateModel(
            name='FeedFailure',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('consumer', models.CharField(max_length=64)),
                ('event_id', models.BigIntegerField()),
                ('project_id', models.BigIntegerField()),
                ('error', models.TextField()),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'ordering': ['-created_at'],
                'constraints': [models.UniqueConstraint(fields=('consumer', 'event_id'), name='feedfailure_unique_event')],
            },
        ),
    ]
