"""The email channel: a project's sending settings, its email templates, and the embedded mailbox."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from campaigns.models import Message
from controlpanel.fields import EncryptedTextField
from controlpanel.models import Project, TenantQuerySet


class EmailBackend(models.TextChoices):
    # The embedded default: nothing leaves the machine; every email lands in the in-panel mailbox.
    MAILBOX = "mailbox", _("In-panel mailbox (nothing is sent)")
    SMTP = "smtp", _("SMTP server")
    # django-anymail's ESPs; their API keys go in ``provider_settings`` (encrypted).
    AMAZON_SES = "amazon_ses", "Amazon SES"
    MAILGUN = "mailgun", "Mailgun"
    POSTMARK = "postmark", "Postmark"
    SENDGRID = "sendgrid", "SendGrid"
    BREVO = "brevo", "Brevo"


class SmtpSecurity(models.TextChoices):
    STARTTLS = "starttls", _("STARTTLS (port 587)")
    SSL = "ssl", _("TLS from the start (port 465)")
    NONE = "none", _("None (a local relay only)")


class EmailSettings(models.Model):
    """How a project sends email. One row per project, created on first visit of the settings page."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="email_settings", verbose_name=_("project")
    )
    backend = models.CharField(
        _("backend"), max_length=20, choices=EmailBackend.choices, default=EmailBackend.MAILBOX
    )
    smtp_host = models.CharField(_("SMTP host"), max_length=255, blank=True)
    smtp_port = models.PositiveIntegerField(_("SMTP port"), default=587)
    smtp_security = models.CharField(
        _("SMTP security"), max_length=10, choices=SmtpSecurity.choices, default=SmtpSecurity.STARTTLS
    )
    smtp_username = models.CharField(_("SMTP user name"), max_length=255, blank=True)
    smtp_password = EncryptedTextField(
        _("SMTP password"), blank=True, help_text=_("Encrypted at rest; never shown again.")
    )
    # An ESP's settings as JSON ({"api_key": ..., "sender_domain": ...}), encrypted at rest.
    provider_settings = EncryptedTextField(_("provider settings"), blank=True, default="")
    from_email = models.EmailField(_("from address"), blank=True)
    from_name = models.CharField(_("from name"), max_length=200, blank=True)
    reply_to = models.EmailField(_("Reply-To address"), blank=True)
    # The secret in the URL of the provider's tracking webhook (anymail's basic auth).
    webhook_secret = models.CharField(_("webhook secret"), max_length=64, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("email settings")
        verbose_name_plural = _("email settings")

    def __str__(self) -> str:
        return f"Email settings of {self.project}"


class EmailTemplate(models.Model):
    """Subject, preheader, HTML and text bodies, each with Liquid bindings."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="email_templates", verbose_name=_("project")
    )
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=200)
    # Marketing emails need email opt-in and carry the unsubscribe link and headers; transactional
    # ones (receipts, password resets) need only "not opted out" and skip caps and quiet hours.
    marketing = models.BooleanField(_("marketing"), default=True)
    subject = models.CharField(_("subject"), max_length=998)
    preheader = models.CharField(_("preheader"), max_length=255, blank=True)
    html = models.TextField(_("HTML"), blank=True)
    text = models.TextField(_("text"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="email_template_unique_name")]
        ordering = ["name"]
        verbose_name = _("email template")
        verbose_name_plural = _("email templates")

    def __str__(self) -> str:
        return self.name


class MailboxMessage(models.Model):
    """An email as the mailbox backend caught it (embedded mode): the panel shows it as sent."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="mailbox", verbose_name=_("project")
    )
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    message = models.ForeignKey(
        Message,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("message"),
    )
    from_email = models.CharField(_("from"), max_length=400)
    to = models.CharField(_("to"), max_length=400)
    subject = models.CharField(_("subject"), max_length=998)
    html = models.TextField(_("HTML"), blank=True)
    text = models.TextField(_("text"), blank=True)
    headers = models.JSONField(_("headers"), default=dict, blank=True)
    # A test send to a typed address from the template page: no outbox row, no tracking.
    test = models.BooleanField(_("test"), default=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["project", "-created_at"], name="mailbox_project_time")]
        verbose_name = _("mailbox email")
        verbose_name_plural = _("mailbox emails")

    def __str__(self) -> str:
        return f"{self.subject} to {self.to}"
