"""The connection to Meta: accounts (with encrypted secrets), synced templates, raw webhook deliveries."""

from __future__ import annotations

import secrets
import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from controlpanel.fields import EncryptedTextField
from controlpanel.models import Project, TenantQuerySet

from .keywords import fold as fold_keyword

META_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_OPT_OUT_KEYWORDS = ["STOP", "STOPP", "ABMELDEN", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"]
DEFAULT_OPT_IN_KEYWORDS = ["START", "ANMELDEN", "SUBSCRIBE"]


def new_verify_token() -> str:
    return secrets.token_urlsafe(24)


class AccountStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    # Account-level errors (token, payment, policy) stop all sending until someone acts.
    SUSPENDED = "suspended", _("Sending stopped")


class WhatsAppAccount(models.Model):
    """One business phone number of a WhatsApp Business Account, connected to a project."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="whatsapp_accounts", verbose_name=_("project")
    )
    # Also the webhook URL's id: /webhooks/whatsapp/<public_id>/
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    waba_id = models.CharField(_("WABA ID"), max_length=40)
    phone_number_id = models.CharField(_("phone number ID"), max_length=40, unique=True)
    display_phone_number = models.CharField(_("phone number"), max_length=32, blank=True)
    verified_name = models.CharField(_("verified name"), max_length=200, blank=True)
    access_token = EncryptedTextField(
        _("access token"), help_text=_("System-user access token; encrypted at rest.")
    )
    app_secret = EncryptedTextField(
        _("app secret"), help_text=_("Meta app secret, signs webhooks; encrypted at rest.")
    )
    verify_token = models.CharField(_("verify token"), max_length=64, default=new_verify_token)
    graph_version = models.CharField(_("Graph API version"), max_length=8, default="v23.0")
    base_url = models.URLField(
        _("base URL"), default=META_GRAPH_URL, help_text=_("Meta's Graph API, or the simulator's.")
    )
    throughput_mps = models.PositiveIntegerField(
        _("throughput"), default=80, help_text=_("Messages per second (80 to 1,000).")
    )
    messaging_tier = models.CharField(_("messaging tier"), max_length=40, blank=True)
    quality_rating = models.CharField(_("quality rating"), max_length=20, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=AccountStatus.choices, default=AccountStatus.ACTIVE
    )
    status_reason = models.TextField(_("status reason"), blank=True)
    opt_out_keywords = models.JSONField(_("opt-out keywords"), default=list, blank=True)
    opt_in_keywords = models.JSONField(_("opt-in keywords"), default=list, blank=True)
    last_webhook_at = models.DateTimeField(_("last webhook"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["display_phone_number"]
        verbose_name = _("WhatsApp account")
        verbose_name_plural = _("WhatsApp accounts")

    def __str__(self) -> str:
        return self.display_phone_number or self.phone_number_id

    @property
    def graph_base(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.graph_version}"

    def opt_out_words(self) -> set[str]:
        """The words that opt a sender out, folded (``whatsapp.keywords``) as an inbound text is."""
        return _folded(self.opt_out_keywords or DEFAULT_OPT_OUT_KEYWORDS)

    def opt_in_words(self) -> set[str]:
        """The words that opt a sender back in, folded as an inbound text is."""
        return _folded(self.opt_in_keywords or DEFAULT_OPT_IN_KEYWORDS)


def _folded(words: list[str]) -> set[str]:
    return {folded for folded in map(fold_keyword, words) if folded}


class TemplateStatus(models.TextChoices):
    APPROVED = "APPROVED", _("Approved")
    PENDING = "PENDING", _("Pending review")
    REJECTED = "REJECTED", _("Rejected")
    PAUSED = "PAUSED", _("Paused")
    DISABLED = "DISABLED", _("Disabled")
    IN_APPEAL = "IN_APPEAL", _("In appeal")
    PENDING_DELETION = "PENDING_DELETION", _("Pending deletion")
    DELETED = "DELETED", _("Deleted")
    FLAGGED = "FLAGGED", _("Flagged")
    REINSTATED = "REINSTATED", _("Reinstated")
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED", _("Limit exceeded")
    ARCHIVED = "ARCHIVED", _("Archived")
    LOCKED = "LOCKED", _("Locked")

    @classmethod
    def label_of(cls, status: str) -> str:
        """A template's status as people read it. ``MessageTemplate.status`` has no choices (Meta
        adds statuses): a status this list does not know reads as Meta's code in words."""
        return str(cls(status).label) if status in cls.values else status.replace("_", " ").capitalize()


