"""The email channel: a project's sending settings, its email templates, and the embedded mailbox."""

from __future__ import annotations

import uuid

from django.db import models

from campaigns.models import Message
from controlpanel.fields import EncryptedTextField
from controlpanel.models import Project, TenantQuerySet


class EmailBackend(models.TextChoices):
    # The embedded default: nothing leaves the machine; every email lands in the in-panel mailbox.
    MAILBOX = "mailbox", "In-panel mailbox (nothing is sent)"
    SMTP = "smtp", "SMTP server"
    # django-anymail's ESPs; their API keys go in ``provider_settings`` (encrypted).
    AMAZON_SES = "amazon_ses", "Amazon SES"
    MAILGUN = "mailgun", "Mailgun"
    POSTMARK = "postmark", "Postmark"
    SENDGRID = "sendgrid", "SendGrid"
    BREVO = "brevo", "Brevo"


class SmtpSecurity(models.TextChoices):
    STARTTLS = "starttls", "STARTTLS (port 587)"
    SSL = "ssl", "TLS from the start (port 465)"
    NONE = "none", "None (a local relay only)"


class EmailSettings(models.Model):
    """How a project sends email. One row per project, created on first visit of the settings page."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="email_settings")
    backend = models.CharField(max_length=20, choices=EmailBackend.choices, default=EmailBackend.MAILBOX)
    smtp_host = models.CharField(max_length=255, blank=True)
    smtp_port = models.PositiveIntegerField(default=587)
    smtp_security = models.CharField(
        max_length=10, choices=SmtpSecurity.choices, default=SmtpSecurity.STARTTLS
    )
    smtp_username = models.CharField(max_length=255, blank=True)
    smtp_password = EncryptedTextField(blank=True, help_text="Encrypted at rest; never shown again.")
    # An ESP's settings as JSON ({"api_key": ..., "sender_domain": ...}), encrypted at rest.
    provider_settings = EncryptedTextField(blank=True, default="")
    from_email = models.EmailField(blank=True)
    from_name = models.CharField(max_length=200, blank=True)
    reply_to = models.EmailField(blank=True)
    # The secret in the URL of the provider's tracking webhook (anymail's basic auth).
    webhook_secret = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Email settings of {self.project}"


class EmailTemplate(models.Model):
    """Subject, preheader, HTML and text bodies, each with Liquid bindings."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="email_templates")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    # Marketing emails need email opt-in and carry the unsubscribe link and headers; transactional
    # ones (receipts, password resets) need only "not opted out" and skip caps and quiet hours.
    marketing = models.BooleanField(default=True)
    subject = models.CharField(max_length=998)
    preheader = models.CharField(max_length=255, blank=True)
    html = models.TextField(blank=True)
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="email_template_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MailboxMessage(models.Model):
    """An email as the mailbox backend caught it (embedded mode): the panel shows it as sent."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="mailbox")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    from_email = models.CharField(max_length=400)
    to = models.CharField(max_length=400)
    subject = models.CharField(max_length=998)
    html = models.TextField(blank=True)
    text = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    # A test send to a typed address from the template page: no outbox row, no tracking.
    test = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["project", "-created_at"], name="mailbox_project_time")]

    def __str__(self) -> str:
        return f"{self.subject} to {self.to}"
