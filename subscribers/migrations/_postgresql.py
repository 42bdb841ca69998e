"""A helper for migrations (the leading underscore keeps Django's loader from taking it for one)."""


def postgresql_only(statements: list[str]):
    """A RunPython function executing ``statements`` on PostgreSQL, and nothing on SQLite."""

    def apply(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for sql in statements:
            schema_editor.execute(sql)

    return apply
