"""Segments compare texts folded (no case, no accents): a folded copy of tag texts, folded facets.

- ``TagValue.value_folded`` = ``textfold.fold(value_text)``, filled here for the rows there are,
  one ``fold`` per distinct text (a million rows hold a few hundred thousand of them); the
  text index is keyed on it instead of ``value_text`` (one text index, as before).
- ``Event.facets`` hold folded texts: the events whose facets have an upper-case or non-ASCII
  character (PostgreSQL finds them with a regular expression; SQLite reads all) get theirs again.
- PostgreSQL: the (tag, text) statistics follow the column the segment compiler filters on.

On a large PostgreSQL database this rewrites every text tag row and some events: run
``VACUUM (ANALYZE)`` on subscribers_tagvalue and subscribers_event afterwards, or wait for
autovacuum, before index-only scans are fast again (docs/benchmarks.md).
"""

from django.db import migrations, models

from subscribers.migrations._postgresql import postgresql_only

from subscribers.facets import facets_of
from subscribers.textfold import fold

BATCH = 5000


def fold_tag_values(apps, schema_editor):
    TagValue = apps.get_model("subscribers", "TagValue")
    texts = TagValue.objects.filter(value_text__isnull=False).values_list("value_text", flat=True).distinct()
    mapping = [(text, fold(text)) for text in texts.order_by().iterator(chunk_size=BATCH)]
    with schema_editor.connection.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE wcp_fold_map (t TEXT PRIMARY KEY, f TEXT NOT NULL)")
        for i in range(0, len(mapping), BATCH):
            cur.executemany("INSERT INTO wcp_fold_map (t, f) VALUES (%s, %s)", mapping[i : i + BATCH])
        cur.execute(
            "UPDATE subscribers_tagvalue SET value_folded = wcp_fold_map.f FROM wcp_fold_map "
            "WHERE subscribers_tagvalue.value_text = wcp_fold_map.t"
        )
        cur.execute("DROP TABLE wcp_fold_map")


def fold_facets(apps, schema_editor, derive=facets_of, prefilter=True):
    Event = apps.get_model("subscribers", "Event")
    events = Event.objects.order_by("pk")
    if prefilter and schema_editor.connection.vendor == "postgresql":
        # Facets that fold to themselves (lower-case ASCII, numbers, booleans) stay as they are.
        events = events.extra(where=["facets::text ~ '[A-Z]|[^\\x01-\\x7e]'"])
    last = 0
    while True:
        batch = list(events.filter(pk__gt=last).only("pk", "attributes", "facets")[:BATCH])
        if not batch:
            return
        changed = []
        for event in batch:
            facets = derive(event.attributes)
            if facets != event.facets:
                event.facets = facets
                changed.append(event)
        Event.objects.bulk_update(changed, ["facets"])
        last = batch[-1].pk


def unfold_facets(apps, schema_editor):
    """Back to facets with texts as they are (0003's rule)."""

    def verbatim(attributes):
        return {k: True if isinstance(v, str) and len(v) > 64 else v for k, v in (attributes or {}).items()}

    fold_facets(apps, schema_editor, derive=verbatim, prefilter=False)


STATISTICS = [
    "DROP STATISTICS IF EXISTS tagvalue_tag_text",
    "CREATE STATISTICS IF NOT EXISTS tagvalue_tag_folded (dependencies, mcv) "
    "ON tag_id, value_folded FROM subscribers_tagvalue",
]
STATISTICS_BACK = [
    "DROP STATISTICS IF EXISTS tagvalue_tag_folded",
    "CREATE STATISTICS IF NOT EXISTS tagvalue_tag_text (dependencies, mcv) "
    "ON tag_id, value_text FROM subscribers_tagvalue",
]


class Migration(migrations.Migration):
    dependencies = [
        ("controlpanel", "0001_initial"),
        ("subscribers", "0007_subscriber_time_ordered_public_id"),
    ]

    operations = [
        # Dropped before the backfill: one index less to write per updated row.
        migrations.RemoveIndex(model_name="tagvalue", name="tagvalue_text"),
        migrations.AddField(
            model_name="tagvalue",
            name="value_folded",
            field=models.TextField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(fold_tag_values, migrations.RunPython.noop),
        migrations.RunPython(fold_facets, unfold_facets),
        migrations.AddIndex(
            model_name="tagvalue",
            index=models.Index(
                condition=models.Q(("value_folded__isnull", False)),
                fields=["tag", "value_folded", "subscriber"],
                name="tagvalue_folded",
            ),
        ),
        migrations.RunPython(postgresql_only(STATISTICS), postgresql_only(STATISTICS_BACK)),
    ]
