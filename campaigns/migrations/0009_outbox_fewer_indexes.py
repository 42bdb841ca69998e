"""The outbox loses the indexes a fan-out paid for and no query needs (issue 9).

The three foreign-key indexes of project, subscriber and campaign each duplicate the leading
column of a composite index; ``wamid``'s ``LIKE`` index served no query; the idempotency key's
unique index held a NULL entry for every campaign and journey row. On PostgreSQL the change is
done by hand: Django's own ``AlterField`` would drop and re-validate each foreign key over the
whole table and rebuild ``wamid``'s unique index, where dropping indexes and renaming the
constraint is enough. Other databases take Django's operations.
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.migrations.operations.base import Operation

OPERATIONS = [
    migrations.RemoveConstraint(
        model_name="message",
        name="message_unique_idempotency_key",
    ),
    migrations.AlterField(
        model_name="message",
        name="campaign",
        field=models.ForeignKey(
            blank=True,
            db_index=False,
            null=True,
            on_delete=django.db.models.deletion.CASCADE,
            related_name="messages",
            to="campaigns.campaign",
            verbose_name="campaign",
        ),
    ),
    migrations.AlterField(
        model_name="message",
        name="project",
        field=models.ForeignKey(
            db_index=False,
            on_delete=django.db.models.deletion.CASCADE,
            related_name="messages",
            to="controlpanel.project",
            verbose_name="project",
        ),
    ),
    migrations.AlterField(
        model_name="message",
        name="subscriber",
        field=models.ForeignKey(
            db_index=False,
            on_delete=django.db.models.deletion.CASCADE,
            related_name="messages",
            to="subscribers.subscriber",
            verbose_name="subscriber",
        ),
    ),
    migrations.AlterField(
        model_name="message",
        name="wamid",
        field=models.CharField(blank=True, max_length=200, null=True, verbose_name="WhatsApp message ID"),
    ),
    migrations.AddConstraint(
        model_name="message",
        constraint=models.UniqueConstraint(
            condition=models.Q(("idempotency_key__isnull", False)),
            fields=("project", "idempotency_key"),
            name="message_unique_idempotency_key",
        ),
    ),
    migrations.AddConstraint(
        model_name="message",
        constraint=models.UniqueConstraint(fields=("wamid",), name="message_unique_wamid"),
    ),
]

POSTGRESQL = [
    "DROP INDEX IF EXISTS campaigns_message_project_id_a07cd870",
    "DROP INDEX IF EXISTS campaigns_message_subscriber_id_da059e95",
    "DROP INDEX IF EXISTS campaigns_message_campaign_id_de4b21fa",
    "DROP INDEX IF EXISTS campaigns_message_wamid_b0dac114_like",
    "ALTER TABLE campaigns_message RENAME CONSTRAINT campaigns_message_wamid_key TO message_unique_wamid",
    "ALTER TABLE campaigns_message DROP CONSTRAINT message_unique_idempotency_key",
    "CREATE UNIQUE INDEX message_unique_idempotency_key ON campaigns_message (project_id, idempotency_key)"
    " WHERE idempotency_key IS NOT NULL",
]

POSTGRESQL_BACK = [
    "CREATE INDEX campaigns_message_project_id_a07cd870 ON campaigns_message (project_id)",
    "CREATE INDEX campaigns_message_subscriber_id_da059e95 ON campaigns_message (subscriber_id)",
    "CREATE INDEX campaigns_message_campaign_id_de4b21fa ON campaigns_message (campaign_id)",
    "CREATE INDEX campaigns_message_wamid_b0dac114_like ON campaigns_message (wamid varchar_pattern_ops)",
    "ALTER TABLE campaigns_message RENAME CONSTRAINT message_unique_wamid TO campaigns_message_wamid_key",
    "DROP INDEX message_unique_idempotency_key",
    "ALTER TABLE campaigns_message ADD CONSTRAINT message_unique_idempotency_key"
    " UNIQUE (project_id, idempotency_key)",
]


class FewerIndexes(Operation):
    """Django's operations for the state (and for databases other than PostgreSQL)."""

    def state_forwards(self, app_label, state):
        for operation in OPERATIONS:
            operation.state_forwards(app_label, state)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            for statement in POSTGRESQL:
                schema_editor.execute(statement)
            return
        state = from_state
        for operation in OPERATIONS:
            after = state.clone()
            operation.state_forwards(app_label, after)
            operation.database_forwards(app_label, schema_editor, state, after)
            state = after

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            for statement in POSTGRESQL_BACK:
                schema_editor.execute(statement)
            return
        states = [to_state]
        for operation in OPERATIONS:
            after = states[-1].clone()
            operation.state_forwards(app_label, after)
            states.append(after)
        for index in reversed(range(len(OPERATIONS))):
            OPERATIONS[index].database_backwards(app_label, schema_editor, states[index + 1], states[index])

    def describe(self):
        return "Drop the outbox's redundant indexes"


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0008_verbose_names"),
        ("controlpanel", "0005_verbose_names"),
        ("subscribers", "0017_subscriber_held_not_constrained"),
        ("whatsapp", "0005_automatic_texts"),
    ]

    operations = [FewerIndexes()]
