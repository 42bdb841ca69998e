"""The SQL side of ``textfold``: ``wcp_fold`` and ``wcp_search_key``, and the name search index.

PostgreSQL gets the two functions in SQL (IMMUTABLE, so indexes may use them; plain SQL, so
the planner inlines them and an index on the expression matches the query's). SQLite gets the
Python functions of ``subscribers.textfold`` on every connection (``register_sqlite_functions``).

The list's name search compares ``wcp_search_key(name)`` ("Müller", "Mueller" -> "muller")
with the search text's key; the trigram index moves from ``UPPER(name)`` to that expression.
"""

from django.db import migrations

from subscribers.migrations._postgresql import postgresql_only

# NFKD without the combining diacritical marks, lower case, and "ß" (which lower() keeps) as "ss".
FOLD = (
    "CREATE OR REPLACE FUNCTION wcp_fold(value text) RETURNS text LANGUAGE sql IMMUTABLE STRICT "
    "PARALLEL SAFE AS $$ SELECT replace(lower(regexp_replace(normalize(value, NFKD), "
    "'[\\u0300-\\u036f\\u1ab0-\\u1aff\\u1dc0-\\u1dff\\u20d0-\\u20ff\\ufe20-\\ufe2f]', '', 'g')), "
    "'ß', 'ss') $$"
)
SEARCH_KEY = (
    "CREATE OR REPLACE FUNCTION wcp_search_key(value text) RETURNS text LANGUAGE sql IMMUTABLE "
    "STRICT PARALLEL SAFE AS $$ SELECT replace(replace(replace(wcp_fold(value), 'ae', 'a'), "
    "'oe', 'o'), 'ue', 'u') $$"
)
CREATE = [
    FOLD,
    SEARCH_KEY,
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "DROP INDEX IF EXISTS subscriber_name_trgm",
    "CREATE INDEX IF NOT EXISTS subscriber_name_key_trgm ON subscribers_subscriber "
    "USING gin ((wcp_search_key(name::text)) gin_trgm_ops)",
]
DROP = [
    "DROP INDEX IF EXISTS subscriber_name_key_trgm",
    "CREATE INDEX IF NOT EXISTS subscriber_name_trgm ON subscribers_subscriber "
    "USING gin ((UPPER(name::text)) gin_trgm_ops)",
    "DROP FUNCTION IF EXISTS wcp_search_key(text)",
    "DROP FUNCTION IF EXISTS wcp_fold(text)",
]


class Migration(migrations.Migration):
    dependencies = [("subscribers", "0008_fold_tag_values_and_facets")]

    operations = [migrations.RunPython(postgresql_only(CREATE), postgresql_only(DROP))]
