"""A project's email settings: saving them (audited, secrets write-only) and the test email."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.channels import Delivery
from controlpanel.models import Project
from controlpanel.services import Actor, assign_changes, record_audit
from subscribers.errors import InvalidInput

from .backends import ANYMAIL_BACKENDS, ConnectionProblem, is_one_line, provider_options
from .models import EmailBackend, EmailSettings
from .transport import compose, deliver_now, settings_for

SECRET_FIELDS = ("smtp_password", "provider_settings")
SETTINGS_FIELDS = (
    "backend",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_username",
    "smtp_password",
    "provider_settings",
    "from_email",
    "from_name",
    "reply_to",
)
# Written into an email header or an SMTP command (no Bcc: or RCPT TO: smuggled in).
ONE_LINE_FIELDS = {
    "from_name": gettext_lazy("The from name"),
    "smtp_host": gettext_lazy("The SMTP host"),
    "smtp_username": gettext_lazy("The SMTP user name"),
}


@transaction.atomic
def save_settings(*, project: Project, fields: dict[str, Any], actor: Actor) -> EmailSettings:
    """Create or update the project's settings. An empty secret keeps the stored one, except when
    the SMTP server changes (a password must not follow the account to another server). Provider
    settings are checked against the chosen ESP (InvalidInput naming the field). Audited with the
    names of the changed fields, never a secret's value."""
    email_settings = EmailSettings.objects.for_project(project).select_for_update().first() or EmailSettings(
        project=project
    )
    fields = {k: fields[k] for k in SETTINGS_FIELDS if k in fields}
    for name, label in ONE_LINE_FIELDS.items():
        if not is_one_line(str(fields.get(name) or "")):
            raise InvalidInput(
                _("%(field)s may not contain line breaks or control characters.") % {"field": label},
                field=name,
            )
    if (
        "smtp_host" in fields
        and email_settings.pk
        and email_settings.smtp_password
        and fields["smtp_host"] != email_settings.smtp_host
        and not fields.get("smtp_password")
    ):
        raise InvalidInput(_("Enter the password again: the SMTP server changed."), field="smtp_password")
    backend = fields.get("backend", email_settings.backend)
    if backend in ANYMAIL_BACKENDS:
        stored = fields.get("provider_settings") or email_settings.provider_settings
        if backend != email_settings.backend and not fields.get("provider_settings"):
            stored = email_settings.provider_settings = ""  # another ESP's keys never fit this one
        try:
            provider_options(backend, stored)
        except ConnectionProblem as exc:
            raise InvalidInput(str(exc), field="provider_settings") from None
    if backend == EmailBackend.SMTP and not fields.get("smtp_host", email_settings.smtp_host):
        raise InvalidInput(_("Enter the SMTP server's host name."), field="smtp_host")
    changed = assign_changes(email_settings, fields, secrets=SECRET_FIELDS)
    creating = email_settings.pk is None
    if creating or changed:
        email_settings.save()
        record_audit(
            project=project,
            actor=actor,
            action="email_settings.created" if creating else "email_settings.updated",
            obj=email_settings,
            changes={"fields": sorted(n if n not in SECRET_FIELDS else f"{n} (secret)" for n in changed)},
        )
    return email_settings


def send_settings_test(*, project: Project, to: str, actor: Actor) -> Delivery:
    """Send a short email to ``to`` at once with the saved settings; the Delivery says what the
    server or the ESP answered. Audited (who tested, to where, the outcome)."""
    email_settings = settings_for(project)
    content = {
        "subject": f"Test email from {project.name}",
        "text": f"This is a test email from {project.name}: the email settings work.",
    }
    email = compose(email_settings, to=to, content=content)
    email.mailbox_test = True
    delivery = deliver_now(email_settings, email)
    with transaction.atomic():
        record_audit(
            project=project,
            actor=actor,
            action="email_settings.tested",
            obj=email_settings if email_settings.pk else None,
            changes={"to": to, "backend": email_settings.backend, "ok": delivery.ok, "error": delivery.error},
        )
    return delivery
