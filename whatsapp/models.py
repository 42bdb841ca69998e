"""The connection to Meta: accounts (with encrypted secrets), synced templates, raw webhook deliveries."""

from __future__ import annotations

import secrets
import uuid

from django.db import models

from controlpanel.fields import EncryptedTextField
from controlpanel.models import Project, TenantQuerySet

META_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_OPT_OUT_KEYWORDS = ["STOP", "STOPP", "ABMELDEN", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"]
DEFAULT_OPT_IN_KEYWORDS = ["START", "ANMELDEN", "SUBSCRIBE"]


def new_verify_token() -> str:
    return secrets.token_urlsafe(24)


class AccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    # Account-level errors (token, payment, policy) stop all sending until someone acts.
    SUSPENDED = "suspended", "Sending stopped"


class WhatsAppAccount(models.Model):
    """One business phone number of a WhatsApp Business Account, connected to a project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="whatsapp_accounts")
    # Also the webhook URL's id: /webhooks/whatsapp/<public_id>/
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    waba_id = models.CharField("WABA id", max_length=40)
    phone_number_id = models.CharField(max_length=40, unique=True)
    display_phone_number = models.CharField(max_length=32, blank=True)
    verified_name = models.CharField(max_length=200, blank=True)
    access_token = EncryptedTextField(help_text="System-user access token; encrypted at rest.")
    app_secret = EncryptedTextField(help_text="Meta app secret, signs webhooks; encrypted at rest.")
    verify_token = models.CharField(max_length=64, default=new_verify_token)
    graph_version = models.CharField(max_length=8, default="v23.0")
    base_url = models.URLField(default=META_GRAPH_URL, help_text="Meta's Graph API, or the simulator's.")
    throughput_mps = models.PositiveIntegerField(default=80, help_text="Messages per second (80 to 1,000).")
    messaging_tier = models.CharField(max_length=40, blank=True)
    quality_rating = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=10, choices=AccountStatus.choices, default=AccountStatus.ACTIVE)
    status_reason = models.TextField(blank=True)
    opt_out_keywords = models.JSONField(default=list, blank=True)
    opt_in_keywords = models.JSONField(default=list, blank=True)
    opt_out_confirmation = models.CharField(
        max_length=1000,
        blank=True,
        default="You will not get marketing messages from us any more. Reply START to get them again.",
        help_text="Sent after an opt-out keyword or stop button; empty sends nothing.",
    )
    opt_in_confirmation = models.CharField(
        max_length=1000,
        blank=True,
        default="Welcome back! You will get our news on WhatsApp again. Reply STOP to stop them.",
        help_text="Sent after an opt-in keyword; empty sends nothing.",
    )
    last_webhook_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["display_phone_number"]
        verbose_name = "WhatsApp account"

    def __str__(self) -> str:
        return self.display_phone_number or self.phone_number_id

    @property
    def graph_base(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.graph_version}"

    def opt_out_words(self) -> set[str]:
        return {w.strip().upper() for w in (self.opt_out_keywords or DEFAULT_OPT_OUT_KEYWORDS) if w.strip()}

    def opt_in_words(self) -> set[str]:
        return {w.strip().upper() for w in (self.opt_in_keywords or DEFAULT_OPT_IN_KEYWORDS) if w.strip()}


class TemplateStatus(models.TextChoices):
    APPROVED = "APPROVED", "Approved"
    PENDING = "PENDING", "Pending review"
    REJECTED = "REJECTED", "Rejected"
    PAUSED = "PAUSED", "Paused"
    DISABLED = "DISABLED", "Disabled"
    IN_APPEAL = "IN_APPEAL", "In appeal"
    PENDING_DELETION = "PENDING_DELETION", "Pending deletion"
    DELETED = "DELETED", "Deleted"
    FLAGGED = "FLAGGED", "Flagged"
    REINSTATED = "REINSTATED", "Reinstated"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED", "Limit exceeded"
    ARCHIVED = "ARCHIVED", "Archived"
    LOCKED = "LOCKED", "Locked"


class TemplateCategory(models.TextChoices):
    MARKETING = "MARKETING", "Marketing"
    UTILITY = "UTILITY", "Utility"
    AUTHENTICATION = "AUTHENTICATION", "Authentication"


class MessageTemplate(models.Model):
    """A template as Meta knows it, synced from the WABA (and updated by status webhooks)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(WhatsAppAccount, on_delete=models.CASCADE, related_name="templates")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    meta_id = models.CharField(max_length=40, blank=True)
    name = models.CharField(max_length=512)
    language = models.CharField(max_length=16)
    category = models.CharField(max_length=20)
    status = models.CharField(max_length=20)
    quality_score = models.CharField(max_length=10, blank=True)
    parameter_format = models.CharField(max_length=12, default="POSITIONAL")
    components = models.JSONField(default=list)
    rejected_reason = models.CharField(max_length=200, blank=True)
    rejection_detail = models.TextField(blank=True)
    previous_category = models.CharField(max_length=20, blank=True)
    # Fields Meta sent that we do not model: kept, never fatal.
    extra = models.JSONField(default=dict, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "name", "language"], name="template_unique_name_language"
            )
        ]
        ordering = ["name", "language"]

    def __str__(self) -> str:
        return f"{self.name} ({self.language})"


class WebhookDelivery(models.Model):
    """A raw webhook POST exactly as received, stored before we answer 200.

    Deduplicated by the SHA-256 of the body per account: Meta retries identical bodies.
    Processing happens later in an actor and is idempotent.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(WhatsAppAccount, on_delete=models.CASCADE, related_name="deliveries")
    body_sha256 = models.CharField(max_length=64)
    body = models.TextField()
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    # Not Meta's shape (or not JSON): processed without effect, never retried, kept for admins.
    malformed = models.BooleanField(default=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "body_sha256"], name="delivery_unique_body")
        ]
        indexes = [
            models.Index(fields=["project", "-received_at"], name="delivery_project_time"),
            # The work queue: an account's unprocessed deliveries in arrival order, read by LIMIT.
            models.Index(
                fields=["account", "received_at", "id"],
                condition=models.Q(processed_at__isnull=True),
                name="delivery_queue",
            ),
            # The settings page counts and lists an account's malformed deliveries: a few rows
            # among millions.
            models.Index(
                fields=["account", "-received_at"],
                condition=models.Q(malformed=True),
                name="delivery_malformed",
            ),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"webhook {self.body_sha256[:12]} @ {self.received_at:%Y-%m-%d %H:%M:%S}"


class PhoneNumberEvent(models.Model):
    """Account-level notices from Meta (quality, tier, account updates), for the settings page."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(WhatsAppAccount, on_delete=models.CASCADE, related_name="notices")
    field = models.CharField(max_length=60)
    summary = models.CharField(max_length=300)
    payload = models.JSONField(default=dict)
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["account", "fingerprint"], name="notice_unique_content")
        ]

    def __str__(self) -> str:
        return self.summary
