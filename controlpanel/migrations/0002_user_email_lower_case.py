# Accounts are stored lower-case so that the unique email is case-insensitive and log-in
# throttling counts one identity (issue #8). Existing mixed-case emails are lowered first; two
# accounts that differ only in case make this migration fail on the unique index, on purpose:
# an operator must merge them by hand.

import django.db.models.functions.text
from django.db import migrations, models
from django.db.models.functions import Lower


def lower_emails(apps, schema_editor):
    User = apps.get_model("controlpanel", "User")
    User.objects.exclude(email=Lower("email")).update(email=Lower("email"))


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("controlpanel", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(lower_emails, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.CheckConstraint(
                condition=models.Q(("email", django.db.models.functions.text.Lower("email"))),
                name="user_email_lower_case",
            ),
        ),
    ]
