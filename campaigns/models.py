"""The outbox: one Message row per message to one subscriber on one channel.

Campaigns and journeys create rows; sender actors claim and send them; status
webhooks move them forward. Each row keeps its history of state changes.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from controlpanel.models import Project, TenantQuerySet
from subscribers.models import Subscriber
from whatsapp.models import MessageTemplate, WhatsAppAccount


class Channel(models.TextChoices):
    WHATSAPP = "whatsapp", "WhatsApp"
    EMAIL = "email", "Email"
    PUSH = "push", "Push"


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    # Sent or not? A crash between the POST to Meta and our commit; a status webhook settles it.
    UNKNOWN = "unknown", "Unknown"


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
    TEMPLATE = "template", "Template"
    TEXT = "text", "Text"


class MessageQuerySet(TenantQuerySet):
    pass


class Message(models.Model):
    """One outbound message to one subscriber on one channel."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="messages")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="messages")
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.WHATSAPP)
    status = models.CharField(max_length=10, choices=MessageStatus.choices, default=MessageStatus.QUEUED)
    account = models.ForeignKey(
        WhatsAppAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=10, choices=MessageKind.choices, default=MessageKind.TEMPLATE)
    template = models.ForeignKey(
        MessageTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Snapshot of what was sent: the template may change or vanish later.
    template_name = models.CharField(max_length=512, blank=True)
    template_language = models.CharField(max_length=16, blank=True)
    components = models.JSONField(default=list, blank=True)
    body = models.TextField(blank=True, help_text="Text message body, or the template rendered for display.")
    marketing = models.BooleanField(default=False, help_text="Marketing messages need WhatsApp opt-in.")
    wamid = models.CharField(max_length=200, null=True, blank=True, unique=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    reason = models.TextField(blank=True, help_text="Why it was skipped or failed, in plain words.")
    error_code = models.IntegerField(null=True, blank=True)
    error_title = models.CharField(max_length=300, blank=True)
    error_details = models.TextField(blank=True)
    pricing_category = models.CharField(max_length=40, blank=True)
    pricing_type = models.CharField(max_length=40, blank=True)
    billable = models.BooleanField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    history = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "idempotency_key"], name="message_unique_idempotency_key"
            )
        ]
        indexes = [
            models.Index(fields=["project", "created_at"], name="message_project_time"),
            models.Index(fields=["subscriber", "-created_at"], name="message_subscriber_time"),
            models.Index(
                fields=["status", "sending_at"], condition=Q(status="sending"), name="message_sending"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} {self.kind} to {self.subscriber_id} ({self.status})"

    @property
    def callback_data(self) -> str:
        """What we send as biz_opaque_callback_data: status webhooks carry it back."""
        return f"m:{self.public_id}"