class TemplateCategory(models.TextChoices):
    MARKETING = "MARKETING", _("Marketing")
    UTILITY = "UTILITY", _("Utility")
    AUTHENTICATION = "AUTHENTICATION", _("Authentication")


class MessageTemplate(models.Model):
    """A template as Meta knows it, synced from the WABA (and updated by status webhooks)."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", verbose_name=_("project")
    )
    account = models.ForeignKey(
        WhatsAppAccount, on_delete=models.CASCADE, related_name="templates", verbose_name=_("account")
    )
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    meta_id = models.CharField(_("Meta ID"), max_length=40, blank=True)
    name = models.CharField(_("name"), max_length=512)
    language = models.CharField(_("language"), max_length=16)
    category = models.CharField(_("category"), max_length=20)
    status = models.CharField(_("status"), max_length=20)
    quality_score = models.CharField(_("quality score"), max_length=10, blank=True)
    parameter_format = models.CharField(_("parameter format"), max_length=12, default="POSITIONAL")
    components = models.JSONField(_("components"), default=list)
    rejected_reason = models.CharField(_("rejected reason"), max_length=200, blank=True)
    rejection_detail = models.TextField(_("rejection detail"), blank=True)
    previous_category = models.CharField(_("previous category"), max_length=20, blank=True)
    # Fields Meta sent that we do not model: kept, never fatal.
    extra = models.JSONField(_("extra"), default=dict, blank=True)
    synced_at = models.DateTimeField(_("synced"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "name", "language"], name="template_unique_name_language"
            )
        ]
        ordering = ["name", "language"]
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")

    def __str__(self) -> str:
        return f"{self.name} ({self.language})"


class WebhookDelivery(models.Model):
    """A raw webhook POST exactly as received, stored before we answer 200.

    Deduplicated by the SHA-256 of the body per account: Meta retries identical bodies.
    Processing happens later in an actor and is idempotent.
    """

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", verbose_name=_("project")
    )
    account = models.ForeignKey(
        WhatsAppAccount, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("account")
    )
    body_sha256 = models.CharField(_("body SHA-256"), max_length=64)
    body = models.TextField(_("body"))
    received_at = models.DateTimeField(_("received"))
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error = models.TextField(_("error"), blank=True)
    # Not Meta's shape (or not JSON): processed without effect, never retried, kept for admins.
    malformed = models.BooleanField(_("malformed"), default=False)

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
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")

    def __str__(self) -> str:
        return f"webhook {self.body_sha256[:12]} @ {self.received_at:%Y-%m-%d %H:%M:%S}"


class PhoneNumberEvent(models.Model):
    """Account-level notices from Meta (quality, tier, account updates), for the settings page."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", verbose_name=_("project")
    )
    account = models.ForeignKey(
        WhatsAppAccount, on_delete=models.CASCADE, related_name="notices", verbose_name=_("account")
    )
    field = models.CharField(_("field"), max_length=60)
    summary = models.CharField(_("summary"), max_length=300)
    payload = models.JSONField(_("payload"), default=dict)
    fingerprint = models.CharField(_("fingerprint"), max_length=64)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["account", "fingerprint"], name="notice_unique_content")
        ]
        verbose_name = _("notice from Meta")
        verbose_name_plural = _("notices from Meta")

    def __str__(self) -> str:
        return self.summary


class AutomaticTextKind(models.TextChoices):
    OPT_OUT_CONFIRMATION = "opt_out_confirmation", _("Opt-out confirmation")
    OPT_IN_CONFIRMATION = "opt_in_confirmation", _("Opt-in confirmation")


class AutomaticText(models.Model):
    """A project's own wording of an automatic WhatsApp text in one language.

    No row: the built-in default of that language (whatsapp.automatic_texts.DEFAULTS). A row with
    an empty text: send nothing in that language. Written only through whatsapp.automatic_texts.
    """

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", verbose_name=_("project")
    )
    kind = models.CharField(_("kind"), max_length=32, choices=AutomaticTextKind.choices)
    # Normalised (campaigns.languages.normalize): "de", "en", "pt_br".
    language = models.CharField(_("language"), max_length=16)
    text = models.CharField(_("text"), max_length=1000, blank=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["language", "kind"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "kind", "language"], name="automatic_text_unique_language"
            )
        ]
        verbose_name = _("automatic text")
        verbose_name_plural = _("automatic texts")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.language})"
