"""The outbox: one Message row per message to one subscriber on one channel.

Campaigns and journeys create rows; sender actors claim and send them; status
webhooks move them forward. Each row keeps its history of state changes.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from controlpanel.models import Project, TenantQuerySet
from subscribers.models import Segment, Subscriber
from whatsapp.models import MessageTemplate, TemplateCategory, WhatsAppAccount


class Channel(models.TextChoices):
    WHATSAPP = "whatsapp", _("WhatsApp")
    EMAIL = "email", _("Email")
    PUSH = "push", _("Push")


class MessageStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SENDING = "sending", pgettext_lazy("status", "Sending")
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    READ = "read", pgettext_lazy("message status", "Read")
    FAILED = "failed", _("Failed")
    SKIPPED = "skipped", _("Skipped")
    # Sent or not? A crash between the POST to Meta and our commit; a status webhook settles it.
    UNKNOWN = "unknown", _("Unknown")


# Statuses only move forward along this order; failed and skipped are terminal.
PROGRESS = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.UNKNOWN: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.READ: 4,
}


class MessageKind(models.TextChoices):
    TEMPLATE = "template", _("Template")
    TEXT = "text", _("Text")


class CampaignPurpose(models.TextChoices):
    PROMOTION = "promotion", _("Promotion")
    TRANSACTIONAL = "transactional", _("Transactional notice")
    REMINDER = "reminder", _("Service reminder")
    VERIFICATION = "verification", _("Verification code")


# The Meta template category each purpose must use (a promotion in a utility template is a policy breach).
PURPOSE_CATEGORY = {
    CampaignPurpose.PROMOTION: TemplateCategory.MARKETING,
    CampaignPurpose.TRANSACTIONAL: TemplateCategory.UTILITY,
    CampaignPurpose.REMINDER: TemplateCategory.UTILITY,
    CampaignPurpose.VERIFICATION: TemplateCategory.AUTHENTICATION,
}


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SCHEDULED = "scheduled", _("Scheduled")  # launched; the audience is snapshotted at the scheduled time
    RUNNING = "running", pgettext_lazy("status", "Sending")
    PAUSED = "paused", _("Paused")  # by a person, or by itself on an account-level error (status_reason)
    COMPLETED = "completed", _("Completed")  # every recipient is terminal
    CANCELLED = "cancelled", _("Cancelled")


class AudienceKind(models.TextChoices):
    SEGMENT = "segment", _("A saved segment")
    RULE = "rule", _("A rule")
    EVERYONE = "everyone", _("Everyone opted in")
    LIST = "list", _("An uploaded list of phones")


class ScheduleKind(models.TextChoices):
    NOW = "now", _("Now")
    AT = "at", _("At a date and time")
    LOCAL_TIME = "local_time", _("At a local time in each subscriber's time zone")


class PassedLocalTime(models.TextChoices):
    SEND_NOW = "send_now", _("Send right away")
    NEXT_DAY = "next_day", _("Send at that time the next day")
    SKIP = "skip", _("Skip those subscribers")


class CampaignQuerySet(TenantQuerySet):
    pass


class Campaign(models.Model):
    """A template broadcast to an audience. Launch snapshots its recipients into the outbox."""

    project = models.ForeignKey(
        Project, verbose_name=_("project"), on_delete=models.CASCADE, related_name="campaigns"
    )
    public_id = models.UUIDField(verbose_name=_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(verbose_name=_("name"), max_length=200)
    purpose = models.CharField(
        verbose_name=_("purpose"),
        max_length=20,
        choices=CampaignPurpose.choices,
        default=CampaignPurpose.PROMOTION,
    )
    status = models.CharField(
        verbose_name=_("status"), max_length=12, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    status_reason = models.TextField(
        verbose_name=_("status reason"), blank=True, help_text=_("Why it paused itself, in plain words.")
    )
    account = models.ForeignKey(
        WhatsAppAccount,
        verbose_name=_("account"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="campaigns",
    )
    # The template by name; one language, or a language group (the same name in several languages,
    # each recipient getting the one matching their language, else the fallback).
    template_name = models.CharField(verbose_name=_("template name"), max_length=512, blank=True)
    languages = models.JSONField(
        verbose_name=_("languages"), default=list, blank=True, help_text=_('e.g. ["de", "en_US"]')
    )
    fallback_language = models.CharField(verbose_name=_("fallback language"), max_length=16, blank=True)
    # What launch saw of each language's template: {"de": {"id": 1, "category": ..., "components": [...],
    # "parameter_format": ...}}. Sending uses the snapshot, so editing or deleting a template later
    # does not break a running campaign.
    templates_snapshot = models.JSONField(verbose_name=_("templates snapshot"), default=dict, blank=True)
    # Liquid per placeholder, keyed like policy.template_parameters: {"body": {"1": "{{ tags.first_name }}"}}.
    bindings = models.JSONField(verbose_name=_("bindings"), default=dict, blank=True)
    header_media_url = models.URLField(verbose_name=_("header media URL"), max_length=2000, blank=True)
    audience_kind = models.CharField(
        verbose_name=_("audience kind"),
        max_length=10,
        choices=AudienceKind.choices,
        default=AudienceKind.SEGMENT,
    )
    segment = models.ForeignKey(
        Segment, verbose_name=_("segment"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rule = models.JSONField(
        verbose_name=_("audience rule"),
        default=dict,
        blank=True,
        help_text=_("The audience rule (the segment's, at launch)."),
    )
    schedule_kind = models.CharField(
        verbose_name=_("schedule kind"), max_length=12, choices=ScheduleKind.choices, default=ScheduleKind.NOW
    )
    scheduled_at = models.DateTimeField(verbose_name=_("scheduled at"), null=True, blank=True)
    local_time = models.TimeField(verbose_name=_("local time"), null=True, blank=True)
    fallback_time_zone = models.CharField(verbose_name=_("fallback time zone"), max_length=64, blank=True)
    passed_local_time = models.CharField(
        verbose_name=_("passed local time"),
        max_length=10,
        choices=PassedLocalTime.choices,
        default=PassedLocalTime.NEXT_DAY,
    )
    throttle_mps = models.PositiveIntegerField(
        verbose_name=_("messages per second"),
        null=True,
        blank=True,
        help_text=_("Messages per second; empty means the number's limit."),
    )
    audience_size = models.PositiveIntegerField(
        verbose_name=_("audience size"), null=True, blank=True, help_text=_("Recipients at launch.")
    )
    estimated_cost = models.DecimalField(
        verbose_name=_("estimated cost"), max_digits=14, decimal_places=4, null=True, blank=True
    )
    currency = models.CharField(verbose_name=_("currency"), max_length=3, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)
    launched_at = models.DateTimeField(verbose_name=_("launched at"), null=True, blank=True)
    snapshot_at = models.DateTimeField(
        verbose_name=_("snapshot at"),
        null=True,
        blank=True,
        help_text=_("When the outbox rows were written."),
    )
    paused_at = models.DateTimeField(verbose_name=_("paused at"), null=True, blank=True)
    finished_at = models.DateTimeField(verbose_name=_("finished at"), null=True, blank=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        indexes = [
            models.Index(fields=["project", "-created_at"], name="campaign_project_time"),
            models.Index(
                fields=["status", "scheduled_at"],
                condition=Q(status__in=["scheduled", "running"]),
                name="campaign_active",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def category(self) -> str:
        return PURPOSE_CATEGORY[CampaignPurpose(self.purpose)]

    @property
    def marketing(self) -> bool:
        return self.category == TemplateCategory.MARKETING


class CampaignRecipient(models.Model):
    """A phone or external id given for a campaign: an uploaded list, or per-recipient values by API.

    ``values`` become ``{{ values.<name> }}`` in bindings. With the LIST audience these rows are the
    audience; with any other audience they only add values to whoever is in it.
    """

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="given_recipients"
    )
    key = models.CharField(
        verbose_name=_("phone or external ID"), max_length=200, help_text=_("E.164 phone, or an external id")
    )
    values = models.JSONField(verbose_name=_("values"), default=dict, blank=True)

    class Meta:
        verbose_name = _("campaign recipient")
        verbose_name_plural = _("campaign recipients")
        constraints = [
            models.UniqueConstraint(fields=["campaign", "key"], name="campaign_recipient_unique_key")
        ]

    def __str__(self) -> str:
        return self.key


class SendingPolicy(models.Model):
    """Per-project limits on marketing: frequency cap and quiet hours (transactional bypasses both)."""

    project = models.OneToOneField(
        Project, verbose_name=_("project"), on_delete=models.CASCADE, related_name="sending_policy"
    )
    cap_messages = models.PositiveIntegerField(
        verbose_name=_("cap messages"),
        null=True,
        blank=True,
        help_text=_("At most this many marketing messages per subscriber..."),
    )
    cap_days = models.PositiveIntegerField(
        verbose_name=_("cap days"), default=7, help_text=_("...in this many days (campaigns and journeys).")
    )
    quiet_start = models.TimeField(
        verbose_name=_("quiet start"),
        null=True,
        blank=True,
        help_text=_("Quiet hours start (subscriber's time)."),
    )
    quiet_end = models.TimeField(
        verbose_name=_("quiet end"),
        null=True,
        blank=True,
        help_text=_("Quiet hours end; held messages go then."),
    )
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("sending policy")
        verbose_name_plural = _("sending policies")

    def __str__(self) -> str:
        return f"Sending policy of {self.project}"


class RateCardEntry(models.Model):
    """Meta's price of one delivered template message, per category and recipient country.

    Seeded with Meta's published rates, editable per project. Country "" is the "rest of world" row.
    """

    project = models.ForeignKey(
        Project, verbose_name=_("project"), on_delete=models.CASCADE, related_name="rate_card"
    )
    category = models.CharField(verbose_name=_("category"), max_length=20)
    country = models.CharField(verbose_name=_("country"), max_length=2, blank=True)
    price = models.DecimalField(verbose_name=_("price"), max_digits=10, decimal_places=4)
    currency = models.CharField(verbose_name=_("currency"), max_length=3, default="USD")
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("rate card entry")
        verbose_name_plural = _("rate card entries")
        constraints = [
            models.UniqueConstraint(fields=["project", "category", "country"], name="rate_card_unique_entry")
        ]
        ordering = ["category", "country"]

    def __str__(self) -> str:
        return f"{self.category} {self.country or 'other'}: {self.price} {self.currency}"


class MessageQuerySet(TenantQuerySet):
    pass


class Message(models.Model):
    """One outbound message to one subscriber on one channel."""

    # The outbox takes a million rows in one fan-out, and every index costs each of them: project,
    # subscriber and campaign need no index of their own, because a composite index leads with
    # each (message_project_time, message_subscriber_time, message_campaign_status).
    project = models.ForeignKey(
        Project, verbose_name=_("project"), on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    public_id = models.UUIDField(verbose_name=_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    subscriber = models.ForeignKey(
        Subscriber,
        verbose_name=_("subscriber"),
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,
    )
    campaign = models.ForeignKey(
        Campaign,
        verbose_name=_("campaign"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,
    )
    channel = models.CharField(
        verbose_name=_("channel"), max_length=10, choices=Channel.choices, default=Channel.WHATSAPP
    )
    status = models.CharField(
        verbose_name=_("status"), max_length=10, choices=MessageStatus.choices, default=MessageStatus.QUEUED
    )
    account = models.ForeignKey(
        WhatsAppAccount,
        verbose_name=_("account"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    kind = models.CharField(
        verbose_name=_("kind"), max_length=10, choices=MessageKind.choices, default=MessageKind.TEMPLATE
    )
    template = models.ForeignKey(
        MessageTemplate,
        verbose_name=_("template"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Snapshot of what was sent: the template may change or vanish later.
    template_name = models.CharField(verbose_name=_("template name"), max_length=512, blank=True)
    template_language = models.CharField(verbose_name=_("template language"), max_length=16, blank=True)
    components = models.JSONField(verbose_name=_("components"), default=list, blank=True)
    body = models.TextField(
        verbose_name=_("body"),
        blank=True,
        help_text=_("Text message body, or the template rendered for display."),
    )
    marketing = models.BooleanField(
        verbose_name=_("marketing"), default=False, help_text=_("Marketing messages need WhatsApp opt-in.")
    )
    # Unique through Meta.constraints, not unique=True: that would add a second, pattern-ops index
    # for LIKE searches, which nothing runs on a wamid. NULL until Meta answers: many rows have none,
    # and "" would collide in the unique index.
    wamid = models.CharField(  # noqa: DJ001
        verbose_name=_("WhatsApp message ID"), max_length=200, null=True, blank=True
    )
    # Email and push: what goes out, rendered when the row is written (Liquid done), so the sender
    # only adds tracking and transport: email {"subject", "preheader", "html", "text", "template"},
    # push {"title", "body", "image", "link", "data", "template"} (campaigns/channels.py).
    # db_default as well: raw INSERTs (benchmarks, the fan-out's column list) may leave them out.
    content = models.JSONField(
        verbose_name=_("content"),
        default=dict,
        db_default=models.Value({}, output_field=models.JSONField()),
        blank=True,
    )
    # The provider's id of an email or push (ESP message id, FCM message name): its webhooks name it.
    provider_message_id = models.CharField(
        verbose_name=_("provider message id"), max_length=300, blank=True, default="", db_default=""
    )
    opened_at = models.DateTimeField(
        verbose_name=_("opened at"),
        null=True,
        blank=True,
        help_text=_("First open (email pixel, push opened)."),
    )
    idempotency_key = models.CharField(  # noqa: DJ001
        verbose_name=_("idempotency key"), max_length=200, null=True, blank=True
    )
    # SHA-256 of the normalised API request that used idempotency_key: the same key with another
    # request is refused instead of answered with a message that does not match it.
    request_hash = models.CharField(verbose_name=_("request hash"), max_length=64, blank=True, default="")
    reason = models.TextField(
        verbose_name=_("reason"), blank=True, help_text=_("Why it was skipped or failed, in plain words.")
    )
    error_code = models.IntegerField(verbose_name=_("error code"), null=True, blank=True)
    error_title = models.CharField(verbose_name=_("error title"), max_length=300, blank=True)
    error_details = models.TextField(verbose_name=_("error details"), blank=True)
    pricing_category = models.CharField(verbose_name=_("pricing category"), max_length=40, blank=True)
    pricing_type = models.CharField(verbose_name=_("pricing type"), max_length=40, blank=True)
    billable = models.BooleanField(verbose_name=_("billable"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(verbose_name=_("attempts"), default=0)
    # Not before: a schedule, a local time, quiet hours, a 131049 retry in 24 h, a backoff.
    send_after = models.DateTimeField(verbose_name=_("send after"), null=True, blank=True)
    # Per-recipient values for bindings ({{ values.x }}), from the API or a campaign's given recipients.
    values = models.JSONField(verbose_name=_("values"), default=dict, blank=True)
    replied_at = models.DateTimeField(
        verbose_name=_("replied at"),
        null=True,
        blank=True,
        help_text=_("First inbound within 72 h of the send."),
    )
    clicked_at = models.DateTimeField(
        verbose_name=_("clicked at"), null=True, blank=True, help_text=_("First quick-reply button press.")
    )
    history = models.JSONField(verbose_name=_("history"), default=list, blank=True)
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)
    sending_at = models.DateTimeField(verbose_name=_("sending at"), null=True, blank=True)
    sent_at = models.DateTimeField(verbose_name=_("sent at"), null=True, blank=True)
    delivered_at = models.DateTimeField(verbose_name=_("delivered at"), null=True, blank=True)
    read_at = models.DateTimeField(verbose_name=_("read at"), null=True, blank=True)
    failed_at = models.DateTimeField(verbose_name=_("failed at"), null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        constraints = [
            # Partial: campaign and journey rows carry no key and so stay out of this index.
            models.UniqueConstraint(
                fields=["project", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="message_unique_idempotency_key",
            ),
            # Not partial: status webhooks look rows up by lists of wamids, which PostgreSQL cannot
            # always prove non-null to use a partial index.
            models.UniqueConstraint(fields=["wamid"], name="message_unique_wamid"),
            # A launch re-run adds nobody twice.
            models.UniqueConstraint(
                fields=["campaign", "subscriber"],
                condition=Q(campaign__isnull=False),
                name="message_unique_campaign_subscriber",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "created_at"], name="message_project_time"),
            models.Index(fields=["subscriber", "-created_at"], name="message_subscriber_time"),
            models.Index(
                fields=["status", "sending_at"], condition=Q(status="sending"), name="message_sending"
            ),
            # What the dispatcher and the sweeps read: queued rows due now, per account.
            models.Index(
                fields=["account", "send_after", "id"], condition=Q(status="queued"), name="message_queued"
            ),
            # The dispatcher's scans: a running campaign's due rows, and single sends per account, each
            # a range on send_after that paused campaigns' or held rows do not fill.
            models.Index(
                fields=["campaign", "send_after", "id"],
                condition=Q(status="queued"),
                name="message_campaign_due",
            ),
            models.Index(
                fields=["account", "send_after", "id"],
                condition=Q(status="queued", campaign__isnull=True),
                name="message_single_due",
            ),
            models.Index(fields=["status"], condition=Q(status="unknown"), name="message_unknown"),
            # The email and push dispatcher's scan: due queued rows of those channels (no account).
            models.Index(
                fields=["channel", "send_after", "id"],
                condition=Q(status="queued") & ~Q(channel="whatsapp"),
                name="message_channel_due",
            ),
            # Provider webhooks (anymail's tracking, FCM) find their message by the provider's id.
            models.Index(
                fields=["project", "provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="message_provider_id",
            ),
            models.Index(fields=["campaign", "status"], name="message_campaign_status"),
            # Failures by code and skips by reason on the campaign page: index-only scans of the
            # failed / skipped rows (a few percent of a campaign), not their heap pages.
            models.Index(
                fields=["campaign", "error_code"],
                include=["project", "error_title", "reason"],
                condition=Q(status="failed"),
                name="message_campaign_failed",
            ),
            models.Index(
                fields=["campaign", "reason"],
                include=["project"],
                condition=Q(status="skipped"),
                name="message_campaign_skipped",
            ),
            # Sends per minute on the campaign page: only rows that reached Meta.
            models.Index(
                fields=["campaign", "sent_at"],
                condition=Q(sent_at__isnull=False),
                name="message_campaign_sent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} {self.kind} to {self.subscriber_id} ({self.status})"

    @property
    def callback_data(self) -> str:
        """What we send as biz_opaque_callback_data: status webhooks carry it back."""
        return f"m:{self.public_id}"


class CampaignCounter(models.Model):
    """How many of a campaign's rows are in one (status, pricing category, free) group, with replies
    and clicks among them. Kept by every writer of a campaign row's state in the same transaction
    (campaigns/counters.py), so the campaign page reads a handful of these instead of counting rows.

    ``free``: Meta's pricing said ``billable: false``; a boolean, not the row's nullable ``billable``,
    because NULLs never conflict in a unique index and ``ON CONFLICT`` needs them to.
    """

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="+", db_index=False
    )
    status = models.CharField(verbose_name=_("status"), max_length=10, choices=MessageStatus.choices)
    pricing_category = models.CharField(verbose_name=_("pricing category"), max_length=40, blank=True)
    free = models.BooleanField(verbose_name=_("free of charge"), default=False)
    n = models.BigIntegerField(verbose_name=_("count"), default=0)
    replied = models.BigIntegerField(verbose_name=_("replied"), default=0)
    clicked = models.BigIntegerField(verbose_name=_("clicked"), default=0)

    class Meta:
        verbose_name = _("campaign counter")
        verbose_name_plural = _("campaign counters")
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "status", "pricing_category", "free"], name="campaign_counter_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.status}/{self.pricing_category or '-'}: {self.n}"


class CampaignMinute(models.Model):
    """Rows of a campaign that reached Meta in one minute (by ``sent_at``), for the sends chart."""

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="+", db_index=False
    )
    minute = models.DateTimeField(verbose_name=_("minute"))
    n = models.BigIntegerField(verbose_name=_("count"), default=0)

    class Meta:
        verbose_name = _("campaign minute")
        verbose_name_plural = _("campaign minutes")
        constraints = [models.UniqueConstraint(fields=["campaign", "minute"], name="campaign_minute_key")]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.minute:%H:%M}: {self.n}"


class AudienceRow(models.Model):
    """One recipient of a launched campaign whose outbox row is not written yet (ADR 0009).

    The snapshot writes these narrow rows, one ``INSERT ... SELECT`` with a single index, instead of
    a million wide outbox rows with a dozen index entries and five foreign-key checks each; the
    outbox rows follow in chunks (materialize.py), a minute of sending ahead of the sender. The
    campaign's counters count these rows already (queued, or skipped with ``reason``), so the page,
    completion and the cost estimate see the whole audience from the snapshot on.

    No database foreign keys: each would be checked a million times at the snapshot. Deleting a
    campaign deletes its rows (Django's cascade); a subscriber deleted before their row is
    materialized is simply left out then.
    """

    pk = models.CompositePrimaryKey("campaign", "subscriber")
    campaign = models.ForeignKey(
        Campaign,
        verbose_name=_("campaign"),
        on_delete=models.CASCADE,
        related_name="audience_rows",
        db_constraint=False,
        db_index=False,
    )
    subscriber = models.ForeignKey(
        Subscriber,
        verbose_name=_("subscriber"),
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    send_after = models.DateTimeField(verbose_name=_("send after"), null=True, blank=True)
    # Empty: to be sent; else why it is skipped (sendpolicy's words), as on the outbox row.
    reason = models.TextField(verbose_name=_("reason"), blank=True, default="")
    values = models.JSONField(verbose_name=_("values"), default=dict, blank=True)

    class Meta:
        verbose_name = _("audience row")
        verbose_name_plural = _("audience rows")

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.subscriber_id}"
