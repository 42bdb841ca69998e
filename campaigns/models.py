"""The outbox. This is the core of Message; the campaign and WhatsApp issues extend it."""

from __future__ import annotations

import uuid

from django.db import models

from controlpanel.models import Project
from subscribers.models import Subscriber


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
    UNKNOWN = "unknown", "Unknown"


class MessageQuerySet(models.QuerySet["Message"]):
    def for_project(self, project: Project) -> MessageQuerySet:
        return self.filter(project=project)


class Message(models.Model):
    """One outbound message to one subscriber on one channel."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="messages")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="messages")
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.WHATSAPP)
    status = models.CharField(max_length=10, choices=MessageStatus.choices, default=MessageStatus.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["project", "created_at"], name="message_project_time")]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} to {self.subscriber_id} ({self.status})"
