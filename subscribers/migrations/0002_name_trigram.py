"""Trigram index for searching subscribers by name (PostgreSQL only).

``name__icontains`` becomes ``UPPER(name::text) LIKE UPPER('%…%')``, which a
btree cannot serve: at a million subscribers it read the whole table (350-700 ms).
A GIN trigram index on the same expression answers it from the index. SQLite
has no such index and is left alone.
"""

from django.db import migrations

from subscribers.migrations._postgresql import postgresql_only

CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS subscriber_name_trgm ON subscribers_subscriber "
    "USING gin ((UPPER(name::text)) gin_trgm_ops)",
]
DROP = ["DROP INDEX IF EXISTS subscriber_name_trgm"]


class Migration(migrations.Migration):
    dependencies = [("subscribers", "0001_initial")]

    operations = [migrations.RunPython(postgresql_only(CREATE), postgresql_only(DROP))]
